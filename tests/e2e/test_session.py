"""Session steps on the real test server: tmux, env, IPython, Jupyter, and --explain pasted into a shell."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import subprocess
from typing import Any, Iterator

import pytest

from portal_tasks.envs import env_key
from portal_tasks.testing.netns import LAPTOP_MARK
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import pids_with_env
from portal_tasks.testing.waiting import retry_until
from portal_tasks.testing.flows import http_get

pytestmark = pytest.mark.e2e

#: Run on the host as the user: the session's windows, each with the processes under its pane.
INSPECT = r'''
import json, os, subprocess, sys
out = subprocess.run(["tmux", "list-windows", "-t", "=" + sys.argv[1], "-F",
                      "#{window_name} #{pane_pid} #{pane_current_command}"], capture_output=True, text=True)
children = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            ppid = int(open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
def walk(pid):
    for c in children.get(pid, []):
        yield c
        yield from walk(c)
windows = {}
for line in out.stdout.splitlines():
    name, pid, cmd = line.split(" ", 2)
    procs = []
    for child in walk(int(pid)):
        try:
            args = [a.decode() for a in open("/proc/%d/cmdline" % child, "rb").read().split(b"\0") if a]
            env = [kv.decode() for kv in open("/proc/%d/environ" % child, "rb").read().split(b"\0")]
        except OSError:
            continue
        keep = dict(kv.split("=", 1) for kv in env if kv.startswith(("DASK_", "VIRTUAL_ENV=", "JUPYTER_")))
        procs.append({"pid": child, "args": args, "env": keep})
    windows[name] = {"pane_pid": int(pid), "command": cmd, "procs": procs}
print(json.dumps({"rc": out.returncode, "windows": windows}))
'''


def inspect(server: Any, user: Any, session: str = "portal") -> dict[str, Any]:
    res = user.ssh(server.host, shlex.join(["python3", "-c", INSPECT, session]))
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def ipython_proc(state: dict[str, Any], window: str, env: str) -> dict[str, Any] | None:
    """The IPython process of the window, when it runs from the env."""
    for proc in state["windows"].get(window, {}).get("procs", []):
        if any(arg.startswith(f"{env}/bin/ipython") for arg in proc["args"]):
            return proc
    return None


def wait_ipython(server: Any, user: Any, window: str, env: str) -> dict[str, Any]:
    return retry_until(lambda: ipython_proc(inspect(server, user), window, env), 30, 0.3,
                       what=f"IPython from {env} in window {window}")


@pytest.fixture
def fresh(portal_server: Any) -> Iterator[Any]:
    """reset(user) before the test and again at the end, failures included: ends what the test started."""
    reset = portal_server.reset_user
    if reset is None:
        pytest.skip("this test server cannot reset its users between tests")
    touched: list[Any] = []

    def use(user: Any) -> Any:
        reset(user)
        touched.append(user)
        return user

    yield use
    for user in touched:
        with contextlib.suppress(Exception):  # never hide the test's own failure
            reset(user)


def ok(res: Any) -> Any:
    assert res.rc == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return res


def test_tmux_env_ipython_then_again_changes_nothing_and_survives_ssh_loss(portal_server, alice, run_portal, fresh):
    user = fresh(alice)
    env = str(portal_server.envs["a"])
    key = env_key(env)
    host = ["--host", portal_server.host]
    ok(run_portal(user, "tmux", *host))
    ok(run_portal(user, "env", "--env", env, *host))
    ok(run_portal(user, "ipython", "--env", env, *host))
    first = wait_ipython(portal_server, user, f"ipython-{key}", env)
    state = inspect(portal_server, user)
    assert {"shell", f"env-{key}", f"ipython-{key}"} <= set(state["windows"])
    assert "DASK_SCHEDULER_ADDRESS" in first["env"]  # the window's variables reached IPython

    for step in (["tmux"], ["env", "--env", env], ["ipython", "--env", env]):
        res = ok(run_portal(user, *step, *host))
        assert "kept" in res.stderr or "reused" in res.stderr
    again = inspect(portal_server, user)
    assert sorted(again["windows"]) == sorted(state["windows"])
    assert ipython_proc(again, f"ipython-{key}", env)["pid"] == first["pid"]

    masters = pids_with_env(LAPTOP_MARK, str(user.laptop))
    assert masters, "portal left no ssh master to kill"
    for pid in masters:
        with contextlib.suppress(ProcessLookupError):
            import os

            os.kill(pid, signal.SIGKILL)
    after = inspect(portal_server, user)
    assert ipython_proc(after, f"ipython-{key}", env)["pid"] == first["pid"]


def test_missing_env_is_one_line_and_starts_nothing(portal_server, alice, run_portal, fresh):
    user = fresh(alice)
    res = run_portal(user, "env", "--env", "/opt/no/such/env", "--host", portal_server.host)
    assert res.rc == 1
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "/opt/no/such/env" in lines[0] and "not found" in lines[0], lines
    assert user.ssh(portal_server.host, "tmux ls").rc != 0  # no session was made


def test_ipython_in_env_without_ipython_says_what_to_install(portal_server, alice, run_portal, fresh):
    user = fresh(alice)
    res = run_portal(user, "ipython", "--env", str(portal_server.envs["bare"]), "--host", portal_server.host)
    assert res.rc == 1
    assert "lacks IPython" in res.stderr and "pip install" in res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_jupyter_answers_with_its_token_through_a_forward_and_carries_cluster_vars(
        portal_server, alice, run_portal, fresh, listening_sockets):
    user = fresh(alice)
    env = str(portal_server.envs["a"])
    # on a port (--no-socket): this test forwards the port by hand (a socket's forward: test_jupyter_proxy, test_up)
    res = ok(run_portal(user, "jupyter", "--env", env, "--host", portal_server.host, "--no-socket", timeout=180))
    match = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)", res.stderr)
    assert match, res.stderr
    port, token = int(match.group(1)), match.group(2)
    mine = [s for s in listening_sockets(user) if s.port == port]
    assert mine and all(s.addr == "127.0.0.1" for s in mine), mine

    local = free_port()
    forward = subprocess.Popen(
        user.ssh_argv(portal_server.host, options=["-N", "-o", "ExitOnForwardFailure=yes",
                                                   "-L", f"127.0.0.1:{local}:127.0.0.1:{port}"])[:-1],
        env=portal_env(user), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{local}"
        assert retry_until(lambda: http_get(f"{base}/api/status?token={token}")[0] == 200, 30, 0.3,
                           what="Jupyter through the forward", retry_on=(OSError,))
        assert http_get(f"{base}/api/status")[0] == 403
    finally:
        forward.terminate()
        forward.wait(10)

    state = inspect(portal_server, user)
    server = next(p for p in state["windows"][f"jupyter-{env_key(env)}"]["procs"]
                  if any("jupyter" in a for a in p["args"][:2]))
    assert "DASK_SCHEDULER_ADDRESS" in server["env"]
    assert server["env"]["JUPYTER_TOKEN_FILE"].endswith("/token")
    assert token not in " ".join(server["args"])  # the token is not on the command line

    again = ok(run_portal(user, "jupyter", "--env", env, "--host", portal_server.host, "--no-socket"))
    assert "kept" in again.stderr and token in again.stderr


def test_explain_starts_nothing_and_pasted_it_reproduces_the_session(
        portal_server, alice, run_portal, fresh, listening_sockets):
    user = fresh(alice)
    env = str(portal_server.envs["a"])
    before = sorted((s.addr, s.port) for s in listening_sockets(user))
    texts = [ok(run_portal(user, *step, "--explain", "--host", portal_server.host)).stdout
             for step in (["tmux"], ["env", "--env", env], ["ipython", "--env", env], ["jupyter", "--env", env])]
    assert user.ssh(portal_server.host, "tmux ls").rc != 0  # --explain made no session
    assert sorted((s.addr, s.port) for s in listening_sockets(user)) == before  # and no listening socket
    text = texts[2]  # ipython's: log in, ensure the session, open the window, type activation + IPython
    assert text.splitlines()[0].startswith("ssh ") and text.splitlines()[-1] == "ON_HOST"

    # as when pasted: `ssh host` takes the following lines as the remote shell's input
    pasted = subprocess.run(["bash"], input=text, capture_output=True, text=True, timeout=60,
                            env=portal_env(user), cwd=str(user.laptop))
    assert pasted.returncode == 0, pasted.stderr
    window = f"ipython-{env_key(env)}"
    try:
        wait_ipython(portal_server, user, window, env)
    except AssertionError:
        pane = user.ssh(portal_server.host, f"tmux capture-pane -p -t =portal:={window}")
        raise AssertionError(f"pasted:\n{text}\nstderr: {pasted.stderr}\npane: {pane.stdout}{pane.stderr}") from None
    # the same state portal makes: portal itself keeps the pasted IPython
    assert "kept" in ok(run_portal(user, "ipython", "--env", env, "--host", portal_server.host)).stderr


def test_two_users_get_separate_sessions(portal_server, alice, bob, run_portal, fresh):
    env = str(portal_server.envs["a"])
    for user in (fresh(alice), fresh(bob)):
        ok(run_portal(user, "ipython", "--env", env, "--host", portal_server.host))
    window = f"ipython-{env_key(env)}"
    a = wait_ipython(portal_server, alice, window, env)
    b = wait_ipython(portal_server, bob, window, env)
    assert a["pid"] != b["pid"]
    for user in (alice, bob):
        ls = user.ssh(portal_server.host, "tmux list-sessions -F '#{session_name} #{session_windows}'")
        assert ls.stdout.split() == ["portal", "2"], ls.stdout  # shell + ipython, the other's unseen
        owner = user.ssh(portal_server.host, f"stat -c %U /proc/{(a if user is alice else b)['pid']}")
        assert owner.stdout.strip() == user.name


@pytest.mark.portal
def test_localhost_without_ssh_runs_ipython_in_portals_own_env(portal_clean_env, tmp_path):
    """--host localhost: no SSH, the env is the one portal runs in; explain pasted locally gives the same."""
    import os
    import sys

    env = os.environ.copy()
    tmux_dir = os.environ["TMUX_TMPDIR"]
    socket_path = os.path.join(tmux_dir, f"tmux-{os.getuid()}", "default")

    def portal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "portal_tasks", *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=str(tmp_path))

    def panes() -> dict[str, str]:
        out = subprocess.run(["tmux", "-S", socket_path, "list-windows", "-t", "=portal", "-F",
                              "#{window_name} #{pane_current_command}"], capture_output=True, text=True)
        return dict(line.split(" ", 1) for line in out.stdout.splitlines())

    try:
        explained = portal("ipython", "--explain")
        assert explained.returncode == 0, explained.stderr
        assert not os.path.exists(socket_path)  # --explain started no tmux server
        pasted = subprocess.run(["bash"], input=explained.stdout, capture_output=True, text=True, timeout=60,
                                env=env, cwd=str(tmp_path))
        assert pasted.returncode == 0, pasted.stderr
        window = f"ipython-{env_key(sys.prefix)}"
        retry_until(lambda: panes().get(window, "bash").startswith("python"), 30, 0.2, what="pasted IPython")
        res = portal("ipython")
        assert res.returncode == 0 and "kept" in res.stderr, res.stderr
        assert sorted(panes()) == ["ipython-" + env_key(sys.prefix), "shell"]
    finally:
        subprocess.run(["tmux", "-S", socket_path, "kill-server"], capture_output=True)


def test_tmux_missing_on_the_host_is_one_clear_line(portal_server, notmux, run_portal):
    res = run_portal(notmux, "tmux", "--host", portal_server.host)
    assert res.rc == 1
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "tmux is not installed" in lines[0] and portal_server.host in lines[0], lines

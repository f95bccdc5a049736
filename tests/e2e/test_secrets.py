"""No secret of a user in any process's arguments, on the host or on the laptop; TLS rotation; two portal
versions on one server.

Co-users read /proc/PID/cmdline of every process: pollers do that as fast as they can while alice's
first `up --jupyter` and her `tls --rotate` run, one as bob on the host, one as another uid on the
laptop (the root namespace), and afterwards nothing of alice's key, certificates or Jupyter token may
be in what they caught.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import portal_tasks
from portal_tasks import plan
from portal_tasks.link.base import helper_path
from portal_tasks.testing.assertions import client_env, dask_client, user_ports
from portal_tasks.testing.flows import followed, http_get, recording_browser, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

#: Reads every /proc/*/cmdline in a loop until its stdin closes (or its time is up), then prints JSON.
POLLER = r"""
import json, os, sys, threading, time
deadline = time.monotonic() + float(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
me, seen, sweeps, young = str(os.getpid()), set(), 0, {}
settled = set()  # pids older than 2 s: their argv is read; a sweep then costs one listdir and the new pids
print("polling", flush=True)
while not stop.is_set() and time.monotonic() < deadline:
    now = time.monotonic()
    pids = set(os.listdir("/proc"))
    settled &= pids
    for gone in set(young) - pids:
        del young[gone]
    for pid in pids - settled:
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open("/proc/" + pid + "/cmdline", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if data:
            seen.add(data)
        if now - young.setdefault(pid, now) > 2.0:  # re-read while young: a fork may still exec
            settled.add(pid)
            young.pop(pid, None)
    sweeps += 1
print(json.dumps({"sweeps": sweeps, "cmdlines": sorted(d.decode("utf-8", "replace") for d in seen)}))
"""
POLL_SECONDS = 400
#: The uid that plays a co-user on the laptop (not alice's laptop user, which is root here).
LAPTOP_SPY_UID = 65534


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


class Spy:
    """A poller process; .caught holds what it saw once stopped."""

    def __init__(self, where: str, argv: list[str]) -> None:
        self.where = where
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd="/")
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if first.strip() != "polling":
            self.proc.kill()
            raise AssertionError(f"{where} poller did not start: {first}{self.proc.communicate(timeout=10)[1][-500:]}")
        self.sweeps = 0
        self.caught: list[str] = []

    def stop(self) -> None:
        try:
            out, err = self.proc.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = out.strip().splitlines()
        assert lines, f"{self.where} poller printed nothing: {err[-500:]}"
        report = json.loads(lines[-1])
        self.sweeps, self.caught = report["sweeps"], [c.replace("\0", " ") for c in report["cmdlines"]]


@contextlib.contextmanager
def spies(server: TestServer, bob: TestUser) -> Iterator[list[Spy]]:
    """Bob polling on the host and a co-user polling on the laptop, while the block runs."""
    started: list[Spy] = []
    try:
        started.append(Spy("host", bob.ssh_argv(server.host, shlex.join(["python3", "-c", POLLER, str(POLL_SECONDS)]))))
        uid = str(LAPTOP_SPY_UID)
        started.append(Spy("laptop", ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                                      "/usr/bin/python3", "-c", POLLER, str(POLL_SECONDS)]))
        yield started
    finally:
        for spy in started:
            spy.stop()


def pem_lines(text: str) -> list[str]:
    """The base64 lines of PEM text (each long enough to be a give-away on its own)."""
    return [line for line in text.splitlines() if len(line) >= 16 and not line.startswith("-----")]


def tls_texts(server: TestServer, user: TestUser) -> dict[str, str]:
    res = user.ssh(server.host, "cd ~/.portal/tls && for f in ca.pem cert.pem key.pem; do echo \"== $f\"; cat $f; done")
    assert res.rc == 0, res.stderr
    parts = re.split(r"^== (\S+)\n", res.stdout, flags=re.MULTILINE)[1:]
    texts = dict(zip(parts[::2], parts[1::2]))
    assert set(texts) == {"ca.pem", "cert.pem", "key.pem"} and "PRIVATE KEY" in texts["key.pem"], texts.keys()
    return texts


def jupyter_tokens(server: TestServer, user: TestUser) -> list[str]:
    res = user.ssh(server.host, "find ~/.portal -name token -type f -exec cat {} \\; -exec echo \\;")
    tokens = [t.strip() for t in res.stdout.splitlines() if t.strip()]
    assert tokens, f"no Jupyter token of {user.name} found: {res.stdout}{res.stderr}"
    return tokens


def assert_nothing_secret(spy_list: list[Spy], secrets: list[str], verb: str, user: TestUser) -> None:
    """No secret in any argv the pollers caught (of anyone), and they caught ``user``'s ``verb`` call itself:
    on the host its argv names the user's home, on the laptop portal's ssh names the user's ssh config."""
    for spy in spy_list:
        mark = str(user.home) if spy.where == "host" else str(user.ssh_config)
        helper_calls = [c for c in spy.caught if "remote-" in c and ".pyz" in c and mark in c]
        # the poller works: it caught portal's helper itself (so a payload in its argv would have been seen)
        assert helper_calls, f"the {spy.where} poller caught no helper call in {spy.sweeps} sweeps"
        # the helper itself, or the bootstrap carrying it on a first call (its size before the verb)
        assert any(re.search(rf"\.pyz( \d+)? {re.escape(verb)}$", c.rstrip()) for c in helper_calls), \
            f"the {spy.where} poller missed the {verb} call ({spy.sweeps} sweeps): {helper_calls[:10]}"
        leaks = [(s[:12], c[:200]) for c in spy.caught for s in secrets if s in c]
        assert not leaks, f"{spy.where}: a co-user read these in process arguments: {leaks[:3]}"
        users = [c for c in spy.caught if user.name in c or str(user.laptop) in c]  # (other runs share the machine)
        assert not [c for c in users if "-----BEGIN" in c or "PRIVATE KEY" in c or "token=" in c], spy.where


@pytest.fixture
def browser(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A $BROWSER that records what it was handed, and stays a moment as a browser would."""
    return recording_browser(tmp_path, linger=1)


def test_a_co_user_polling_process_arguments_sees_no_key_and_no_token(portal_server, alice, bob, run_portal, env,
                                                                       browser):
    host = portal_server.host
    fresh = alice.ssh(host, "test -e ~/.portal && echo THERE || echo FRESH")
    assert fresh.stdout.strip() == "FRESH", "alice's ~/.portal is not fresh: this must be her first up"
    browser_env, record = browser

    with spies(portal_server, bob) as first_up:
        res = up(run_portal, alice, host, env, "--jupyter", env_vars=browser_env)
    assert "made your TLS certificate" in res.stderr, res.stderr
    first_set = tls_texts(portal_server, alice)
    tokens = jupyter_tokens(portal_server, alice)
    secrets = [line for text in first_set.values() for line in pem_lines(text)] + tokens
    # the one call whose payload carries the new TLS set: the snapshot, then the plan in the same call
    assert_nothing_secret(first_up, secrets, "snapshot-up", alice)

    handed = record.read_text().split()
    assert len(handed) == 2 and not [u for u in handed if any(t in u for t in tokens)], handed
    laptop = next(spy for spy in first_up if spy.where == "laptop")  # the browser's argv, as a co-user saw it
    assert [c for c in laptop.caught if "file://" in c and "/open-" in c], \
        f"the laptop poller missed the browser: {[c for c in laptop.caught if 'browser' in c][:5]}"
    reached = followed(handed)
    assert [u for u in reached if "/lab?token=" in u] and all(http_get(u)[0] == 200 for u in reached), reached

    with spies(portal_server, bob) as rotation:
        rotated = run_portal(alice, "tls", "--rotate", "--host", host)
    assert rotated.rc == 0, rotated.stdout + rotated.stderr
    second_set = tls_texts(portal_server, alice)
    assert second_set["key.pem"] != first_set["key.pem"]
    secrets = [line for text in (*first_set.values(), *second_set.values()) for line in pem_lines(text)] + tokens
    assert_nothing_secret(rotation, secrets, "tls-install", alice)
    assert "PRIVATE" not in rotated.stdout + rotated.stderr


# -- rotation ------------------------------------------------------------------------------------

#: Typed into alice's IPython window after the cluster was replaced: a new client (the old one was closed
#: with its cluster, as the rotation message says) asks the new cluster for a sum.
ASK = "client = Client(); print('SUM', client.submit(sum, [20, 22]).result(timeout=30))"


def ask_ipython(server: TestServer, user: TestUser, env: str) -> Callable[[], bool]:
    """Type ASK into the user's IPython window; returns a check that its answer is on the screen."""
    window = f"=portal:=ipython-{plan.env_key(env)}"
    sent = user.ssh(server.host, shlex.join(["tmux", "send-keys", "-t", window, ASK, "Enter"]))
    assert sent.rc == 0, sent.stderr

    def answered() -> bool:
        shown = user.ssh(server.host, shlex.join(["tmux", "capture-pane", "-p", "-J", "-S", "-200", "-t", window]))
        if "SUM 42" in shown.stdout:
            return True
        raise AssertionError(shown.stdout.strip()[-1500:])

    return answered


def test_rotation_keeps_the_cluster_until_the_next_up_which_replaces_it(portal_server, alice, run_portal, env,
                                                                         listening_sockets):
    host = portal_server.host
    up(run_portal, alice, host, env)
    [before] = status(run_portal, alice, host)["clusters"]
    assert before["healthy"], before

    rotated = run_portal(alice, "tls", "--rotate", "--host", host)
    assert rotated.rc == 0 and "next `portal up`" in rotated.stdout, rotated.stdout + rotated.stderr
    [kept] = status(run_portal, alice, host)["clusters"]
    assert kept["pid"] == before["pid"] and not kept["healthy"], kept  # still runs; the new certificate fails it
    assert alice.ssh(host, f"kill -0 {before['pid']}").rc == 0

    again = up(run_portal, alice, host, env)
    [after] = status(run_portal, alice, host)["clusters"]
    assert after["healthy"] and after["pid"] != before["pid"], (before, after)
    assert alice.ssh(host, f"kill -0 {before['pid']}").rc != 0, "the old scheduler still runs"
    assert all(http_get(u)[0] == 200 for u in urls_in(again))

    ports = user_ports(run_portal(alice, "ports", "--host", host, "--json"))
    with dask_client(portal_server, alice, f"{env}/bin/python", client_env(ports, env, str(alice.home))) as seen:
        assert seen["sum"] == 6 and seen["workers"], seen  # a client started now connects with the new set
    retry_until(ask_ipython(portal_server, alice, env), 60, 1,
                what="a new Client() in the IPython window kept by up to reach the new cluster")


# -- two portal versions on one server ----------------------------------------------------------


@pytest.fixture
def other_version(tmp_path: Path) -> dict[str, str]:
    """The environment that runs a portal whose helper differs (another version on another laptop)."""
    root = tmp_path / "other"
    shutil.copytree(Path(portal_tasks.__file__).parent, root / "portal_tasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "portal_tasks" / "remote" / "__init__.py", "a") as fh:
        fh.write("\n# another portal version\n")
    return {"PYTHONPATH": str(root)}


def helpers(server: TestServer, user: TestUser) -> dict[str, tuple[int, int]]:
    """~/.portal/bin's helper archives: name -> (inode, mtime)."""
    res = user.ssh(server.host, "stat -c '%n %i %Y' ~/.portal/bin/remote-*.pyz")
    found = {}
    for line in res.stdout.splitlines():
        path, inode, mtime = line.rsplit(" ", 2)
        found[os.path.basename(path)] = (int(inode), int(mtime))
    return found


def test_two_portal_versions_keep_their_own_helpers(portal_server, alice, run_portal, env, other_version):
    host = portal_server.host
    mine = os.path.basename(helper_path())
    assert run_portal(alice, "status", "--host", host).rc == 0
    old, recent = "remote-000000000000.pyz", "remote-111111111111.pyz"  # unused for 40 days / for 10 days
    alice.ssh(host, f"cd ~/.portal/bin && cp {mine} {old} && cp {mine} {recent} && "
                    f"touch -d '40 days ago' {old} && touch -d '10 days ago' {recent}")

    # a helper of this version in use (a held lock) while the other version installs its own
    lock = subprocess.Popen(alice.ssh_argv(host, f"python3 ~/{helper_path()} lock"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert lock.stdin is not None and lock.stdout is not None
        lock.stdin.write(json.dumps({"name": "two-versions", "timeout": 30}) + "\n")
        lock.stdin.flush()
        assert lock.stdout.readline().strip() == "locked"
        before = helpers(portal_server, alice)
        other = run_portal(alice, "status", "--host", host, env=other_version)
        assert other.rc == 0, other.stdout + other.stderr
        after = helpers(portal_server, alice)
        theirs = set(after) - set(before)
        assert len(theirs) == 1, after  # the other version installed its own helper ...
        assert after[mine] == before[mine]  # ... and left this one as it was (same file, not reinstalled)
        assert recent in after and old not in after  # only the long-unused one was pruned
        assert lock.poll() is None, "the helper in use ended under the other version's run"
    finally:
        try:
            out, _ = lock.communicate(input="", timeout=30)
        except subprocess.TimeoutExpired:
            lock.kill()
            out, _ = lock.communicate()
    assert lock.returncode == 0 and '"released"' in out, out  # it held its lock to the end

    # both versions keep working side by side, each with its own helper
    res = up(run_portal, alice, host, env)
    assert helpers(portal_server, alice)[mine] == after[mine]
    assert run_portal(alice, "status", "--host", host, env=other_version).rc == 0
    assert set(helpers(portal_server, alice)) >= {mine, *theirs}
    assert all(http_get(u)[0] == 200 for u in urls_in(res))

    # a helper removed under a run (by hand, or by a portal that pruned it) is installed again
    alice.ssh(host, f"rm ~/{helper_path()}")
    assert run_portal(alice, "status", "--host", host).rc == 0
    assert mine in helpers(portal_server, alice)

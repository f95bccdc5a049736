"""The host-side helper, run for real on this machine through the local link."""

import os
import socket
import zipfile
import importlib.util
import io

import pytest

from portal_tasks.config import resolve
from portal_tasks.errors import RemoteCommandError
from portal_tasks.link.base import helper_archive
from portal_tasks.link.local import LocalLink


@pytest.fixture
def link(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return LocalLink(resolve(None, "localhost"))


def test_archive_is_stdlib_only_and_stable():
    digest, data = helper_archive()
    assert helper_archive() == (digest, data)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "__main__.py" in names and "portal_remote/main.py" in names
    sources = [name for name in names if name.endswith(".py")]
    for name in sources:
        text = zipfile.ZipFile(io.BytesIO(data)).read(name).decode()
        assert "portal_tasks" not in text.replace("portal_tasks/remote", ""), name
    # each module also compiled for this Python (an unchecked hash-based .pyc: zipimport takes it as it is)
    compiled = sorted(name for name in names if name.endswith(".pyc"))
    assert compiled == sorted(f"{name}c" for name in sources if name != "__main__.py")
    pyc = zipfile.ZipFile(io.BytesIO(data)).read("portal_remote/main.pyc")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER and pyc[4:8] == (1).to_bytes(4, "little")


def test_the_compiled_helper_runs_and_a_python_of_another_version_takes_the_source(tmp_path):
    import subprocess
    import sys

    _, data = helper_archive()
    archive = tmp_path / "remote.pyz"
    archive.write_bytes(data)
    out = subprocess.run([sys.executable, str(archive), "ping"], input="{}\n", capture_output=True, text=True,
                         timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and '"ok": true' in out.stdout, out.stderr
    # a Python whose magic differs skips the .pyc: the same archive with every .pyc's magic changed still runs
    changed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(changed, "w") as new:
        for info in old.infolist():
            body = old.read(info)
            new.writestr(info, (b"\x00\x00" + body[2:]) if info.filename.endswith(".pyc") else body)
    archive.write_bytes(changed.getvalue())
    out = subprocess.run([sys.executable, str(archive), "ping"], input="{}\n", capture_output=True, text=True,
                         timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and '"ok": true' in out.stdout, out.stderr


def test_helper_installs_itself_privately_and_answers(link, tmp_path):
    facts = link.helper("probe", {"listeners": True})
    assert facts["uid"] == os.getuid() and facts["home"] == str(tmp_path)
    portal_dir = tmp_path / ".portal"
    assert oct(portal_dir.stat().st_mode & 0o777) == "0o700"


def test_probe_sees_a_loopback_listener_with_its_pid(link):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        found = [e for e in link.helper("probe", {"listeners": True})["listeners"] if e["port"] == port]
    assert found and found[0]["addr"] == "127.0.0.1" and found[0]["pid"] == os.getpid()


def test_unknown_verb_is_an_error_not_a_crash(link):
    with pytest.raises(RemoteCommandError, match="unknown verb"):
        link.helper("no-such-verb")


def test_missing_remote_python_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    link = LocalLink(resolve({"remote_python": "python-not-here"}, "localhost"))
    with pytest.raises(RemoteCommandError, match="'python-not-here' is not on the PATH.*host_python"):
        link.helper("ping")


def test_lock_is_exclusive(link):
    import threading

    order = []

    def second():
        with link.lock("t"):
            order.append("second")

    with link.lock("t"):
        t = threading.Thread(target=second)
        t.start()
        t.join(0.5)
        order.append("first-released")
    t.join(10)
    assert order == ["first-released", "second"]


def test_up_verb_streams_its_steps_and_stops_before_the_cluster_when_its_ports_moved(link, tmp_path, monkeypatch):
    """The ``up`` verb run for real here (tmux on a private socket): session and env window made from
    the laptop's argv, one progress line each, then the host's port plan differs from the one sent
    (nothing planned yet, so the sent one is wrong on purpose): it replans, the cluster never starts."""
    import shutil
    import subprocess

    from portal_tasks import plan as plan_mod
    from portal_tasks.remote import tmux as cmds
    from portal_tasks.remote import hostpaths

    if not shutil.which("tmux"):
        pytest.skip("no tmux here")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    monkeypatch.delenv("TMUX", raising=False)
    facts = link.helper("probe", {})
    planned = plan_mod.plan_payload(link.settings, facts["uid"])
    server = hostpaths.server_dir(facts["home"], facts["hostname"])
    session = "portal-test"
    window = {"name": "env-a", "keep": "marker", "marker": "env:a", "kill": cmds.kill_window(session, "env-a"),
              "argv": [cmds.new_window(session, "env-a"), cmds.set_window_option(session, "env-a", cmds.MARKER, "env:a"),
                       cmds.send_keys(session, "env-a", "echo hello")]}
    wrong = {"scheduler_port": 1, "dashboard_port": 2, "worker_ports": [3, 4], "nanny_ports": [5, 6]}
    payload = {"session": {"name": session, "has": cmds.has_session(session), "new": cmds.new_session(session)},
               "locks": ["cluster-a", f"window-{session}-env-a"], "tls": None, "env": {"window": window},
               "cluster": {"env": "a", "ports": wrong, "expect": {"scheduler_host": "127.0.0.1"},
                           "prepare": {"key": "a", "env": "a", "paths": hostpaths.cluster_paths(server, "a"),
                                       "plan": planned, "share": {"memory": None, "cores": 1, "workers": 1},
                                       "interface": None}},
               "ipython": {}}
    seen = []
    try:
        result = link.helper_stream("up", payload, seen.append)
        assert [e["event"] for e in seen] == ["tmux", "env", "replan"]
        assert seen[0]["created"] is True and seen[1]["started"] is True
        assert result["replan"]["cluster"]["ports"]["scheduler_port"] != 1
        listed = subprocess.run(["tmux", "list-windows", "-t", "=" + session, "-F", "#{window_name} #{@portal}"],
                                capture_output=True, text=True).stdout
        assert "env-a env:a" in listed and "cluster-a" not in listed
        seen.clear()  # the same plan again: the session and the env's window are kept
        link.helper_stream("up", payload, seen.append)
        assert seen[0]["created"] is False and seen[1]["started"] is False
    finally:
        subprocess.run(["tmux", "kill-session", "-t", "=" + session], capture_output=True)


def test_down_verb_closes_the_envs_step_windows_and_the_session_once_only_shells_remain(link, tmp_path, monkeypatch):
    """The ``down`` verb run for real here (tmux on a private socket, nothing recorded): one env's step
    windows go, a window of the user's own and another env's stay; then for every env the rest goes,
    and the session with it once only its shell is left."""
    import shutil
    import subprocess

    from portal_tasks import plan as plan_mod

    if not shutil.which("tmux"):
        pytest.skip("no tmux here")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    monkeypatch.delenv("TMUX", raising=False)
    session = "portal-test"

    def tmux(*args):
        return subprocess.run(["tmux", *args], capture_output=True, text=True)

    def windows():
        return tmux("list-windows", "-t", "=" + session, "-F", "#{window_name}").stdout.split()

    planned = dict(plan_mod.plan_payload(link.settings, 0), first=None)
    try:
        tmux("new-session", "-d", "-s", session, "-n", "shell")
        for name, command in (("env-a", []), ("ipython-a", ["sleep", "600"]), ("jupyter-b", ["sleep", "600"]),
                              ("notes", ["sleep", "600"])):
            tmux("new-window", "-d", "-t", "=" + session + ":", "-n", name, *command)
        tmux("new-session", "-d", "-s", session + "2", "-n", "ipython-a")  # named alike: never touched
        reply = link.helper("down", {"session": session, "key": "a", "env": "a", "keep_cluster": False,
                                     "plan": planned})
        assert reply == {"stopped": ["window env-a", "window ipython-a"], "clusters": [], "survivors": None}
        assert windows() == ["shell", "jupyter-b", "notes"]
        reply = link.helper("down", {"session": session, "key": None, "env": None, "keep_cluster": False,
                                     "plan": planned})
        assert reply["stopped"] == ["window jupyter-b"] and windows() == ["shell", "notes"]  # notes runs a program
        tmux("kill-window", "-t", "=%s:=notes" % session)
        reply = link.helper("down", {"session": session, "key": None, "env": None, "keep_cluster": False,
                                     "plan": planned})
        assert reply["stopped"] == ["session " + session]
        assert tmux("has-session", "-t", "=" + session).returncode != 0
        assert tmux("has-session", "-t", "=" + session + "2").returncode == 0
        assert link.helper("down", {"session": session, "key": None, "env": None, "keep_cluster": False,
                                    "plan": planned})["stopped"] == []
    finally:
        for name in (session, session + "2"):
            tmux("kill-session", "-t", "=" + name)


def _count_shell_calls(link, monkeypatch):
    calls = []
    real = link.run_shell

    def counted(command, *, input=None, timeout=None):
        calls.append((command, len(input or b"")))
        return real(command, input=input, timeout=timeout)

    monkeypatch.setattr(link, "run_shell", counted)
    return calls


def test_the_first_call_carries_the_helper_with_it_in_one_round_trip(link, tmp_path, monkeypatch):
    from portal_tasks import state

    calls = _count_shell_calls(link, monkeypatch)
    digest, archive = helper_archive()
    assert link.helper("ping", {}) is not None
    assert len(calls) == 1 and calls[0][1] > len(archive)  # archive and payload on one stdin
    installed = next((tmp_path / ".portal" / "bin").glob("remote-*.pyz"))
    assert installed.read_bytes() == archive and oct(installed.stat().st_mode & 0o777) == "0o600"
    assert state.helper_known("localhost") == digest
    link.helper("ping", {})
    assert len(calls) == 2 and calls[1][1] < 100  # known now: the payload alone


def test_a_helper_already_there_reads_its_payload_after_the_archive(link, tmp_path, monkeypatch):
    from portal_tasks import state

    link.helper("ping", {})
    (state.cache_dir() / state.HELPERS_FILE).unlink()  # this laptop forgot; the host still has it
    with pytest.raises(Exception, match="not found"):  # the payload arrived whole: the env it names is looked for
        link.helper("env-check", {"env": str(tmp_path / "nosuch-env")})
    assert len(list((tmp_path / ".portal" / "bin").glob("remote-*"))) == 1  # no second copy, no leftovers


def _snapshot_payload(link):
    from portal_tasks import plan as plan_mod

    return {"session": "portal-test", "env": None, "manager": None,
            "plan": dict(plan_mod.plan_payload(link.settings, 0), first=None), "key": None}


def test_a_conversation_answers_then_carries_the_plan_in_the_same_call(link, tmp_path, monkeypatch):
    import shutil

    from portal_tasks.remote import tmux as cmds

    if not shutil.which("tmux"):
        pytest.skip("no tmux here")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    monkeypatch.delenv("TMUX", raising=False)
    call = link.converse("snapshot-up", _snapshot_payload(link))
    snap = call.answer()  # the helper travels with it: this laptop never used it here
    assert snap["facts"]["home"] == str(tmp_path) and snap["windows"] is None  # no session yet
    events = []
    session = "portal-test"
    try:
        result = call.send({"session": {"name": session, "has": cmds.has_session(session),
                                        "new": cmds.new_session(session)}, "locks": []}, events.append)
        assert events == [{"event": "tmux", "created": True}] and result == {}
        again = link.converse("snapshot-up", _snapshot_payload(link))
        assert "shell" in again.answer()["windows"]  # the session the plan made
        again.close()
    finally:
        import subprocess

        subprocess.run(["tmux", "kill-server"], capture_output=True, timeout=15)


def test_a_conversation_closed_after_its_answer_ends_the_helper(link):
    call = link.converse("snapshot-up", _snapshot_payload(link))
    call.answer()
    held = call.held
    call.close()  # reaps it in a thread of its own: not waited for here
    import time

    deadline = time.monotonic() + 20
    while held.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.proc.returncode == 0  # it saw its stdin end and did nothing more


def test_archive_is_built_once_per_version_and_then_read_from_the_laptops_cache(tmp_path, monkeypatch):
    from portal_tasks.link import base

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "portal").mkdir()
    stale = tmp_path / "portal" / "helper-0000000000000000.pyz"  # another version's archive
    stale.write_bytes(b"old")
    base.helper_archive.cache_clear()
    try:
        built = base.helper_archive()
        kept = list((tmp_path / "portal").glob("helper-*.pyz"))
        assert len(kept) == 1 and kept[0].read_bytes() == built[1] and not stale.exists()
        assert kept[0].stat().st_mode & 0o777 == 0o600

        def no_compiling(source: bytes, name: str) -> bytes:
            raise AssertionError(f"compiled {name} again")

        monkeypatch.setattr(base, "bytecode", no_compiling)
        base.helper_archive.cache_clear()
        assert base.helper_archive() == built  # read from the cache: nothing compiled
    finally:
        base.helper_archive.cache_clear()

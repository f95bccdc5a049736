"""Who can reach a listener of the user (remote/reach.py), on this machine's real sockets and processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.remote import hostpaths, reach
from portal_tasks.commands import ports as ports_step


def entry(port: int, addr: str = "127.0.0.1", pid: int | None = None) -> dict[str, object]:
    return {"addr": addr, "port": port, "pid": pid, "pids": [pid] if pid else [], "cmdline": []}


def test_a_program_portal_does_not_know_is_reachable_by_whoever_can_connect() -> None:
    assert reach.tcp(entry(5000), set(), set())[0] == reach.SERVER
    assert reach.tcp(entry(5000, "::1"), set(), set())[0] == reach.SERVER
    assert reach.tcp(entry(5000, "0.0.0.0"), set(), set())[0] == reach.NETWORK
    assert reach.tcp(entry(5000, "::"), set(), set())[0] == reach.NETWORK
    assert reach.tcp(entry(5000, "10.1.2.3"), set(), set())[0] == reach.NETWORK


def test_jupyter_behind_its_token_is_the_owners() -> None:
    assert reach.tcp(entry(5002), set(), {5002}) == (reach.OWNER, reach.tcp(entry(5002), set(), {5002})[1])
    assert "token" in reach.tcp(entry(5002), set(), {5002})[1]


@pytest.fixture
def dask_like(tmp_path: Path):
    """Processes that look like a portal cluster's (its mark in the environment), with and without the preload."""
    started = []

    def start(preload: bool, spec: bool = False) -> int:
        argv = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
        path = f"{tmp_path}/dask/{hostpaths.DASK_PRELOAD}"
        if preload and spec:  # the host's `dask spec`: the preload's path inside its JSON
            argv += ["spec", "--spec", json.dumps({"scheduler": {"cls": "distributed.Scheduler",
                                                                 "opts": {"preload": [path], "port": 1}}})]
        elif preload:
            argv += ["--preload", path]
        proc = subprocess.Popen(argv, env=dict(os.environ, **{hostpaths.CLUSTER_MARK: "a@here"}),
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        # Popen returns once the exec began; /proc shows the new environment and command line only after
        # it is through, which the program's first line proves
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        return proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()


def test_dask_ports_are_the_owners_when_tls_or_preloaded_else_open(dask_like) -> None:
    guarded, earlier = dask_like(True), dask_like(False)
    assert reach.tcp(entry(6000, pid=guarded), {6000}, set())[0] == reach.OWNER  # a TLS port
    assert reach.tcp(entry(6001, pid=guarded), {6000}, set()) == (reach.OWNER,
                                                                  "portal's owner check: 403 to anyone else")
    who, by = reach.tcp(entry(6001, pid=earlier), {6000}, set())
    assert who == reach.SERVER and "earlier portal" in by
    assert reach.tcp(entry(6000, pid=earlier), {6000}, set())[0] == reach.OWNER  # TLS, with or without
    spec = dask_like(True, spec=True)
    assert reach.tcp(entry(6001, pid=spec), {6000}, set()) == (reach.OWNER, "portal's owner check: 403 to anyone else")


@pytest.fixture
def searchable() -> Iterator[Path]:
    """A directory whose every parent others may search (pytest's own tmp_path lies in a 0700 one)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="portal-reach-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unix_sockets_by_their_permissions(searchable: Path) -> None:
    tmp_path = searchable
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    tmp_path.chmod(0o755)
    socks = []
    try:
        for folder, mode in ((private, 0o777), (open_dir, 0o600), (open_dir, 0o777)):
            sock = socket.socket(socket.AF_UNIX)
            path = str(folder / f"s{mode:o}.sock")
            sock.bind(path)
            os.chmod(path, mode)
            sock.listen(1)
            socks.append(sock)
        found = {Path(u["path"]).relative_to(tmp_path).as_posix(): u["who"] for u in reach.unix_listeners()
                 if u["path"].startswith(str(tmp_path))}
        assert found == {"private/s777.sock": reach.OWNER, "open/s600.sock": reach.OWNER,
                         "open/s777.sock": reach.SERVER}
        assert all(u["pid"] == os.getpid() for u in reach.unix_listeners() if u["path"].startswith(str(tmp_path)))
    finally:
        for sock in socks:
            sock.close()
    assert reach.unix_path("@abstract")[0] == reach.SERVER


def test_ports_says_who_can_reach_each_listener() -> None:
    report = {"host": "h", "user": "alice", "uid": 1000, "envs": {},
              "block": {"index": 0, "start": 20000, "end": 20099, "claimed": True, "claim": "/tmp/x"},
              "listening": 2, "listening_in_block": 2, "listening_not_loopback": 0,
              "sockets": [{"addr": "127.0.0.1", "port": 20001, "pid": 7, "command": "dask scheduler",
                           "who": reach.OWNER, "by": "portal's owner check: 403 to anyone else"},
                          {"addr": "127.0.0.1", "port": 20050, "pid": 8, "command": "python -m http.server"}],
              "unix": [{"path": "/home/a/.portal/j.sock", "pid": 9, "command": "jupyter", "who": reach.OWNER,
                        "by": "Unix socket mode 0600"}]}
    text = ports_step.render(report)
    assert "127.0.0.1:20001  pid 7  dask scheduler  -- owner only (portal's owner check: 403 to anyone else)" in text
    assert "127.0.0.1:20050  pid 8  python -m http.server\n" in text + "\n"  # an older helper said nothing
    assert "/home/a/.portal/j.sock  pid 9  jupyter  -- owner only (Unix socket mode 0600)" in text


def test_damaged_records_name_no_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal_tasks.remote import common

    monkeypatch.setattr(common, "SERVER_DIR", str(tmp_path))
    for where, text in (("jupyter/a/state.json", "[1, 2]"), ("jupyter/b/state.json", "not json"),
                        ("clusters/a.json", "[]"), ("jupyter/c/state.json", '{"port": 20002}')):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text(text)
    assert reach.jupyter_ports() == {20002} and reach._records() == []


def test_up_says_when_a_kept_cluster_has_an_open_dashboard() -> None:
    import types

    from portal_tasks.parts import cluster as cluster_step

    target: Any = types.SimpleNamespace(host="h")
    (line,) = cluster_step._dashboard_lines(target, {"env": "a", "dashboard_open": True})
    assert "answers anyone on the server" in line and "`portal down --env a` and up again" in line
    assert cluster_step._dashboard_lines(target, {"env": "a", "dashboard_open": False}) == []


FORKSERVER = """import os, subprocess, sys, time
# as the command line of Python's forkserver: from multiprocessing.forkserver import main
if os.fork() == 0:  # a worker forked from it, and a program one of its tasks started
    task = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(sys.argv[1] + ".part", "w") as fh:
        fh.write("%d %d %d" % (os.getppid(), os.getpid(), task.pid))
    os.rename(sys.argv[1] + ".part", sys.argv[1])
time.sleep(60)
"""


def test_a_worker_forked_by_the_forkserver_of_a_preloaded_dask_worker_is_preloaded_a_task_s_program_is_not(
        tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "pids"
    nannies = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]]); "
               "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", nannies, FORKSERVER, str(out), "--preload",
                             f"/h/.portal/dask/{hostpaths.DASK_PRELOAD}"], start_new_session=True)
    try:
        for _ in range(300):
            if out.exists():
                break
            time.sleep(0.05)
        server, worker, task = (int(p) for p in out.read_text().split())
        assert reach.preloaded([worker]) and reach.preloaded([server])
        assert not reach.preloaded([task])  # a task's own server: no guard in it, so not said to have one
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

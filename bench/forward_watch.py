"""(15) `forward --watch` after the link drops (its ssh master killed): seconds until the dashboard's URL answers
again, against making the same forward by hand (`ssh -N -L` over a fresh connection, until it answers).
(Was a clock-bound e2e test: "back within 5 s".) The watcher looks at the link once a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bench.context import Bench
from bench.forwards import free_port
from bench.stats import Row, median
from portal_tasks.testing.flows import http_get, laptop_ssh_pids
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import kill_and_wait
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.waiting import retry_until


def _dashboard(url: str) -> bool:
    try:
        code, body = http_get(url, timeout=5)
    except OSError:
        return False
    return code == 200 and "Dask" in body


def _until_dashboard(url: str, start: float, timeout: float = 120) -> float:
    """Seconds from start until url serves the dashboard (polled every 10 ms)."""
    while not _dashboard(url):
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{url} did not answer again within {timeout:g} s")
        time.sleep(0.01)
    return time.perf_counter() - start


def _masters(user: TestUser, host: str) -> list[int]:
    return laptop_ssh_pids(user, b"ControlMaster=yes", host.encode())


def by_hand(b: Bench, user: TestUser, remote: str, path: str) -> float:
    """Seconds of `ssh -N -L` (fresh connection) until the dashboard answers through it; then it is ended."""
    port = free_port()
    argv = user.ssh_argv(b.host, options=["-N", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                                          "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{port}:{remote}"])
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _until_dashboard(f"http://localhost:{port}{path}", start)
    finally:
        kill_and_wait([proc.pid])
        proc.wait(10)


def run(b: Bench, runs: int = 7) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    b.up(alice)
    reports = json.loads(b.portal(alice, "status", "--all", "--json", "--wait", "60").stdout)
    forwards = next(r["forwards"] for r in reports if r["host"] == b.host)
    dashboard = next(f for f in forwards if f["service"].startswith("dashboard-"))
    url, remote = dashboard["url"], dashboard["remote"]
    path = "/" + url.split("/", 3)[3]
    watcher = subprocess.Popen([sys.executable, "-m", "portal_tasks", "forward", "--host", b.host, "--watch"],
                               env=portal_env(alice), cwd=str(alice.laptop), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched, hand = [], []
    try:
        retry_until(lambda: watcher.poll() is None and _dashboard(url), 60, 0.1, what="the watcher's forward")
        for _ in range(runs):  # interleaved, so both see the same machine
            hand.append(by_hand(b, alice, remote, path))
            masters = _masters(alice, b.host)
            if not masters:
                raise RuntimeError("no ssh master of the watcher to drop")
            for pid in masters:
                os.kill(pid, signal.SIGKILL)
            start = time.perf_counter()
            retry_until(lambda: not _masters(alice, b.host), 10, 0.01, what="the ssh master to die")
            watched.append(_until_dashboard(url, start))
            if watcher.poll() is not None:
                raise RuntimeError(f"forward --watch exited (rc {watcher.returncode})")
    finally:
        kill_and_wait([watcher.pid])
        watcher.wait(10)
    return [Row("15", f"`forward --watch`: the dashboard's URL answering again after its ssh master was killed "
                      f"(it looks once a second), median of {runs}", median(watched), "s",
                "the same forward by hand: `ssh -N -L`, fresh connection, until it answers", median(hand))]

"""(14) `portal page` from its start until its page answers, against a plain Python HTTP server started the
same way; and the page's resident memory against that server's. (Was a clock-bound e2e test: "within 2 s".)"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.context import Bench
from bench.stats import Row, median
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import kill_and_wait
from portal_tasks.testing.server import TestUser

#: `python -m http.server`'s first line: "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
PLAIN = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]
PAGE = [sys.executable, "-u", "-m", "portal_tasks", "page", "--no-browser"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_until_answers(argv: list[str], user: TestUser, url_of: Callable[[str], str],
                        timeout: float = 60) -> tuple[float, int]:
    """Seconds from starting argv (as user, on their laptop) until its URL (from its first line) answers 200,
    and its resident memory (KiB) then; the process is ended by pid."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=portal_env(user), cwd=str(user.laptop), text=True)
    try:
        assert proc.stdout is not None
        url = url_of(proc.stdout.readline())
        deadline = start + timeout
        while not _answers(url):
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[3:]} did not answer on {url} (rc {proc.poll()})")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        return seconds, _rss_kib(proc.pid)
    finally:
        kill_and_wait([proc.pid])
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _page_url(line: str) -> str:
    if not line.startswith("portal page: http://"):
        raise RuntimeError(f"portal page did not start: {line!r}")
    return line.split()[2]


def _plain_url(line: str) -> str:
    if "(http://" not in line:
        raise RuntimeError(f"http.server did not start: {line!r}")
    return line.split("(", 1)[1].split(")", 1)[0]


def run(b: Bench, runs: int = 7) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    pages: list[float] = []
    plains: list[float] = []
    page_rss: list[float] = []
    plain_rss: list[float] = []
    for _ in range(runs):  # interleaved, so both see the same machine
        seconds, rss = start_until_answers(PLAIN, alice, _plain_url)
        plains.append(seconds)
        plain_rss.append(rss)
        seconds, rss = start_until_answers(PAGE, alice, _page_url)
        pages.append(seconds)
        page_rss.append(rss)
    plain = "`python -m http.server` started the same way, until it answers"
    return [Row("14", f"`portal page --no-browser` from its start until the page answers (GET 200), median of {runs}",
                median(pages), "s", plain, median(plains)),
            Row("14", "`portal page`: resident memory once it answers", median(page_rss) / 1024, "MiB",
                "`python -m http.server`", median(plain_rss) / 1024)]

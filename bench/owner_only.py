"""(12) What answering the owner only costs: a download through portal's forward to a Unix socket (how
JupyterLab is reached now) against plain `ssh -L` to a TCP port of the same server, and many short
HTTP requests (a new connection each, as a browser loading the dashboard's files makes them) through
portal's forward to a Tornado server behind portal's owner check against the same server without it.

The servers run as the user on the host (their Unix socket in a 0700 directory of theirs), in the
env's python (Tornado), ended by pid.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.context import Bench
from bench.forwards import PORTAL_FORWARD, download, free_port, ssh_forward
from bench.stats import Row, median
from portal_tasks.remote import owner_only
from portal_tasks.runner import run as run_argv
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.waiting import retry_until

#: argv: a directory of the user's. The raw server of bench/forwards.py (``D`` + size: that many bytes) on
#: 127.0.0.1 (its port in DIR/port) and on the Unix socket DIR/s.sock (0600).
BOTH = r"""
import os, socket, struct, sys, threading
folder = sys.argv[1]
CHUNK = b"x" * (1 << 20)
def serve(conn):
    with conn:
        head = b""
        while len(head) < 9:
            part = conn.recv(9 - len(head))
            if not part:
                return
            head += part
        left = struct.unpack("!Q", head[1:])[0]
        while left > 0:
            n = min(left, len(CHUNK))
            conn.sendall(CHUNK[:n])
            left -= n
def accept(srv):
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
unix = socket.socket(socket.AF_UNIX)
os.umask(0o077)
unix.bind(os.path.join(folder, "s.sock"))
unix.listen(64)
tcp = socket.socket()
tcp.bind(("127.0.0.1", 0))
tcp.listen(64)
threading.Thread(target=accept, args=(unix,), daemon=True).start()
open(os.path.join(folder, "port.tmp"), "w").write(str(tcp.getsockname()[1]))
os.rename(os.path.join(folder, "port.tmp"), os.path.join(folder, "port"))
accept(tcp)
"""

#: argv: a directory of the user's, "guarded" or "plain". A Tornado server answering GET / with 16 KB, on
#: 127.0.0.1 (its port in DIR/http-MODE); guarded: portal's preload (DIR/portal_owner_only.py) imported first.
HTTP = r"""
import asyncio, os, sys
folder, mode = sys.argv[1], sys.argv[2]
if mode == "guarded":
    sys.path.insert(0, folder)
    import portal_owner_only  # noqa: F401
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
BODY = b"d" * 16384
class Page(RequestHandler):
    def get(self):
        self.write(BODY)
async def main():
    server = HTTPServer(Application([(r"/.*", Page)]))
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    path = os.path.join(folder, "http-" + mode)
    open(path + ".tmp", "w").write(str(port))
    os.rename(path + ".tmp", path)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@contextlib.contextmanager
def _as_user(b: Bench, user: TestUser, folder: str, script: str, *args: str) -> Iterator[None]:
    """``script`` run by the env's python as ``user`` on the host (in the background), ended by pid."""
    assert b.server.admin_run is not None
    line = f"{shlex.quote(b.python)} -c {shlex.quote(script)} {' '.join(map(shlex.quote, args))} >/dev/null 2>&1 & echo $!"
    res = b.server.admin_run(["sh", "-c", line], user=user, timeout=15)
    pid = int(res.stdout.strip())
    try:
        yield
    finally:
        b.server.admin_run(["kill", str(pid)], user=user, timeout=15)


def _read_when_there(path: Path) -> int:
    retry_until(path.exists, 20, 0.02, what=f"{path.name} of a bench server", retry_on=())
    return int(path.read_text())


@contextlib.contextmanager
def _portal_forward(user: TestUser, host: str, remote: str) -> Iterator[int]:
    port = free_port()
    res = run_argv([sys.executable, "-c", PORTAL_FORWARD, host, str(port), remote], env=portal_env(user), timeout=60)
    if not res.ok:
        raise RuntimeError(f"portal's forward to {remote} failed: {res.stderr[-800:]}")
    try:
        yield port
    finally:
        run_argv([sys.executable, "-c", PORTAL_FORWARD.replace("link.forward", "link.cancel_forward"), host,
                  str(port), remote], env=portal_env(user), timeout=30)


def requests_per_second(port: int, count: int) -> float:
    """GET / over a new connection each time, ``count`` times: requests per second."""
    start = time.perf_counter()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        resp = conn.getresponse()
        if resp.status != 200 or len(resp.read()) != 16384:
            raise RuntimeError(f"the bench HTTP server through port {port} answered {resp.status}")
        conn.close()
    return count / (time.perf_counter() - start)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"D" + struct.pack("!Q", 1))
        return sock.recv(1) == b"x"
    return False


def run(b: Bench, size_mb: int = 256, requests: int = 300, runs: int = 5) -> list[Row]:
    if b.quick:
        size_mb, requests, runs = 4, 20, 1
    if b.server.admin_run is None or b.server.host_path is None:
        raise RuntimeError("the owner-only benchmark needs a test server with admin_run and host_path (netns)")
    alice = b.user("alice")
    made = b.server.admin_run(["mktemp", "-d", "/tmp/portal-bench-XXXXXX"], user=alice, timeout=15)
    folder = made.stdout.strip()
    seen = b.server.host_path(folder)  # the same directory, as this process reaches it
    preload = seen / "portal_owner_only.py"
    preload.write_bytes(Path(owner_only.__file__).read_bytes())
    os.chown(preload, alice.uid, alice.uid)
    size = size_mb * 10**6
    mbps: dict[str, list[float]] = {"socket": [], "tcp": []}
    rps: dict[str, list[float]] = {"guarded": [], "plain": []}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_as_user(b, alice, folder, BOTH, folder))
            tcp_port = _read_when_there(seen / "port")
            for mode in ("guarded", "plain"):
                stack.enter_context(_as_user(b, alice, folder, HTTP, folder, mode))
            http_ports = {mode: _read_when_there(seen / f"http-{mode}") for mode in ("guarded", "plain")}
            to_socket = stack.enter_context(_portal_forward(alice, b.host, f"{folder}/s.sock"))
            to_tcp = stack.enter_context(ssh_forward(alice, b.host, tcp_port))
            retry_until(lambda: _answers(to_socket), 20, 0.05, what="the forward to the socket", retry_on=())
            through = {mode: stack.enter_context(_portal_forward(alice, b.host, f"127.0.0.1:{port}"))
                       for mode, port in http_ports.items()}
            for _ in range(runs):  # interleaved, run after run
                mbps["socket"].append(download(to_socket, size))
                mbps["tcp"].append(download(to_tcp, size))
                for mode in ("guarded", "plain"):
                    rps[mode].append(requests_per_second(through[mode], requests))
    finally:
        b.server.admin_run(["rm", "-rf", folder], user=alice, timeout=15)
    return [
        Row("12a", f"download through portal's forward to a Unix socket ({size_mb} MB, median of {runs})",
            median(mbps["socket"]), "MB/s", "plain `ssh -L` to a TCP port of the same server", median(mbps["tcp"]),
            target=0.9, higher_is_better=True),
        Row("12b", f"HTTP requests behind portal's owner check through its forward (16 KB, a new connection each, "
                   f"{requests} in a row, median of {runs})", median(rps["guarded"]), "req/s",
            "the same server without the check", median(rps["plain"]), target=0.9, higher_is_better=True),
    ]

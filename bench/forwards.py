"""(3) a large download and many small round trips through portal's forward, plain `ssh -L`, and Fabric.

The server is a raw TCP server on the host's 127.0.0.1 (a root process in the host's namespace):
``D`` + 8-byte size gets that many bytes; ``E`` echoes until EOF.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.context import Bench
from bench.stats import Row, median
from portal_tasks.runner import run as run_argv
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.waiting import retry_until

SERVER = r"""
import socket, struct, sys, threading
CHUNK = b"x" * (1 << 20)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(srv.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])

def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return buf

def handle(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        mode = recv_exact(conn, 1)
        if mode == b"D":
            left = struct.unpack("!Q", recv_exact(conn, 8))[0]
            while left > 0:
                n = min(left, len(CHUNK))
                conn.sendall(CHUNK[:n])
                left -= n
        elif mode == b"E":
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

while True:
    conn, _ = srv.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""

#: Run as the user on their laptop: portal's own link makes the forward (`ssh -O forward` on its master).
PORTAL_FORWARD = """
import sys
from portal_tasks.config import resolve
from portal_tasks.link import open_link
link = open_link(resolve(None, sys.argv[1]))
link.forward(int(sys.argv[2]), sys.argv[3])
"""

#: Fabric's forward_local, held until stdin closes.
FABRIC_FORWARD = """
import sys, fabric
conn = fabric.Connection(sys.argv[1], config=fabric.Config(runtime_ssh_path=sys.argv[2]))
with conn.forward_local(int(sys.argv[3]), remote_port=int(sys.argv[4]), remote_host="127.0.0.1",
                        local_host="127.0.0.1"):
    print("ready", flush=True)
    sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def download(port: int, size: int) -> float:
    """MB/s of downloading size bytes through 127.0.0.1:port."""
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    with _connect(port) as sock:
        sock.sendall(b"D" + struct.pack("!Q", size))
        got = 0
        while got < size:
            n = sock.recv_into(buf)
            if n == 0:
                raise RuntimeError(f"download through port {port} ended after {got} of {size} bytes")
            got += n
    return size / 1e6 / (time.perf_counter() - start)


def round_trips(port: int, count: int, seconds: float = 60.0, size: int = 64) -> float:
    """Mean seconds of one small request/response through 127.0.0.1:port (bounded in count and time)."""
    msg = b"r" * size
    done = 0
    with _connect(port) as sock:
        sock.sendall(b"E")
        start = time.perf_counter()
        deadline = start + seconds
        while done < count and time.perf_counter() < deadline:
            sock.sendall(msg)
            got = 0
            while got < size:
                part = sock.recv(size - got)
                if not part:
                    raise RuntimeError("echo connection closed")
                got += len(part)
            done += 1
        elapsed = time.perf_counter() - start
    return elapsed / done


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), _connect(port) as sock:
        sock.sendall(b"D" + struct.pack("!Q", 1))
        return sock.recv(1) == b"x"
    return False


@contextlib.contextmanager
def echo_server(b: Bench) -> Iterator[int]:
    """The TCP server on the host's 127.0.0.1; yields its port; ends it by pid."""
    if b.server.admin_run is None or b.server.host_path is None:
        raise RuntimeError("the forward benchmark needs a test server with admin_run and host_path (netns)")
    # the port file lives in the host's own /tmp; this process reads it through host_path
    with tempfile.TemporaryDirectory(prefix="portal-bench-", dir=b.server.host_path("/tmp")) as tmp:
        portfile = f"/tmp/{Path(tmp).name}/port"  # as the host sees it
        res = b.server.admin_run(["sh", "-c", f"python3 -c {shlex.quote(SERVER)} {portfile} >/dev/null 2>&1 & echo $!"],
                                 timeout=15)
        pid = int(res.stdout.strip())
        try:
            retry_until(Path(tmp, "port").exists, 15, 0.02, what="the bench TCP server to listen", retry_on=())
            yield int(Path(tmp, "port").read_text())
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def portal_forward(user: TestUser, host: str, remote_port: int) -> Iterator[int]:
    port = free_port()
    res = run_argv([sys.executable, "-c", PORTAL_FORWARD, host, str(port), f"127.0.0.1:{remote_port}"],
                   env=portal_env(user), timeout=60)
    if not res.ok:
        raise RuntimeError(f"portal's forward failed: {res.stderr[-800:]}")
    try:
        yield port
    finally:
        run_argv([sys.executable, "-c", PORTAL_FORWARD.replace("link.forward", "link.cancel_forward"), host,
                  str(port), f"127.0.0.1:{remote_port}"], env=portal_env(user), timeout=30)


@contextlib.contextmanager
def _process_forward(argv: list[str], env: dict[str, str] | None, port: int, what: str) -> Iterator[int]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=None if env is None else {**os.environ, **env})
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {proc.stderr.read().decode()[-800:] if proc.stderr else ''}")
            return _answers(port)

        retry_until(ready, 30, 0.05, what=f"{what} to carry traffic", retry_on=())
        yield port
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ssh_forward(user: TestUser, host: str, remote_port: int) -> contextlib.AbstractContextManager[int]:
    port = free_port()
    argv = user.ssh_argv(host, options=["-o", "ControlMaster=no", "-o", "ControlPath=none", "-N",
                                        "-L", f"127.0.0.1:{port}:127.0.0.1:{remote_port}"])
    argv = [a for a in argv if a != "--"]
    return _process_forward(argv, None, port, "ssh -L")


def fabric_forward(user: TestUser, host: str, remote_port: int) -> contextlib.AbstractContextManager[int]:
    port = free_port()
    argv = [sys.executable, "-c", FABRIC_FORWARD, host, str(user.ssh_config), str(port), str(remote_port)]
    return _process_forward(argv, portal_env(user), port, "fabric forward_local")


def run(b: Bench, size_mb: int = 256, rounds: int = 2000, runs: int = 5, fabric_mb: int = 32) -> list[Row]:
    if b.quick:
        size_mb, rounds, runs, fabric_mb = 4, 50, 1, 2
    alice = b.user("alice")
    size = size_mb * 10**6
    makers: dict[str, Callable[[TestUser, str, int], contextlib.AbstractContextManager[int]]] = {
        "portal": portal_forward, "ssh": ssh_forward, "fabric": fabric_forward}
    mbps: dict[str, list[float]] = {k: [] for k in makers}
    rtts: dict[str, list[float]] = {k: [] for k in makers}
    with echo_server(b) as remote, contextlib.ExitStack() as stack:
        ports = {name: stack.enter_context(make(alice, b.host, remote)) for name, make in makers.items()}
        for _ in range(runs):  # portal and ssh -L interleaved, run after run
            for name in ("portal", "ssh"):
                mbps[name].append(download(ports[name], size))
                rtts[name].append(round_trips(ports[name], rounds))
        mbps["fabric"].append(download(ports["fabric"], fabric_mb * 10**6))
        rtts["fabric"].append(round_trips(ports["fabric"], rounds, seconds=30))
    us = 1e6
    return [
        Row("3a", f"download through portal's forward ({size_mb} MB, median of {runs})", median(mbps["portal"]), "MB/s",
            "plain `ssh -L` to the same port", median(mbps["ssh"]), target=0.9, higher_is_better=True),
        Row("3a", f"download through Fabric `forward_local` ({fabric_mb} MB)", median(mbps["fabric"]), "MB/s",
            "plain `ssh -L` to the same port", median(mbps["ssh"])),
        Row("3b", f"round trip through portal's forward (64 B, {rounds} in a row, median of {runs})",
            median(rtts["portal"]) * us, "µs", "plain `ssh -L`", median(rtts["ssh"]) * us, target=1.1),
        Row("3b", "round trip through Fabric `forward_local`", median(rtts["fabric"]) * us, "µs",
            "plain `ssh -L`", median(rtts["ssh"]) * us),
    ]

"""The laptop's own look at /proc: which process listens where (a forward still the master's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import sockets

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc")


def test_a_listener_of_this_process_is_seen_and_only_on_its_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert sockets.listens(os.getpid(), "127.0.0.1", port) is True
        assert sockets.listens(os.getpid(), "127.0.0.1", port + 1 if port < 65535 else port - 1) is False
    assert sockets.listens(os.getpid(), "127.0.0.1", port) is False  # closed: nothing listens


def test_another_process_listening_on_the_port_is_not_this_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import socket, sys\ns = socket.socket()\n"
                              "s.bind(('127.0.0.1', 0))\ns.listen()\nprint(s.getsockname()[1], flush=True)\n"
                              "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        assert sockets.listens(child.pid, "127.0.0.1", port) is True
        assert sockets.listens(os.getpid(), "127.0.0.1", port) is False
    finally:
        child.communicate("", timeout=10)


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        sock.listen()
        assert sockets.listens(os.getpid(), "::1", sock.getsockname()[1]) is True


def test_without_proc_it_cannot_tell(tmp_path: Path) -> None:
    assert sockets.listens(os.getpid(), "127.0.0.1", 1, proc=tmp_path) is None

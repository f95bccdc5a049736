"""The delaying TCP relay (portal_tasks.testing.relay): delay per direction, data intact, throughput kept."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from portal_tasks.testing.relay import DelayRelay

DELAY = 0.05


@pytest.fixture
def echo() -> Iterator[int]:
    """A loopback echo server (one thread per connection); yields its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_one_round_trip_costs_at_least_twice_the_delay(echo: int) -> None:
    with DelayRelay("127.0.0.1", echo, DELAY) as relay, \
            socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sock.sendall(b"ping")
            assert _recv_exactly(sock, 4) == b"ping"
            times.append(time.perf_counter() - start)
    assert min(times) >= 2 * DELAY
    assert min(times) < 2 * DELAY + 0.5  # and not much more (a loaded machine adds a little)


def test_a_stream_is_delayed_once_not_per_chunk_and_arrives_intact(echo: int) -> None:
    data = os.urandom(4 * 2**20)
    with DelayRelay("127.0.0.1", echo, DELAY) as relay, \
            socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(sock, len(data))))
        start = time.perf_counter()
        reader.start()
        for i in range(0, len(data), 4096):  # 1024 small writes: a per-chunk delay would take 50 s and more
            sock.sendall(data[i:i + 4096])
        reader.join(30)
        seconds = time.perf_counter() - start
    assert got and got[0] == data
    assert 2 * DELAY <= seconds < 2 * DELAY + 3


def test_half_close_passes_through_and_close_ends_everything(echo: int) -> None:
    relay = DelayRelay("127.0.0.1", echo, 0.01).start()
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.sendall(b"last words")
            sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF, answers, and closes
            assert _recv_exactly(sock, 100) == b"last words"
        assert relay.accepted == 1
    finally:
        relay.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()


def test_a_refused_target_closes_the_client(echo: int) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    with DelayRelay("127.0.0.1", port, 0.01) as relay, \
            socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        assert sock.recv(10) == b""


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError):
        DelayRelay("127.0.0.1", 1, -1)

"""The delaying TCP relay (portal_tasks.testing.relay): delay per direction, data intact, throughput kept.

No assertion here has an upper bound on the wall clock (a busy machine makes anything slower): through real
sockets only lower bounds on the delay the test itself injects; when each chunk leaves is checked on an event
loop whose clock is virtual (it jumps to the next timer instead of sleeping), so it is exact.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portal_tasks.testing.relay import DelayRelay, _Pipe

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
    assert min(times) >= 2 * DELAY  # that it adds no more than that is checked on the virtual clock below


def test_a_stream_arrives_intact_and_delayed(echo: int) -> None:
    data = os.urandom(4 * 2**20)
    with DelayRelay("127.0.0.1", echo, DELAY) as relay, \
            socket.create_connection(("127.0.0.1", relay.port), timeout=120) as sock:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(sock, len(data))))
        start = time.perf_counter()
        reader.start()
        for i in range(0, len(data), 4096):  # 1024 small writes
            sock.sendall(data[i:i + 4096])
        reader.join(120)  # a safety net: the socket's own timeout ends a stalled read sooner
        seconds = time.perf_counter() - start
    assert got and got[0] == data
    assert seconds >= 2 * DELAY


class _Clockwork(selectors.DefaultSelector):
    """A selector that never sleeps: with nothing ready it moves its loop's virtual clock to the next timer."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is None:
            raise RuntimeError("nothing ready and no timer: the pipe is stuck")
        if not ready and timeout:
            self.now += timeout
        return ready


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clockwork = _Clockwork()
        super().__init__(self.clockwork)

    def time(self) -> float:
        return self.clockwork.now


class _Recorder:
    """The writing end of a pipe: what it was given, and when (on the loop's clock)."""

    def __init__(self) -> None:
        self.wrote: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> None:
        self.wrote.append((asyncio.get_running_loop().time(), data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.write(b"")

    async def drain(self) -> None:
        pass


def _pipe_on_virtual_clock(chunks: int, gap: float, delay: float) -> tuple[list[float], list[tuple[float, bytes]]]:
    """Feed `chunks` chunks `gap` apart (virtual seconds) into a pipe of `delay`; (when fed, what it wrote)."""
    loop = _VirtualLoop()

    async def main() -> tuple[list[float], list[tuple[float, bytes]]]:
        reader, out = asyncio.StreamReader(), _Recorder()
        pipe = _Pipe(reader, out, delay, 2**20)  # type: ignore[arg-type]
        jobs = [asyncio.ensure_future(pipe.read()), asyncio.ensure_future(pipe.write())]
        fed = []
        for i in range(chunks):
            fed.append(loop.time())
            reader.feed_data(b"%06d" % i)
            await asyncio.sleep(gap)  # the pipe reads each chunk on its own
        reader.feed_eof()
        await asyncio.gather(*jobs)
        return fed, out.wrote

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_each_chunk_leaves_one_delay_after_it_came_not_one_delay_after_the_previous() -> None:
    fed, wrote = _pipe_on_virtual_clock(chunks=1000, gap=0.001, delay=DELAY)
    assert b"".join(data for _, data in wrote) == b"".join(b"%06d" % i for i in range(1000))
    assert len(wrote) == 1001 and wrote[-1][1] == b""  # each chunk written on its own, then the EOF
    # the delay is added once per direction: 1000 chunks 1 ms apart take 1 s + one delay, not 1000 delays
    assert [round(at, 6) for at, _ in wrote[:-1]] == [round(t + DELAY, 6) for t in fed]
    assert round(wrote[-1][0], 6) == round(fed[-1] + 0.001 + DELAY, 6)


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

"""A delaying TCP relay: a link with added latency where the kernel has no `tc netem`.

``DelayRelay(target_host, target_port, delay=0.025)`` listens on 127.0.0.1 (a free port) and
relays each connection to the target, holding every byte ``delay`` seconds in each direction.
Each chunk is stamped when it arrives and delivered at arrival + delay, so the delay is added
once per direction, not once per chunk: a stream keeps its throughput (a window of ``delay`` of
data is in flight), and one request/response round trip through the relay costs 2 × delay more.

Bounded: at most ``max_connections`` connections at once (more are refused by closing them),
at most ``max_buffer`` bytes held per direction (reading pauses until the writer catches up),
and everything ends with ``close()`` (or the ``with`` block). Runs its own event loop in a
daemon thread, so synchronous code (benchmarks, tests) can use it. Stdlib only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024


class _Pipe:
    """One direction: read chunks, stamp them, write each at its stamp + delay."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                 max_buffer: int) -> None:
        self.reader, self.writer, self.delay, self.max_buffer = reader, writer, delay, max_buffer
        self.held: deque[tuple[float, bytes]] = deque()  # (deliver at, data); b"" is the EOF mark
        self.bytes_held = 0
        self.changed = asyncio.Event()  # set when something was queued or taken off the queue

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self.bytes_held >= self.max_buffer:  # back-pressure: wait for the writer
                    self.changed.clear()
                    await self.changed.wait()
                data = await self.reader.read(CHUNK)
                self.held.append((loop.time() + self.delay, data))
                self.bytes_held += len(data)
                self.changed.set()
                if not data:
                    return
        except (ConnectionError, OSError):
            self.held.append((loop.time() + self.delay, b""))
            self.changed.set()

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.held:
                self.changed.clear()
                await self.changed.wait()
            due, data = self.held[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.held.popleft()
            self.bytes_held -= len(data)
            self.changed.set()
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                await self.writer.drain()
                return
            self.writer.write(data)
            await self.writer.drain()


class DelayRelay:
    """127.0.0.1:port -> target, every byte held ``delay`` seconds each way (see the module doc)."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.025, *, listen_host: str = "127.0.0.1",
                 max_connections: int = 64, max_buffer: int = 8 * 2**20) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.target = (target_host, target_port)
        self.delay = delay
        self.listen_host = listen_host
        self.max_connections = max_connections
        self.max_buffer = max_buffer
        self.port = 0
        self.accepted = 0  # connections relayed so far
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- the relay, on its loop ----------------------------------------------------------
    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            client_w.close()
            return
        self._tasks.add(task)
        self.accepted += 1
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, to_server = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
            server_w = to_server
            for sw in (client_w, to_server):  # no Nagle wait of the relay's own: bytes leave when they are due
                sock = sw.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._writers.update((client_w, to_server))
            pipes = [_Pipe(client_r, to_server, self.delay, self.max_buffer),
                     _Pipe(server_r, client_w, self.delay, self.max_buffer)]
            jobs = [asyncio.ensure_future(job) for p in pipes for job in (p.read(), p.write())]
            try:
                await asyncio.gather(*jobs)
            except (ConnectionError, OSError):
                pass
            finally:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:  # close(): the connection ends with the relay
            pass
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
            self._tasks.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- from synchronous code -------------------------------------------------------------
    def start(self) -> DelayRelay:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._stop())
            self._loop.close()

        self._thread = threading.Thread(target=main, name=f"delay-relay-{self.target[1]}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failed:
            self._thread = None
            raise RuntimeError(f"the delay relay did not start: {failed[0] if failed else 'timeout'}")
        return self

    def close(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._thread = None

    def __enter__(self) -> DelayRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def alias_block(alias: str, port: int, host_key_alias: str, address: str = "127.0.0.1") -> str:
    """An ssh config block: `alias` reaches the relay at address:port, checked against the host's known key."""
    return (f"\n# through a delaying relay (portal_tasks.testing.relay)\nHost {alias}\n    HostName {address}\n"
            f"    Port {port}\n    HostKeyAlias {host_key_alias}\n")


@contextmanager
def relayed_alias(ssh_config: Path, alias: str, relay: DelayRelay, host_key_alias: str) -> Iterator[str]:
    """With `alias` added to the laptop's ssh config (pointing at the relay); the file is restored after."""
    before = ssh_config.read_text()
    if re.search(rf"^Host\s+{re.escape(alias)}\s*$", before, re.M):
        raise ValueError(f"{ssh_config} already has Host {alias}")
    # before `Host *`, as a person would write it; ssh takes each option's first value anyway
    head, star, tail = before.partition("\nHost *\n")
    block = alias_block(alias, relay.port, host_key_alias, relay.listen_host)
    ssh_config.write_text(head + block + star + tail if star else before + block)
    try:
        yield alias
    finally:
        ssh_config.write_text(before)

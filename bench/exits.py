"""The CPU of every process that ends on this machine, as the kernel reports it (taskstats over netlink).

A process that ends is gone from /proc with what it cost; the kernel's taskstats interface sends one record
for it to every listener (root only) with its pid, parent, uid, name and exact run time
(``cpu_run_virtual_total``: the scheduler's nanoseconds, summed over all its threads). ``Exits`` is such a
listener: ``with Exits() as exits: ...`` then ``exits.ended``. Linux only; ``Exits.unavailable()`` says why not.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from dataclasses import dataclass

NETLINK_GENERIC = 16
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
TASKSTATS_CMD_GET, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 1, 3, 4
TYPE_PID, TYPE_TGID, TYPE_STATS, TYPE_AGGR_PID, TYPE_AGGR_TGID = 1, 2, 3, 4, 5
NLM_F_REQUEST, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
AGROUP = 0x20  # ac_flag (linux/acct.h): the last thread of the process ended (the process ended)
#: struct taskstats (linux/taskstats.h) offsets: the fields read here are where they are since version 1
OFF_FLAG, OFF_RUN_VIRTUAL, OFF_DELAY, OFF_COMM, OFF_UID, OFF_PID, OFF_PPID, OFF_BTIME = 8, 72, 24, 80, 120, 128, 132, 136


@dataclass(frozen=True)
class Ended:
    """One process that ended: its CPU nanoseconds (all threads), and the time it waited for a core."""

    pid: int
    ppid: int
    uid: int
    comm: str
    cpu_ns: int
    wait_ns: int
    btime: int  # start, seconds since the epoch


def _attrs(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, i)
        if length < 4:
            break
        out.append((kind & 0x3FFF, data[i + 4:i + length]))
        i += (length + 3) & ~3
    return out


def _attr(kind: int, payload: bytes) -> bytes:
    body = struct.pack("HH", 4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _message(family: int, cmd: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("BBH", cmd, 1, 0) + attrs
    return struct.pack("IHHII", 16 + len(body), family, NLM_F_REQUEST, seq, 0) + body


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 16 <= len(data):
        length, kind = struct.unpack_from("IH", data, i)
        if length < 16:
            break
        out.append((kind, data[i + 16:i + length]))
        i += (length + 3) & ~3
    return out


def parse_stats(stats: bytes) -> tuple[int, int, int, int, int, str, int, int]:
    """(flag, cpu_ns, wait_ns, uid, pid, comm, ppid, btime) of one struct taskstats."""
    flag = stats[OFF_FLAG]
    cpu, wait = struct.unpack_from("Q", stats, OFF_RUN_VIRTUAL)[0], struct.unpack_from("Q", stats, OFF_DELAY)[0]
    comm = stats[OFF_COMM:OFF_COMM + 32].split(b"\0", 1)[0].decode(errors="replace")
    uid, _gid, pid, ppid, btime = struct.unpack_from("IIIII", stats, OFF_UID)
    return flag, cpu, wait, uid, pid, comm, ppid, btime


def ended_of(payload: bytes) -> Ended | None:
    """The process a taskstats exit message reports as ended (None: only one of its threads ended)."""
    pid_stats: bytes | None = None
    tgid_stats: bytes | None = None
    for kind, nested in _attrs(payload[4:]):  # after the genl header
        if kind not in (TYPE_AGGR_PID, TYPE_AGGR_TGID):
            continue
        for inner, value in _attrs(nested):
            if inner == TYPE_STATS:
                if kind == TYPE_AGGR_PID:
                    pid_stats = value
                else:
                    tgid_stats = value
    if pid_stats is None:
        return None
    flag, cpu, wait, uid, pid, comm, ppid, btime = parse_stats(pid_stats)
    if not flag & AGROUP:
        return None
    if tgid_stats is not None:  # a process that had threads: the sums over all of them
        _, cpu, wait, *_ = parse_stats(tgid_stats)
    return Ended(pid, ppid, uid, comm, cpu, wait, btime)


class Exits:
    """Listens for every process that ends while open (``ended``); ``lost`` counts records the kernel dropped."""

    def __init__(self) -> None:
        self.ended: list[Ended] = []
        self.lost = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self._lock = threading.Lock()
        cpus = os.cpu_count() or 1
        self._mask = (f"0-{cpus - 1}" if cpus > 1 else "0").encode() + b"\0"  # every CPU's exits

    @staticmethod
    def unavailable() -> str | None:
        if not hasattr(socket, "AF_NETLINK"):
            return "taskstats needs Linux"
        if os.geteuid() != 0:
            return "taskstats listeners need root"
        return None

    def _family(self, sock: socket.socket) -> int:
        sock.send(_message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, _attr(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"), 1))
        for kind, body in _messages(sock.recv(65536)):
            if kind == NLMSG_ERROR:
                raise OSError(f"netlink: no TASKSTATS family (error {struct.unpack_from('i', body)[0]})")
            for attr, value in _attrs(body[4:]):
                if attr == CTRL_ATTR_FAMILY_ID:
                    return int(struct.unpack_from("H", value)[0])
        raise OSError("netlink: no TASKSTATS family id in the answer")

    def __enter__(self) -> Exits:  # noqa: PYI034 - a final class
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 64 * 2**20)  # SO_RCVBUFFORCE: a busy machine ends many
            sock.bind((0, 0))
            self.family = self._family(sock)
            sock.send(_message(self.family, TASKSTATS_CMD_GET, _attr(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, self._mask), 2))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="taskstats", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._sock is not None
        while not self._stop:
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    with self._lock:
                        self.lost += 1
                    continue
                return
            for kind, body in _messages(data):
                if kind in (NLMSG_ERROR, NLMSG_DONE) or kind != self.family:
                    continue
                got = ended_of(body)
                if got is not None:
                    with self._lock:
                        self.ended.append(got)

    def snapshot(self) -> list[Ended]:
        with self._lock:
            return list(self.ended)

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            try:
                self._sock.send(_message(self.family, TASKSTATS_CMD_GET,
                                         _attr(TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, self._mask), 3))
            except OSError:
                pass
            self._sock.close()

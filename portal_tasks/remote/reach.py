"""Who can reach each listener of the user on this server, and what keeps others out (for `ports` and
`status`): ``owner only``, ``anyone on this server`` or ``anyone on the network``.

A listener is "owner only" when nothing of the user's reaches anyone else: Dask's TLS ports (the
user's certificate only), Dask's HTTP servers started with portal's preload (403 to others), Jupyter
behind its token, kernels (every message signed with their key), Unix sockets others cannot open.
Anything else the user runs answers whoever can connect: everyone on the server for loopback, the
network for other addresses.
"""

from __future__ import annotations

import glob
import os
import stat
from typing import TYPE_CHECKING, Any

from . import hostpaths
from .common import _socket_pids, cmdline, environ, pid_uid, read_json, server_path

if TYPE_CHECKING:
    from .common import Listener

OWNER, SERVER, NETWORK = "owner only", "anyone on this server", "anyone on the network"
LOOPBACK = ("127.", "::1", "::ffff:127.")
#: /proc/net/unix: a listening socket has __SO_ACCEPTCON in its flags
ACCEPTING = 0x10000


def scope(addr: str) -> str:
    """Who can connect to a TCP address at all: the server (loopback) or the network."""
    return SERVER if addr.startswith(LOOPBACK) and addr != "::" else NETWORK


def _parent(pid: int) -> int:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def marked(pids: list[int]) -> bool:
    """True when one of ``pids`` is a process of a portal cluster (PORTAL_CLUSTER in its environment)."""
    mark = ("%s=" % hostpaths.CLUSTER_MARK).encode()
    return any(part.startswith(mark) for pid in pids for part in environ(pid))


def preloaded(pids: list[int]) -> bool:
    """True when one of ``pids`` started with portal's preload, or is a worker of a process that did:
    its parent (a spawned worker), or past the forkserver it was forked from. A program a task started
    inside a worker is neither: its parent, the worker, has no preload on its command line."""
    for pid in pids:
        for each in _starters(pid):
            # ``--preload PATH`` of `dask worker` on another server; the preload's path inside the JSON of the
            # host's `dask spec` (scheduler and nannies)
            if any(("/" + hostpaths.DASK_PRELOAD) in part for part in cmdline(each)):
                return True
    return False


def _forkserver(pid: int) -> bool:
    """The process runs Python's forkserver (a worker forked from it has the same command line)."""
    return any("multiprocessing.forkserver" in part for part in cmdline(pid))


def _starters(pid: int) -> list[int]:
    """``pid`` and its parent, and for a process forked by a forkserver every forkserver above it and the
    process that started them (a few at most)."""
    found = [pid, _parent(pid)]
    if _forkserver(pid):
        while found[-1] > 1 and _forkserver(found[-1]) and len(found) < 6:
            found.append(_parent(found[-1]))
    return [p for p in found if p > 1]


def _records() -> list[dict[str, Any]]:
    """The cluster and worker records of this server (clusters here, workers for clusters elsewhere)."""
    found: list[dict[str, Any]] = []
    for pattern in (("clusters", "*.json"), ("nodes", "*.json")):
        for path in glob.glob(server_path(*pattern)):
            data = read_json(path, None)
            if isinstance(data, dict) and "worker_ports" in data:  # not a scheduler file beside them
                found.append(data)
    return found


def tls_ports(records: list[dict[str, Any]]) -> set[int]:
    """The ports of recorded clusters that speak Dask's TLS: scheduler, workers, nannies."""
    ports: set[int] = set()
    for rec in records:
        if isinstance(rec.get("scheduler_port"), int):
            ports.add(rec["scheduler_port"])
        for name in ("worker_ports", "nanny_ports"):
            try:
                lo, hi = rec.get(name) or [0, -1]
                ports.update(range(int(lo), int(hi) + 1))
            except (TypeError, ValueError):  # a damaged record: its ports are not known
                pass
    return ports


def jupyter_ports() -> set[int]:
    ports: set[int] = set()
    for path in glob.glob(server_path("jupyter", "*", "state.json")):
        record = read_json(path, None)  # a damaged one (not an object) names no port
        port = record.get("port") if isinstance(record, dict) else None
        if isinstance(port, int):
            ports.add(port)
    return ports


def tcp(entry: Listener, tls: set[int], lab: set[int]) -> tuple[str, str]:
    """(who, by) for one TCP listener of the user (an entry of ``common.listeners()``)."""
    pid = entry.get("pid")
    pids = entry.get("pids") or ([pid] if pid else [])
    where = scope(entry["addr"])
    if pids and marked(pids):
        if entry["port"] in tls:
            return OWNER, "Dask's TLS: it answers your certificate only"
        if preloaded(pids):
            return OWNER, "portal's owner check: 403 to anyone else"
        return where, "nothing: a Dask HTTP server started by an earlier portal (`portal down` and up again)"
    if entry["port"] in lab:
        return OWNER, "Jupyter's token (its login page answers anyone who reaches the port)"
    if pids and any("ipykernel" in part for pid in pids for part in cmdline(pid)):
        return OWNER, "the kernel's key signs every message (HMAC)"
    return where, "nothing portal knows of (not started by portal)"


def unix_path(path: str) -> tuple[str, str]:
    """(who, by) for a Unix socket at ``path``: others need write on it and search on every directory."""
    if path.startswith("@"):
        return SERVER, "an abstract socket: no file permissions"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return OWNER, "gone"
    if not mode & 0o022:
        return OWNER, "Unix socket mode %04o" % stat.S_IMODE(mode)
    folder = os.path.dirname(path)
    while folder and folder != "/":
        try:
            if not os.stat(folder).st_mode & 0o011:
                return OWNER, "Unix socket in %s (mode %04o)" % (folder, stat.S_IMODE(os.stat(folder).st_mode))
        except OSError:
            break
        folder = os.path.dirname(folder)
    return SERVER, "Unix socket others may open (mode %04o)" % stat.S_IMODE(mode)


def unix_listeners() -> list[dict[str, Any]]:
    """The listening Unix sockets of the user's processes: {path, pid, command, who, by}."""
    try:
        with open("/proc/net/unix") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return []
    pids: dict[str, int] | None
    found: list[dict[str, Any]]
    pids, uid, found = None, os.getuid(), []
    for row in rows:
        cols = row.split()
        if len(cols) < 8 or not int(cols[3], 16) & ACCEPTING:
            continue
        if pids is None:
            pids = _socket_pids()
        pid = pids.get(cols[6])
        if not pid or pid_uid(pid) != uid:
            continue
        who, by = unix_path(cols[7])
        found.append({"path": cols[7], "pid": pid, "command": " ".join(cmdline(pid)[:4]), "who": who, "by": by})
    return sorted(found, key=lambda e: e["path"])


def describe(mine: list[Listener]) -> list[dict[str, Any]]:
    """The user's TCP listeners (entries of ``common.listeners()``) as reported: addr, port, pid, command, who, by."""
    records, lab = _records(), jupyter_ports()
    tls = tls_ports(records)
    shown: list[dict[str, Any]] = []
    for e in sorted(mine, key=lambda e: e["port"]):
        who, by = tcp(e, tls, lab)
        shown.append({"addr": e["addr"], "port": e["port"], "pid": e["pid"], "command": " ".join(e["cmdline"][:4]),
                      "who": who, "by": by})
    return shown

"""A user's block of ports and an env's slot in it: the arithmetic the laptop and the helper share
(standard library only, Python 3.8+; shipped in the helper's zipapp, imported by the laptop).

A user's ports are one block: ``port_base + (uid mod slots) * block_size``; each env the user brings up
gets a slot of :data:`SLOT_SIZE` ports in it, laid out by :data:`LAYOUT`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

#: The most workers one env's cluster has on one server: each takes a worker, a nanny and an HTTP port of the slot.
MAX_WORKERS = 8
#: Ports per env inside a user's block.
SLOT_SIZE = 30
#: Offsets inside an env's slot: single ports, then [first, last] ranges for workers, nannies and the
#: workers' own HTTP servers (/health, /metrics; each worker is a process of its own, so each gets its own).
LAYOUT: dict[str, Any] = {
    "scheduler_port": 0,
    "dashboard_port": 1,
    "jupyter_port": 2,
    "worker_ports": [4, 4 + MAX_WORKERS - 1],
    "nanny_ports": [12, 12 + MAX_WORKERS - 1],
    "http_ports": [20, 20 + MAX_WORKERS - 1],
}
#: The highest TCP port.
LAST_PORT = 65535
#: Single ports and [first, last] ranges of an env's slot.
SINGLES = ("scheduler_port", "dashboard_port", "jupyter_port")
RANGES = ("worker_ports", "nanny_ports", "http_ports")
#: The ranges an env planned by an earlier portal has (20-port slots, no room for the workers' HTTP
#: servers): such a record still works for what runs on it, and is planned again when its cluster starts.
OLD_RANGES = ("worker_ports", "nanny_ports")


def span(pair: Iterable[int] | None) -> list[int]:
    """The ports of a ``[first, last]`` range (ends included); none for None or an empty one."""
    lo, hi = list(pair or [0, -1])
    return list(range(lo, hi + 1))


def block_index(uid: int, slots: int) -> int:
    """The user's first-choice block."""
    return uid % slots


def slots_per_block(block_size: int) -> int:
    """How many envs fit in a block."""
    return max(1, block_size // SLOT_SIZE)


def block_range(base: int, block_size: int, slots: int, index: int) -> dict[str, int]:
    """Block ``index`` (modulo ``slots``) of the plan: {index, start, end}, ends included."""
    index %= slots
    start = base + index * block_size
    return {"index": index, "start": start, "end": start + block_size - 1}


def slot_ports(block_start: int, slot: int) -> dict[str, Any]:
    """The first-choice ports of env slot ``slot`` in the block starting at ``block_start``."""
    base = block_start + slot * SLOT_SIZE
    ports: dict[str, Any] = {name: base + LAYOUT[name] for name in SINGLES}
    for name in RANGES:
        ports[name] = [base + LAYOUT[name][0], base + LAYOUT[name][1]]
    return ports


def recorded_ports(rec: Mapping[str, Any]) -> set[int]:
    """Every port an env's record (this layout or an earlier one) holds: its singles and ranges."""
    used = {rec[name] for name in SINGLES if isinstance(rec.get(name), int)}
    for name in RANGES:
        used.update(span(rec.get(name)))
    return used


def is_current(rec: Mapping[str, Any]) -> bool:
    """True for an env record of this layout (one with room for its workers' HTTP ports)."""
    return all(isinstance(rec.get(name), list) and len(rec[name]) == 2 for name in RANGES)


def planned_ports(report: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Env ``key``'s ports from a ``ports-report``: recorded if of this layout, else the ones it would get
    (one an earlier portal planned is planned again at its start), else the old record; {} when its block is full."""
    recorded = (report.get("envs") or {}).get(key)
    current = recorded if recorded and is_current(recorded) else None
    return dict(current or report.get("would_be") or recorded or {})


def free_slots(block_start: int, per_block: int, envs: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Slots of the block no env holds: not the ``slot`` of a record of this layout, and none of
    the ports of a record an earlier portal planned (its slots were of another size)."""
    taken = {rec.get("slot") for rec in envs.values() if is_current(rec)}
    old: set[int] = set()
    for rec in envs.values():
        if not is_current(rec):
            old |= recorded_ports(rec)
    return [s for s in range(per_block) if s not in taken
            and not old & recorded_ports(slot_ports(block_start, s))]


def per_worker(ports: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Worker ``index``'s own ports (its worker, its nanny, its HTTP server).

    Worker and nanny: ``[own, last]`` of their ranges (Dask binds the first free of them, so one
    taken port moves it up inside the slot); HTTP: one port (``ports["http"][index]`` when the helper
    chose them around ports others hold, else the range's ``index``-th), since Dask's HTTP server takes no
    range and falls back to a random port outside the block when its port is taken. A record an
    earlier portal planned has no HTTP range: 0, a port the kernel picks.
    """
    w, n = ports["worker_ports"], ports["nanny_ports"]
    http, own = ports.get("http") or [], span(ports.get("http_ports"))
    port = http[index] if index < len(http) else own[index] if index < len(own) else 0
    return {"worker_port": [w[0] + index, w[1]], "nanny_port": [n[0] + index, n[1]], "http_port": port}


def next_free(preferred: int, start: int, end: int, taken: Iterable[int]) -> int | None:
    """``preferred`` if free, else the next port of start..end not in ``taken`` (wrapping), else None."""
    used = set(taken)
    size = end - start + 1
    for step in range(size):
        port = start + (preferred - start + step) % size
        if port not in used:
            return port
    return None

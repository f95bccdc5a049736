"""The port plan and the memory budget (pure): which ports a user's services get, how much memory workers get.

A user's ports are one block: ``port_base + (uid mod slots) * block_size``; each env the
user brings up gets a slot of :data:`SLOT_SIZE` ports inside the block (see :data:`LAYOUT`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .config import Settings, check_host
from .errors import UsageError

from .envs import env_key  # one env key for every window name (cluster-KEY, ipython-KEY, ...)
from .remote import slots
from .remote.amounts import format_bytes, parse_amount
from .remote.slots import LAYOUT, MAX_WORKERS, SLOT_SIZE, block_index, slots_per_block

__all__ = [
    "SLOT_SIZE", "LAYOUT", "MAX_WORKERS", "Block", "EnvPorts", "block_index", "block_for", "slots_per_block",
    "env_ports", "next_free", "plan_payload", "parse_count", "parse_memory", "memory_budget", "split_memory",
    "format_bytes", "env_key",
]

#: ``--memory fair`` (the default): the host gives the cluster its fair share of the server.
FAIR = "fair"
#: Never hand the whole machine to one user's workers.
MAX_SHARE = 0.9


@dataclass(frozen=True)
class Block:
    """A user's block of ports: index among the host's blocks and the first/last port."""

    index: int
    start: int
    end: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end


@dataclass(frozen=True)
class EnvPorts:
    """The ports of one env's services; ranges are inclusive [first, last].

    ``http_ports``: the workers' own HTTP servers, one each; ``(0, -1)`` (none) in a record an earlier
    portal planned, whose workers' HTTP servers take a port the kernel picks. ``http``: the ones the
    helper chose for a start, around ports others hold (worker i gets the i-th; empty: the range's first).
    """

    scheduler_port: int
    dashboard_port: int
    jupyter_port: int
    worker_ports: tuple[int, int]
    nanny_ports: tuple[int, int]
    http_ports: tuple[int, int] = (0, -1)
    http: tuple[int, ...] = ()

    def all_ports(self) -> list[int]:
        singles = [self.scheduler_port, self.dashboard_port, self.jupyter_port]
        ranges = (self.worker_ports, self.nanny_ports, self.http_ports)
        return singles + [p for pair in ranges for p in slots.span(pair)]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in slots.RANGES:
            data[name] = list(getattr(self, name))
        data["http"] = list(self.http)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnvPorts":
        lo, hi = data.get("http_ports") or (0, -1)
        return cls(int(data["scheduler_port"]), int(data["dashboard_port"]), int(data["jupyter_port"]),
                   (int(data["worker_ports"][0]), int(data["worker_ports"][1])),
                   (int(data["nanny_ports"][0]), int(data["nanny_ports"][1])), (int(lo), int(hi)),
                   tuple(int(p) for p in data.get("http") or ()))


def block_for(settings: Settings, index: int) -> Block:
    return Block(**slots.block_range(settings.port_base, settings.block_size, settings.slots, index))


def env_ports(block_start: int, slot: int) -> EnvPorts:
    """The first-choice ports of env slot ``slot`` in the block starting at ``block_start``."""
    return EnvPorts.from_dict(slots.slot_ports(block_start, slot))


def next_free(preferred: int, block: Block, taken: Iterable[int]) -> int | None:
    """``preferred`` if free, else the next port of the block not in ``taken`` (wrapping), else None."""
    return slots.next_free(preferred, block.start, block.end, taken)


def plan_payload(settings: Settings, uid: int) -> dict[str, Any]:
    """What the host-side helper needs to claim a block and a slot (it knows who holds which port)."""
    return {
        "base": settings.port_base, "block_size": settings.block_size, "slots": settings.slots,
        "first": block_index(uid, settings.slots), "slot_size": SLOT_SIZE,
        "slots_per_block": slots_per_block(settings.block_size), "layout": LAYOUT,
        "claims_dir": settings.claims_dir,
    }


# -- counts and memory ----------------------------------------------------------------------------


def parse_count(name: str, value: Any, low: int = 1, high: int = 1024) -> int:
    """A whole number within [low, high] given on the command line, else UsageError naming it."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UsageError(f"--{name} {value!r} is not a whole number.", hint=f"Give --{name} between {low} and {high}.") from None
    if not low <= number <= high:
        raise UsageError(f"--{name} {number} is out of range.", hint=f"Give --{name} between {low} and {high}.")
    return number


def parse_hosts(name: str, value: Any, here: str) -> list[str]:
    """``node1,node2`` given as --NAME: the hosts in order, each once, none of them ``here``; else UsageError."""
    if not value:
        return []
    given = value if isinstance(value, (list, tuple)) else str(value).split(",")
    hosts = list(dict.fromkeys(str(h).strip() for h in given if str(h).strip()))
    for host in hosts:
        check_host(host)
        if host == here:
            raise UsageError(f"--{name} {host}: that is the scheduler's own host.",
                             hint=f"Name other servers; the workers of {here} come with --workers.")
    if not hosts:
        raise UsageError(f"--{name} {value!r} names no host.", hint=f"Give e.g. --{name} node1,node2.")
    return hosts


def parse_memory(value: Any) -> tuple[str, float]:
    """``("bytes", n)`` for a size like 16GiB / 512MB / 2e9 bytes, ``("share", f)`` for 25%; else UsageError."""
    text = str(value)
    parsed = parse_amount(text)
    if parsed and parsed[0] == "share":
        share = parsed[1]
        if not 0 < share <= MAX_SHARE:
            raise UsageError(f"--memory {text!r} is not a share between 0% and {MAX_SHARE:.0%}.",
                             hint="Leave memory for others: e.g. --memory 25%.")
        return "share", share
    if parsed:
        amount = parsed[1]
        if amount < 64 * 1024**2:
            raise UsageError(f"--memory {text!r} is too small for a Dask worker.", hint="Give e.g. --memory 4GiB.")
        return "bytes", amount
    raise UsageError(f"--memory {text!r} is neither a size nor a share.", hint="Give e.g. --memory 16GiB or --memory 25%.")


def memory_budget(value: Any, host_bytes: int | None) -> int:
    """The user's budget in bytes; never more than MAX_SHARE of the host's memory."""
    kind, amount = parse_memory(value)
    if kind == "share":
        if not host_bytes:
            raise UsageError(f"--memory {value!r} is a share, but the host's memory is unknown.",
                             hint="Give a size instead, e.g. --memory 16GiB.")
        return int(host_bytes * amount)
    if host_bytes and amount > host_bytes * MAX_SHARE:
        raise UsageError(f"--memory {value!r} is more than {MAX_SHARE:.0%} of the host's {format_bytes(host_bytes)}.",
                         hint="Leave memory for others: ask for less.")
    return int(amount)


def split_memory(budget: int, workers: int) -> int:
    """Each worker's ``--memory-limit`` in bytes (0 with no workers: a scheduler alone)."""
    return budget // workers if workers else 0


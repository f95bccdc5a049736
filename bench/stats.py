"""Medians, percentiles and the result rows every benchmark returns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from portal_tasks.testing.trips import Trips

T = TypeVar("T")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the seconds the block took."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, against what, and whether the target is met.

    ``higher_is_better`` is True for throughputs and speed-ups: the target is then a floor.
    """

    bench: str
    what: str
    value: float
    unit: str
    baseline_what: str = ""
    baseline: float | None = None
    target: float | None = None  # on the ratio value / baseline (or on value alone when no baseline)
    higher_is_better: bool = False
    note: str = ""
    #: round trips to the host the measured command made (counted in the host's sshd log), their target
    trips: int | None = None
    trips_target: int | None = None

    @property
    def trips_met(self) -> bool | None:
        if self.trips is None or self.trips_target is None:
            return None
        return self.trips <= self.trips_target

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    @property
    def met(self) -> bool | None:
        measure = self.ratio if self.baseline is not None else self.value
        if self.target is None or measure is None:
            return None
        return measure >= self.target if self.higher_is_better else measure <= self.target


def trips_summary(counted: list[Trips | None]) -> tuple[int | None, str]:
    """The round trips of several runs of one command as the issue counts them (ssh sessions over the master
    plus helper calls: the sessions), the most of any run, and a note with everything sshd saw (the new
    connection and the channels through forwards too: "4 = 1 connection + 2 sessions + 1 forward channel")."""
    got = [t for t in counted if t is not None]
    if not got:
        return None, ""
    most = max(got, key=lambda t: (t.sessions, t.total))
    totals = sorted({t.total for t in got})
    spread = "" if len(totals) == 1 else f"; {totals[0]}-{totals[-1]} over {len(got)} runs"
    return most.sessions, f"round trips: {most.sessions} session{'s' * (most.sessions != 1)}; all sshd saw: {most.describe()}{spread}"

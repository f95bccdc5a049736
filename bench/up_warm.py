"""(1) warm `up` (everything already running) against one plain `ssh host true` over a fresh connection."""

from __future__ import annotations

from bench.context import Bench
from bench.stats import Row, median, trips_summary

#: issue 12: warm `up` is one round trip (the snapshot), at most twice one fresh `ssh host true`
TARGET, TRIPS = 2.0, 1


def run(b: Bench, runs: int = 10) -> list[Row]:
    runs = 2 if b.quick else runs
    alice = b.user("alice")
    b.up(alice)  # cold, not timed: afterwards everything runs
    ups, sshs, counted = [], [], []
    for _ in range(runs):  # interleaved, so both see the same machine
        sshs.append(b.ssh_true(alice))
        seconds, trips, _ = b.counted_up(alice)
        ups.append(seconds)
        counted.append(trips)
    most, note = trips_summary(counted)
    return [Row("1", f"warm `up --no-attach --no-browser`, median of {runs}", median(ups), "s",
                "one `ssh host true`, fresh connection", median(sshs), target=TARGET, note=note,
                trips=most, trips_target=TRIPS)]

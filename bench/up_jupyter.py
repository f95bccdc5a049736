"""(7) cold and warm `up --jupyter`: times, and round trips to the host counted in its sshd log."""

from __future__ import annotations

from bench.context import Bench
from bench.stats import Row, median, trips_summary
from bench.up_cold import TRIPS as COLD_TRIPS
from bench.up_warm import TARGET as WARM_TARGET
from bench.up_warm import TRIPS as WARM_TRIPS


def run(b: Bench, cold_runs: int = 3, warm_runs: int = 5) -> list[Row]:
    cold_runs, warm_runs = (1, 1) if b.quick else (cold_runs, warm_runs)
    alice = b.user("alice")
    colds, cold_trips, warms, warm_trips, sshs = [], [], [], [], []
    for _ in range(cold_runs):
        b.reset(alice)
        seconds, trips, _ = b.counted_up(alice, "--jupyter")
        colds.append(seconds)
        cold_trips.append(trips)
        for _ in range(warm_runs):  # warm: everything of the cold run still runs
            sshs.append(b.ssh_true(alice))
            seconds, trips, _ = b.counted_up(alice, "--jupyter")
            warms.append(seconds)
            warm_trips.append(trips)
    b.reset(alice)
    cold_most, cold_note = trips_summary(cold_trips)
    warm_most, warm_note = trips_summary(warm_trips)
    return [
        Row("7", f"cold `up --jupyter`, until it returns, median of {cold_runs}", median(colds), "s",
            note=cold_note, trips=cold_most, trips_target=COLD_TRIPS),
        Row("7", f"warm `up --jupyter`, median of {len(warms)}", median(warms), "s",
            "one `ssh host true`, fresh connection", median(sshs), target=WARM_TARGET, note=warm_note,
            trips=warm_most, trips_target=WARM_TRIPS),
    ]

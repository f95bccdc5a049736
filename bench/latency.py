"""(8) cold and warm `up` over a link with added latency (25 ms each way) against `ssh host true` over it.

The kernel here has no `tc netem`, so a delaying TCP relay (portal_tasks.testing.relay) on the laptop's
loopback stands in front of the host's sshd, and an extra ssh alias (`matagorda-slow`) goes through it:
every byte of the SSH connection waits 25 ms each way, so each round trip costs 50 ms more, as from a
laptop at home through a VPN and a login node. Round trips are counted in the host's sshd log as in (1)."""

from __future__ import annotations

from bench.context import Bench
from bench.stats import Row, median, trips_summary
from bench.up_cold import TRIPS as COLD_TRIPS
from bench.up_cold import by_hand, cluster_spec
from bench.up_warm import TARGET as WARM_TARGET
from bench.up_warm import TRIPS as WARM_TRIPS
from portal_tasks.testing.relay import DelayRelay, relayed_alias

DELAY = 0.025  # seconds each way
ALIAS = "matagorda-slow"


def run(b: Bench, cold_runs: int = 3, warm_runs: int = 5, delay: float = DELAY) -> list[Row]:
    cold_runs, warm_runs = (1, 1) if b.quick else (cold_runs, warm_runs)
    alice = b.user("alice")
    if not b.server.address:
        raise RuntimeError("the latency benchmark needs the test host's address (the netns server has it)")
    colds, cold_trips, hands, warms, warm_trips, sshs = [], [], [], [], [], []
    with DelayRelay(b.server.address, 22, delay) as relay, \
            relayed_alias(alice.ssh_config, ALIAS, relay, b.server.address) as slow:
        for _ in range(cold_runs):
            b.reset(alice)
            sshs.append(b.ssh_true(alice, host=slow))
            seconds, trips, _ = b.counted_up(alice, host=slow)
            colds.append(seconds)
            cold_trips.append(trips)
            for _ in range(warm_runs):
                sshs.append(b.ssh_true(alice, host=slow))
                seconds, trips, _ = b.counted_up(alice, host=slow)
                warms.append(seconds)
                warm_trips.append(trips)
            spec = cluster_spec(b, alice)
            b.reset(alice)
            hands.append(by_hand(b, *spec, host=slow))
        b.reset(alice)
    ms = f"{delay * 1000:g} ms each way"
    ssh_what = f"one `ssh host true`, fresh connection, same link ({ms})"
    cold_most, cold_note = trips_summary(cold_trips)
    warm_most, warm_note = trips_summary(warm_trips)
    return [
        Row("8", f"warm `up` over a link with {ms}, median of {len(warms)}", median(warms), "s",
            ssh_what, median(sshs), target=WARM_TARGET, note=warm_note, trips=warm_most, trips_target=WARM_TRIPS),
        Row("8", f"cold `up` over a link with {ms}, median of {cold_runs}", median(colds), "s",
            ssh_what, median(sshs), note=cold_note, trips=cold_most, trips_target=COLD_TRIPS),
        Row("8", f"cold `up` over a link with {ms} ({spec[0]} workers × {spec[1]} threads)", median(colds), "s",
            "the by-hand cluster of (2) over one ssh, same link", median(hands), target=1.5),
    ]

"""(2) cold `up` (nothing runs for the user) against starting the same Dask cluster by hand and waiting for it."""

from __future__ import annotations

import json

from bench.context import Bench, first_line
from bench.stats import Row, median, trips_summary
from portal_tasks.testing.server import TestUser

#: issue 12: cold `up` at most 1.5x the by-hand baseline, in a few round trips (master, plan, forwards)
TARGET, TRIPS = 1.5, 3

#: Typed by a person on the host (over one ssh): scheduler and workers in the background, then a
#: client waits until it sees every worker; prints the seconds since the ssh session started.
BY_HAND = r"""
set -e
. {env}/bin/activate
D=$(mktemp -d)
dask scheduler --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0 --scheduler-file $D/s.json >$D/s.log 2>&1 &
S=$!
dask worker --scheduler-file $D/s.json --host 127.0.0.1 --nworkers {workers} --nthreads {threads} \
    --memory-limit {memory} --no-dashboard >$D/w.log 2>&1 &
W=$!
python - $D/s.json <<'PY'
import os, sys, time
from dask.distributed import Client
deadline = time.monotonic() + {wait}
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.02)
c = Client(scheduler_file=sys.argv[1], timeout={wait})
c.wait_for_workers({workers}, timeout={wait})
print("workers", len(c.scheduler_info()["workers"]), flush=True)
c.close()
PY
kill $W $S; wait $W $S 2>/dev/null || true
rm -rf $D
"""


def cluster_spec(b: Bench, user: TestUser) -> tuple[int, int, int]:
    """(workers, threads, memory limit per worker) of user's running portal cluster (defaults when none)."""
    res = b.portal(user, "status", "--host", b.host, "--json")
    clusters = json.loads(res.stdout).get("clusters") or [] if res.ok else []
    spec = clusters[0] if clusters else {}
    return int(spec.get("workers", 2)), int(spec.get("threads", 2)), int(spec.get("memory_limit", 2**30))


def by_hand(b: Bench, workers: int, threads: int, memory: int, user: TestUser | None = None,
            host: str | None = None, wait: float = 120) -> float:
    """Seconds from the ssh start until the client on the host sees every worker (teardown not timed); the
    client gives up after `wait` seconds (a hundred users at once on two cores need more than 120)."""
    alice = user or b.user("alice")
    script = BY_HAND.format(env=b.env, workers=workers, threads=threads, memory=memory, wait=int(wait))
    argv = alice.ssh_argv(host or b.host, "bash", "-s", options=["-o", "ControlMaster=no", "-o", "ControlPath=none"])
    seconds, line, rc, err = first_line(argv, script, timeout=wait + 60)  # the client gives up after `wait` s
    if line.strip() != f"workers {workers}" or rc != 0:
        raise RuntimeError(f"starting the cluster by hand failed (rc {rc}): {line} {err}")
    return seconds


def run(b: Bench, runs: int = 3) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    ups, hands, counted = [], [], []
    spec = (2, 2, 2**30)
    for _ in range(runs):
        b.reset(alice)
        seconds, trips, _ = b.counted_up(alice)
        ups.append(seconds)
        counted.append(trips)
        spec = cluster_spec(b, alice)
        b.reset(alice)
        hands.append(by_hand(b, *spec))
    b.reset(alice)
    most, trips_note = trips_summary(counted)
    note = f"{spec[0]} workers × {spec[1]} threads, median of {runs}" + (f"; {trips_note}" if trips_note else "")
    return [Row("2", f"cold `up` ({note})", median(ups), "s",
                "`dask scheduler` + `dask worker` by hand over one ssh, until a client sees the workers",
                median(hands), target=TARGET, trips=most, trips_target=TRIPS)]

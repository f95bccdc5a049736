"""(2) cold `up` (nothing runs for the user) against starting the same Dask cluster by hand and waiting for it."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

from bench.context import Bench
from bench.stats import Row, median

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
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.02)
c = Client(scheduler_file=sys.argv[1], timeout=60)
c.wait_for_workers({workers}, timeout=120)
print("workers", len(c.scheduler_info()["workers"]), flush=True)
c.close()
PY
kill $W $S; wait $W $S 2>/dev/null || true
rm -rf $D
"""


def _cluster(b: Bench) -> dict[str, object]:
    res = b.portal(b.user("alice"), "status", "--host", b.host, "--json")
    clusters = json.loads(res.stdout).get("clusters") or []
    return clusters[0] if clusters else {}


def by_hand(b: Bench, workers: int, threads: int, memory: int) -> float:
    """Seconds from the ssh start until the client on the host sees every worker (teardown not timed)."""
    alice = b.user("alice")
    script = BY_HAND.format(env=b.env, workers=workers, threads=threads, memory=memory)
    argv = alice.ssh_argv(b.host, "bash", "-s", options=["-o", "ControlMaster=no", "-o", "ControlPath=none"])
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(script)
            proc.stdin.close()
            line = proc.stdout.readline()  # bounded: the client waits at most 120 s, then the script ends
            seconds = time.perf_counter() - start
            proc.stdout.read()
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        err = errors.read()
    if line.strip() != f"workers {workers}" or proc.returncode != 0:
        raise RuntimeError(f"starting the cluster by hand failed (rc {proc.returncode}): {line} {err[-1500:]}")
    return seconds


def run(b: Bench, runs: int = 3) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    ups, hands = [], []
    spec: dict[str, object] = {}
    for _ in range(runs):
        b.reset(alice)
        ups.append(b.up(alice)[0])
        spec = _cluster(b) or spec
        b.reset(alice)
        hands.append(by_hand(b, int(spec.get("workers", 2)), int(spec.get("threads", 2)),  # type: ignore[arg-type]
                             int(spec.get("memory_limit", 2**30))))  # type: ignore[arg-type]
    b.reset(alice)
    note = f"{spec.get('workers', '?')} workers × {spec.get('threads', '?')} threads, median of {runs}"
    return [Row("2", f"cold `up` ({note})", median(ups), "s",
                "`dask scheduler` + `dask worker` by hand over one ssh, until a client sees the workers",
                median(hands), target=1.5)]

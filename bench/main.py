"""`python -m bench`: start the netns test server, run the benchmarks, print and write the table."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    clients,
    forward_watch,
    forwards,
    host_cpu,
    jobs,
    latency,
    many_users,
    named_env,
    owner_only,
    page_start,
    tmux_drive,
    up_cold,
    up_jupyter,
    up_warm,
)
from bench.context import Bench
from bench.stats import Row
from bench.table import document, render

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def byte_compile() -> int:
    """Compile portal's modules as pip does when it installs them: the laptop's `portal` then runs as installed,
    also where PYTHONDONTWRITEBYTECODE keeps Python from caching them itself (each module compiled on every
    call: 30 ms of a cold `up`). The number of modules that were missing or stale."""
    import compileall
    import io
    from contextlib import redirect_stdout

    import portal_tasks

    out = io.StringIO()
    with redirect_stdout(out):  # compileall names each file it compiles
        compileall.compile_dir(str(Path(portal_tasks.__file__).parent), quiet=0)
    return sum(1 for line in out.getvalue().splitlines() if line.startswith("Compiling "))


def benchmarks(users_workers: int) -> dict[str, Callable[[Bench], list[Row]]]:
    """Name -> function, in the order they run (the cluster of warm `up` is reused by 4 and 6)."""
    return {
        "forward": forwards.run,
        "warm": up_warm.run,
        "attach": clients.attach,
        "clients": clients.many,
        "cold": up_cold.run,
        "jupyter": up_jupyter.run,
        "cpu": host_cpu.run,
        "latency": latency.run,
        "users": lambda b: many_users.run(b, workers=users_workers),
        "jobs": jobs.run,
        "tmux": lambda b: tmux_drive.run(b.quick),
        "named": named_env.run_bench,
        "owner": owner_only.run,
        "page": page_start.run,
        "watch": forward_watch.run,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--users", type=int, default=20, help="users running `up` at once in benchmark 5 (default 20)")
    p.add_argument("--users-workers", type=int, default=1, help="workers per user in benchmark 5 (default 1)")
    p.add_argument("--only", action="append", default=[], help="run only these benchmarks (repeatable): "
                   "forward, warm, attach, clients, cold, jupyter, cpu, latency, users, jobs, tmux, named, owner, "
                   "page, watch")
    p.add_argument("--quick", action="store_true", help="one tiny iteration of each (a smoke run)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where the table goes (default {RESULTS})")
    return p.parse_args(argv)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from portal_tasks.testing.flows import admin_set_up_for
    from portal_tasks.testing.trips import TripCountingServer, sshd_log

    signal.signal(signal.SIGTERM, _sigterm)  # teardown runs on kill as on Ctrl-C
    chosen = benchmarks(args.users_workers)
    unknown = set(args.only) - set(chosen)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    start = time.monotonic()
    compiled = byte_compile()
    if compiled:
        print(f"bench: byte-compiled {compiled} of portal's modules (missing or stale)", file=sys.stderr, flush=True)
    backend = TripCountingServer(extra_users=max(0, args.users - 2) if not args.only or "users" in args.only else 0)
    rows: list[Row] = []
    failed: list[str] = []
    bench_notes: list[str] = []  # what benchmarks add below the table (per-process breakdowns)
    loads: list[str] = []  # the machine's 1-minute load average as each benchmark starts (the machine is shared)
    try:
        print(f"bench: starting the netns test server ({args.users} users)", file=sys.stderr, flush=True)
        server = backend.start()
        # a server set up for twenty users (the users benchmark sets it up for each of its rounds, then back)
        admin_set_up_for(server, min(args.users, many_users.ROUNDS[0]))
        bench = Bench(server, quick=args.quick, sshd_log=sshd_log(server.run_id, base_root=backend.base.parent))
        for name, fn in chosen.items():
            if args.only and name not in args.only:
                continue
            t0 = time.monotonic()
            loads.append(f"{name} {os.getloadavg()[0]:.1f}")
            print(f"bench: {name} … (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            try:
                got = fn(bench)
            except Exception:  # noqa: BLE001 - one failing benchmark does not hide the others
                failed.append(name)
                traceback.print_exc()
                continue
            rows += got
            print(render(got).split("\n", 2)[2], file=sys.stderr)
            print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        bench_notes = bench.notes
    finally:
        print("bench: tearing down the test server", file=sys.stderr, flush=True)
        backend.close()
    loads.append(f"end {os.getloadavg()[0]:.1f}")
    text = document(rows, time.monotonic() - start, sys.argv[1:] if argv is None else argv,
                    load=f"1-minute load average of the machine as each benchmark started: {', '.join(loads)}")
    if bench_notes:
        text += "\n" + "\n\n".join(bench_notes) + "\n"
    if failed:
        text += f"\nFailed: {', '.join(failed)} (see the run's stderr).\n"
    print(text)
    args.out.write_text(text)
    return 1 if failed else 0

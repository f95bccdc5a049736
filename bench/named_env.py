"""(11) resolving a conda env by its name costs no conda start: `portal check --env a` for a user whose conda
comes from `conda init` (the name found on disk: ~/.conda/environments.txt, envs dirs) against the same check
given the env's path (no name to resolve). A conda start (`conda env list --json`, what a name cost before)
is measured beside them as a note."""

from __future__ import annotations

import shlex
import time

from bench.context import Bench
from bench.stats import Row, median
from portal_tasks.runner import run
from portal_tasks.testing import conda

#: issue 19: a name costs what a path costs (no conda start, which takes 0.5-2 s)
TARGET = 1.1


def run_bench(b: Bench, runs: int = 7) -> list[Row]:
    runs = 2 if b.quick else runs
    carol = b.user("carol")
    prefix = str(conda.env_prefix(carol.home, "a"))
    install = b.server.conda() if callable(getattr(b.server, "conda", None)) else None
    named, by_path, starts = [], [], []

    def timed(*args: str) -> float:
        start = time.perf_counter()
        res = b.portal(carol, "check", "--host", b.host, *args)
        seconds = time.perf_counter() - start
        if "env 'a'" not in res.stdout and prefix not in res.stdout:
            raise RuntimeError(f"check did not find the env: {res.stdout[-800:]} {res.stderr[-800:]}")
        return seconds

    for _ in range(runs):  # interleaved, so both see the same machine
        named.append(timed("--env", "a"))
        by_path.append(timed("--env", prefix))
        if install is not None:
            start = time.perf_counter()
            run(carol.ssh_argv(b.host, shlex.join([f"{install}/bin/conda", "env", "list", "--json"])), timeout=120)
            starts.append(time.perf_counter() - start)
    note = f"one `conda env list --json` over ssh: {median(starts):.2f} s" if starts else ""
    return [Row("11", f"`check --env a` (conda env by name, from `conda init`), median of {runs}", median(named), "s",
                "`check --env PATH` (the same env by path)", median(by_path), target=TARGET, note=note)]

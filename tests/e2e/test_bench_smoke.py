"""One tiny iteration of each benchmark in bench/, so the harness keeps working (no timing asserted)."""

from __future__ import annotations

import functools
import math

import pytest

from bench import (
    clients,
    forward_watch,
    forwards,
    host_cpu,
    jobs,
    latency,
    many_users,
    owner_only,
    page_start,
    up_cold,
    up_jupyter,
    up_warm,
)
from bench.context import Bench
from bench.stats import Row
from bench.table import render
from portal_tasks.testing.trips import sshd_log

pytestmark = pytest.mark.e2e


@pytest.fixture
def bench(portal_server, alice, bob) -> Bench:
    try:
        log = sshd_log(portal_server.run_id)
    except FileNotFoundError:
        log = None  # a server of another backend: round trips are not counted
    return Bench(portal_server, quick=True, sshd_log=log)


def _check(rows: list[Row]) -> None:
    assert rows and all(not math.isnan(r.value) for r in rows), rows
    assert render(rows).count("\n") == len(rows) + 1


@pytest.mark.parametrize("fn", [forwards.run, up_warm.run, clients.attach, clients.many, up_cold.run, up_jupyter.run,
                                latency.run, functools.partial(many_users.run, admin=False), owner_only.run,
                                page_start.run, forward_watch.run],
                         ids=["forward", "warm", "attach", "clients", "cold", "jupyter", "latency", "users", "owner",
                              "page", "watch"])
def test_benchmark_runs_once(bench, fn):
    _check(fn(bench))


def test_the_host_cpu_benchmark_counts_every_process_both_ways(bench):
    rows = host_cpu.run(bench)
    _check(rows)
    cpu = [r for r in rows if "host CPU" in r.what]
    assert len(cpu) == 2 and all(r.value > 0 and r.baseline for r in cpu), rows
    starts = [r for r in rows if "Python interpreters" in r.what]
    # by hand at least: scheduler, the worker command and its 2 spawned workers, IPython; JupyterLab on top
    plain, lab = (r.baseline or 0 for r in starts)
    assert plain >= 5 and lab > plain, starts
    assert all(r.value >= plain for r in starts), starts
    # portal's IPython was seen at its prompt with its client (the row the by-hand side's "ready" compares with)
    prompt = [r for r in rows if "IPython shows its prompt" in r.what]
    assert len(prompt) == 1 and prompt[0].value > 0, rows
    assert "| dask spec: scheduler and nannies | 1 (1) |" in bench.notes[-2] and "| portal helper | 1 (1) |" in bench.notes[-2]


def test_the_jobs_benchmark_runs_once(bench, portal_slurm):
    _check(jobs.run(bench, keep_slurm=True))


def test_the_tmux_benchmark_runs_once_and_counts_tmux_starts():
    from bench import tmux_drive

    (row,) = tmux_drive.run(quick=True)
    _check([row])
    helper, library = (int(n) for n in row.note.split(":")[1].replace("(helper) against", "").split()[:2])
    # has-session, new-session; per window list-windows, new-window, its marker (set-option, 3 of the 4 windows)
    # and one send-keys for all its lines: 2 + 4 + 3 + 4 + 4
    assert helper == 17
    assert library > helper

"""One tiny iteration of each benchmark in bench/, so the harness keeps working (no timing asserted)."""

from __future__ import annotations

import math

import pytest

from bench import clients, forwards, jobs, latency, many_users, owner_only, up_cold, up_jupyter, up_warm
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
                                latency.run, many_users.run, owner_only.run],
                         ids=["forward", "warm", "attach", "clients", "cold", "jupyter", "latency", "users", "owner"])
def test_benchmark_runs_once(bench, fn):
    _check(fn(bench))


def test_the_jobs_benchmark_runs_once(bench, portal_slurm):
    _check(jobs.run(bench, keep_slurm=True))


def test_the_tmux_benchmark_runs_once_and_counts_tmux_starts():
    from bench import tmux_drive

    (row,) = tmux_drive.run(quick=True)
    _check([row])
    helper, library = (int(n) for n in row.note.split(":")[1].replace("(helper) against", "").split()[:2])
    assert helper == 18  # has-session, new-session; per window: list-windows, new-window, set-option, send-keys...
    assert library > helper

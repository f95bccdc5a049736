"""(7) cold and warm `up --jupyter`: times and round trips to the host (counted in its sshd log); the cold one
against jupyter-forward 2022.9.10 starting JupyterLab for the same user on the same host, in the same rounds."""

from __future__ import annotations

import time
from pathlib import Path

from bench import jupyter_forward as jf
from bench.context import Bench, lab_answers
from bench.stats import Row, median, trips_summary
from bench.up_cold import TRIPS as COLD_TRIPS
from bench.up_warm import TRIPS as WARM_TRIPS
from portal_tasks.testing.flows import urls_in
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.trips import Trips
from portal_tasks.testing.waiting import retry_until

#: the issue: cold `up --jupyter` to a ready JupyterLab at most jupyter-forward's time in the same run
JF_TARGET = 1.0
#: issue 22: a warm `up --jupyter` at most 1.5x one fresh `ssh host true`
WARM_TARGET = 1.5


def cold_up(b: Bench, user: TestUser) -> tuple[float, float, Trips | None]:
    """Cold `up --jupyter`: seconds until it returns (the URL printed), seconds until JupyterLab answers on the
    laptop through the URL it printed, and the round trips of `up` itself."""
    seconds, trips, res = b.counted_up(user, "--jupyter")
    labs = [u for u in urls_in(res) if "/lab?token=" in u]
    if not labs:
        raise RuntimeError(f"cold `up --jupyter` printed no JupyterLab URL: {res.stdout[-800:]}")
    start = time.perf_counter()
    retry_until(lambda: lab_answers(labs[0]), 30, 0.02, what="JupyterLab to answer on the laptop")
    return seconds, seconds + time.perf_counter() - start, trips


def _baseline(b: Bench, user: TestUser) -> tuple[Path | None, str]:
    """jupyter-forward's program (installed when missing, except in quick runs), or None and why not."""
    reason = jf.unsupported(b, user)
    if reason:
        return None, reason
    try:
        return jf.program(build=not b.quick), ""
    except jf.NotRun as exc:
        return None, f"skipped in a quick run: {exc}" if b.quick else str(exc)


def run(b: Bench, cold_runs: int = 3, warm_runs: int = 5) -> list[Row]:
    cold_runs, warm_runs = (1, 1) if b.quick else (cold_runs, warm_runs)
    alice = b.user("alice")
    binary, why_not = _baseline(b, alice)
    returns, readies, cold_trips, warms, warm_trips, sshs = [], [], [], [], [], []
    starts: list[jf.Started] = []
    for _ in range(cold_runs):
        b.reset(alice)
        returned, ready, trips = cold_up(b, alice)
        returns.append(returned)
        readies.append(ready)
        cold_trips.append(trips)
        for _ in range(warm_runs):  # warm: everything of the cold run still runs
            sshs.append(b.ssh_true(alice))
            seconds, trips, _ = b.counted_up(alice, "--jupyter")
            warms.append(seconds)
            warm_trips.append(trips)
        if binary is not None:
            b.reset(alice)  # cold for jupyter-forward too
            try:
                starts.append(jf.cold(b, alice, binary))
            except jf.NotRun as exc:
                binary, why_not = None, f"did not start JupyterLab: {exc}"
    b.reset(alice)
    cold_most, cold_note = trips_summary(cold_trips)
    warm_most, warm_note = trips_summary(warm_trips)
    n = f"median of {cold_runs}"
    return [*_against_jf(starts, why_not, readies, returns, n, cold_note, cold_most),
            Row("7", f"warm `up --jupyter`, median of {len(warms)}", median(warms), "s",
                "one `ssh host true`, fresh connection", median(sshs), target=WARM_TARGET, note=warm_note,
                trips=warm_most, trips_target=WARM_TRIPS)]


def _against_jf(starts: list[jf.Started], why_not: str, readies: list[float], returns: list[float], n: str,
                cold_note: str, cold_most: int | None) -> list[Row]:
    """The cold rows: until JupyterLab answers (the issue's target), and until each shows its URL."""
    ready_what = f"cold `up --jupyter` until JupyterLab answers on the laptop (GET /lab?token= → 200), {n}"
    if not starts:
        return [Row("7", ready_what, median(readies), "s", f"jupyter-forward {jf.VERSION}: not measured ({why_not})",
                    note=cold_note, trips=cold_most, trips_target=COLD_TRIPS)]
    trips_note = _trips_note([s.trips for s in starts])
    ended = sum(s.lab_ended for s in starts)
    shown = [s.shown for s in starts if s.shown is not None]
    rows = [
        Row("7", ready_what, median(readies), "s",
            f"jupyter-forward {jf.VERSION}, cold (venv on the login PATH, no conda), until JupyterLab answers through "
            f"its forward, {n}{trips_note}; its JupyterLab ended with its ^C in {ended} of {len(starts)}",
            median([s.ready for s in starts]), target=JF_TARGET, note=cold_note, trips=cold_most,
            trips_target=COLD_TRIPS),
    ]
    if shown:
        rows.append(Row("7", f"cold `up --jupyter` until it returns with the URL, {n}", median(returns), "s",
                        f"jupyter-forward until it prints the URL (after its fixed 3 s wait), {n}", median(shown)))
    return rows


def _trips_note(counted: list[Trips | None]) -> str:
    most, note = trips_summary(counted)
    return f" ({note}, the whole run incl. its `tail -f`)" if most is not None else ""

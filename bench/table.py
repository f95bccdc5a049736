"""The results table (markdown) and the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform

from bench.stats import Row


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def machine() -> str:
    """One line: cores, memory, python, OS, date."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {mem:.0f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}, {when}")


def _trips(r: Row) -> str:
    if r.trips is None:
        return "–"
    if r.trips_target is None:
        return str(r.trips)
    return f"{r.trips} (≤ {r.trips_target}{'' if r.trips_met else ': **no**'})"


def render(rows: list[Row]) -> str:
    """A markdown table: measured, baseline, ratio, target, met."""
    lines = ["| # | measured | median | baseline (same run) | median | ratio | target | met | round trips: sessions over the master + helper calls (target) |",
             "|---|---|---:|---|---:|---:|---:|:-:|---:|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        if r.target is None:
            target = "–"
        else:
            sign = "≥" if r.higher_is_better else "≤"
            target = f"{sign} {r.target:g}×" if r.baseline is not None else f"{sign} {_num(r.target, r.unit)}"
        met = {True: "yes", False: "**no**", None: "–"}[r.met]
        what = r.what + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.bench} | {what} | {_num(r.value, r.unit)} | {r.baseline_what or '–'} | "
                     f"{_num(r.baseline, r.unit)} | {ratio} | {target} | {met} | {_trips(r)} |")
    return "\n".join(lines)


def document(rows: list[Row], seconds: float, argv: list[str], load: str = "") -> str:
    return "\n".join([
        "# portal benchmarks", "",
        f"Machine: {machine()}.", "",
        *([f"{load} (2 cores: above 2, processes waited for a core).", ""] if load else []),
        f"Command: `python -m bench{' ' + ' '.join(argv) if argv else ''}` "
        f"(netns test server; whole run {seconds:.0f} s). Every baseline was measured in the same run.", "",
        render(rows), "",
    ])


"""(5) N users running `up` at the same time: all succeed, no port collisions, every dashboard loads; against the
same clusters started by hand at once in the same run. Twenty, then a hundred where the machine's memory allows
(with a longer wait: on two cores the ratio is the measure); and the resident memory of the idle server once
everyone is up: portal's own share (tmux, the windows' shells, the kept ssh connection) against the users'
clusters and IPython."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.context import OWN_SESSION, Bench, ipython_ready, read_until
from bench.hostcpu import resident, sides
from bench.stats import Row, percentile
from bench.table import render
from bench.up_cold import cluster_spec
from portal_tasks.testing.assertions import user_ports
from portal_tasks.testing.flows import admin_set_up_for
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.sockets import Listener, parse_ss

URL = re.compile(r"dashboard-\S+: (http://localhost:\d+/status)")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _listeners(b: Bench) -> list[Listener]:
    assert b.server.admin_run is not None
    return parse_ss(b.server.admin_run(["ss", "-Htlnpe"], timeout=30).stdout)


MiB = 2**20
CHECKS = 8  # dashboards loaded and `portal ports` asked this many at a time, once everyone is up
#: memory a user's round needs over what their host side holds once idle: the laptops' side and start peaks
#: (1.5), and room for the other work of a shared machine (a run at 1.5, 71 users, left 4 GiB of 24)
MARGIN = 2.5


#: What each user types by hand, as in (13): in their login shell over an ssh with a terminal, `dask scheduler` and
#: `dask worker` left running (as portal's are: everybody keeps their cluster, so it ticks while the others start),
#: then an interactive `ipython` whose `Client()` waits for the workers and prints how many it sees, and which
#: stays at its prompt (as portal's IPython does in its window).
KEPT = r"""
. {env}/bin/activate
D=$(mktemp -d)
dask scheduler --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0 --scheduler-file $D/s.json \
    >$D/s.log 2>&1 </dev/null &
dask worker --scheduler-file $D/s.json --host 127.0.0.1 --nworkers {workers} --nthreads {threads} \
    --memory-limit {memory} --no-dashboard >$D/w.log 2>&1 </dev/null &
SFILE=$D/s.json exec ipython --no-banner -i -c {code}
"""

CLIENT = """import os, time
from dask.distributed import Client
deadline = time.monotonic() + {wait}
while not os.path.exists(os.environ["SFILE"]) and time.monotonic() < deadline:
    time.sleep(0.02)
client = Client(scheduler_file=os.environ["SFILE"], timeout={wait})
client.wait_for_workers({workers}, timeout={wait})
while len(client.scheduler_info()["workers"]) < {workers} and time.monotonic() < deadline:
    time.sleep(0.1)  # a worker that joined and left (its nanny starts it again): waited for, as a person would
print("workers", len(client.scheduler_info()["workers"]), flush=True)
"""


def by_hand_kept(b: Bench, user: TestUser, spec: tuple[int, int, int], wait: float,
                 kept: list[subprocess.Popen[bytes]]) -> float:
    """Seconds from the ssh start until the user's IPython sees the by-hand cluster's workers; the cluster and
    IPython at its prompt keep running, their ssh in ``kept`` (b.reset ends them)."""
    workers, threads, memory = spec
    code = shlex.quote(CLIENT.format(wait=int(wait), workers=workers))
    script = KEPT.format(env=b.env, workers=workers, threads=threads, memory=memory, code=code)
    argv = user.ssh_argv(b.host, shlex.join(["bash", "-l", "-c", script]),
                         options=["-tt", "-o", "ControlMaster=no", "-o", "ControlPath=none"])
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=OWN_SESSION)
    kept.append(proc)
    read_until(proc, f"workers {workers}".encode(), wait + 60, f"{user.name}'s cluster by hand failed")
    return time.perf_counter() - start


def baseline(b: Bench, users: list[TestUser], spec: tuple[int, int, int], wait: float = 120) -> list[float]:
    """Seconds until each user's IPython sees their by-hand cluster's workers, all users at once (the clusters
    and IPython run on until every user is measured, then end)."""
    kept: list[subprocess.Popen[bytes]] = []
    try:
        with ThreadPoolExecutor(len(users)) as pool:
            return list(pool.map(lambda u: by_hand_kept(b, u, spec, wait, kept), users))  # raises when any failed
    finally:
        for proc in kept:
            proc.kill()
            proc.wait()
        for user in users:
            b.reset(user)


def available() -> int:
    """Bytes of memory the machine can still give (MemAvailable)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


#: twenty users at once, then a hundred (as many as the server has, and as the machine's memory holds)
ROUNDS = (20, 100)


def run(b: Bench, workers: int = 1, rounds: tuple[int, ...] = ROUNDS, admin: bool = True) -> list[Row]:
    """A round of `up` at once for each count in rounds (as many users as the server has, at most), the next
    only as many as the memory the last round took per user (×MARGIN) lets the machine hold. With `admin`, the
    server is set up for each round's users first (README, "For admins": their fair share)."""
    users = b.extra_users()
    counts = sorted({min(n, len(users)) for n in rounds})
    try:
        return _rounds(b, users, counts, workers, admin)
    finally:
        if admin:  # the benchmarks after this one find the server as main set it up
            admin_set_up_for(b.server, counts[0])


def _rounds(b: Bench, users: list[TestUser], counts: list[int], workers: int, admin: bool) -> list[Row]:
    rows: list[Row] = []
    per_user, last = 0.0, 0
    for n in counts:
        fits = int(available() / (per_user * MARGIN)) if per_user else n
        if fits < n:  # the hosts' clusters and the laptops' `portal` and ssh beside them: one machine here
            instead = f"{fits} users at once instead" if fits > last + 10 else "not run"
            b.notes.append(f"users: {n} users at once do not fit this machine: about "
                           f"{per_user * MARGIN * n / 2**30:.1f} GiB needed ({per_user / MiB:.0f} MiB a user in the "
                           f"round of {last}, ×{MARGIN} for the laptops' side), {available() / 2**30:.1f} GiB "
                           f"available; {instead}.")
            if fits <= last + 10:
                continue
            n = fits
        if admin:
            admin_set_up_for(b.server, n)
        got, per_user = one_round(b, users[:n], workers, wait=max(120, 8 * n))
        print(render(got), b.notes[-1], sep="\n", file=sys.stderr, flush=True)  # kept should a later round fail
        rows += got
        last = n
    return rows


def one_round(b: Bench, users: list[TestUser], workers: int, wait: float) -> tuple[list[Row], float]:
    """The rows of len(users) users at once, and the resident memory a user's work took (bytes)."""
    for user in users:
        b.reset(user)

    failures: list[str] = []

    def up(user: TestUser) -> tuple[TestUser, float, str, float | None] | None:
        start = time.perf_counter()
        try:
            seconds, res = b.up(user, "--workers", str(workers), timeout=wait + 300)
        except RuntimeError as exc:
            failures.append(str(exc).splitlines()[-1][:300])
            return None
        return user, seconds, res.stdout, ipython_ready(b, user, res.stderr, start, wait)

    with ThreadPoolExecutor(len(users)) as pool:
        results = [r for r in pool.map(up, users) if r is not None]
    if not results:
        raise RuntimeError(f"no `up` of {len(users)} at once succeeded: {failures[:3]}")
    times = [s for _, s, _, _ in results]
    prompts = [r for _, _, _, r in results if r is not None]
    kinds = resident({u.uid for u in users}, {u.name for u in users})  # all up, idle
    spec = cluster_spec(b, users[0])
    dashboards = [m.group(1) for _, _, out, _ in results for m in [URL.search(out)] if m]
    with ThreadPoolExecutor(CHECKS) as pool:  # one after the other, a hundred loaded clusters take half an hour
        loaded = sum(1 for status in pool.map(_status, dashboards) if status == 200)
        ports = pool.map(lambda u: user_ports(b.portal(u, "ports", "--host", b.host, "--json", timeout=wait)), users)
        blocks: dict[int, dict[str, Any]] = {u.uid: got["block"] for u, got in zip(users, ports)}
    uids = set(blocks)
    mine = [s for s in _listeners(b) if s.uid in uids]
    # a collision: a user listening inside another user's block, or two users sharing a port
    foreign = [s for s in mine for uid, blk in blocks.items() if uid != s.uid and blk["start"] <= s.port <= blk["end"]]
    shared = len(mine) - len({(s.addr, s.port) for s in mine})
    overlapping = sum(1 for a in blocks for c in blocks if a < c and
                      blocks[a]["start"] <= blocks[c]["end"] and blocks[c]["start"] <= blocks[a]["end"])
    collisions = len(foreign) + shared + overlapping
    n = len(users)
    seed = n * (1 + 1 + 1)  # per user one env, one client (IPython), one LocalCluster for it
    for user in users:
        b.reset(user)
    hands = baseline(b, users, spec, wait)
    label = f"{n} users, `up --workers {workers}` at once"
    hand_what = (f"the same {n} clusters ({spec[0]} worker{'s' * (spec[0] != 1)} × {spec[1]} threads) and an "
                 "`ipython` whose `Client()` waits for them, typed by hand at once as in (13), one ssh each, the "
                 "clusters kept running")
    rows = [
        Row("5", f"{label}: p50 of `up` time", percentile(times, 50), "s", f"{hand_what}: p50",
            percentile(hands, 50)),
        Row("5", f"{label}: p95 of `up` time", percentile(times, 95), "s", f"{hand_what}: p95",
            percentile(hands, 95), target=1.2 if n <= 20 else None),
        Row("5", f"{label}: p95 until each user's IPython shows its prompt with `client` connected "
            f"({len(prompts)} of {len(results)} did)", percentile(prompts, 95), "s",
            f"{hand_what}: p95", percentile(hands, 95)),
        Row("5", f"{label}: succeeded / dashboards loading (HTTP 200)", float(min(len(results), loaded)), "of "
            + str(n), note=f"{len(results)} succeeded, {loaded} of {len(dashboards)} dashboards loaded"
            + (f"; failed: {failures[0]}" if failures else ""),
            target=float(n), higher_is_better=True),
        Row("5", f"{label}: port collisions", float(collisions), "", target=0.0),
        Row("5", f"{label}: listening ports of all of them", float(len(mine)), "ports",
            "seed scheme n_envs + n_clients + n_clusters (1 + 1 + 1 per user)", float(seed)),
        *memory_rows(label, kinds, n),
    ]
    b.notes.append(memory_table(label, kinds, n))
    return rows, sum(size for _, size in kinds.values()) / n


def memory_rows(label: str, kinds: dict[str, tuple[int, int]], n: int) -> list[Row]:
    side = sides(kinds)
    what = f"{label}: resident memory (PSS) of the idle server once all are up"
    return [
        Row("5", f"{what}: portal's own share (tmux servers, the windows' shells, the kept ssh connection's "
            f"sshd, helpers), per user", side["portal"] / n / MiB, "MiB",
            "the users' clusters (scheduler, nanny, worker) and IPython, per user",
            (side["cluster"] + side["session"]) / n / MiB),
        Row("5", f"{what}: all {n} users", sum(side.values()) / MiB, "MiB",
            note=f"clusters {side['cluster'] / MiB:.0f} MiB, IPython {side['session'] / MiB:.0f} MiB, "
                 f"portal's own {side['portal'] / MiB:.0f} MiB"),
    ]


def memory_table(label: str, kinds: dict[str, tuple[int, int]], n: int) -> str:
    """Markdown: per process kind, how many and their PSS, in all and per user."""
    lines = [f"#### {label}: resident memory of the idle server, per process kind", "",
             "| process (what it runs) | processes | PSS, all users | PSS per user |", "|---|---:|---:|---:|"]
    for kind, (count, size) in kinds.items():
        lines.append(f"| {kind} | {count} | {size / MiB:.1f} MiB | {size / n / MiB:.1f} MiB |")
    total = sum(size for _, size in kinds.values())
    lines += [(f"| **total** | {sum(c for c, _ in kinds.values())} | **{total / MiB:.0f} MiB** | "
               f"**{total / n / MiB:.1f} MiB** |"), ""]
    return "\n".join(lines)

"""(13) The host CPU of a cold `up`, per process, against the same work typed by hand over one fresh ssh; and
of a cold `up --jupyter` against the same plus `jupyter lab` by hand. Wall times of both beside.

Counted on both sides: every process the work starts on the host, from the ssh connection's sshd on, until
ready and settled (bench/hostcpu.py: the CPU use of those processes is flat again). By hand means what a
person types over one ssh, in their login shell: `dask scheduler` and `dask worker --nworkers 2` in the background, then an
`ipython` (in the ssh's terminal, as portal's runs in tmux's) whose `Client()` waits for both workers; plain
TCP (portal's cluster uses TLS: portal does more and should cost no more).
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time

from bench import up_jupyter
from bench.context import OWN_SESSION, Bench, ipython_ready, read_until
from bench.hostcpu import HostProcs, Usage, listener_pid
from bench.stats import Row, median
from bench.up_cold import cluster_spec
from portal_tasks.testing.server import TestUser

#: issue 22: cold `up` at most 1.1x the CPU of the by-hand commands, and no slower than them
CPU_TARGET, WALL_TARGET = 1.1, 1.0
LAB_PORT = 28888  # by hand, JupyterLab on a TCP port of the host's loopback (alice's block is elsewhere)

SCRIPT = r"""
. {env}/bin/activate
D=$(mktemp -d)
export SFILE=$D/s.json
dask scheduler --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0 --scheduler-file $D/s.json >$D/s.log 2>&1 &
dask worker --scheduler-file $D/s.json --host 127.0.0.1 --nworkers {workers} --nthreads {threads} \
    --memory-limit {memory} --no-dashboard >$D/w.log 2>&1 &
{lab}exec ipython --no-banner -i -c {code}
"""

LAB = ("jupyter lab --no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token} "
       ">$D/j.log 2>&1 &\n")

CODE = """import os, time
from dask.distributed import Client
while not os.path.exists(os.environ["SFILE"]):
    time.sleep(0.02)
client = Client(scheduler_file=os.environ["SFILE"], timeout=60)
client.wait_for_workers({workers}, timeout=120)
"""

LAB_WAIT = """import urllib.request
for _ in range(2400):
    try:
        if urllib.request.urlopen("http://127.0.0.1:{port}/lab?token={token}", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(0.05)
"""


def by_hand_script(env: str, workers: int, threads: int, memory: int, lab: bool) -> str:
    """The bash a person types over one ssh (the IPython line ends with its client seeing every worker)."""
    token = secrets.token_hex(16)
    code = CODE.format(workers=workers) + (LAB_WAIT.format(port=LAB_PORT, token=token) if lab else "")
    code += 'print("READY", len(client.scheduler_info()["workers"]), flush=True)\n'
    return SCRIPT.format(env=env, workers=workers, threads=threads, memory=memory, code=shlex.quote(code),
                         lab=LAB.format(port=LAB_PORT, token=token) if lab else "")


def by_hand(b: Bench, user: TestUser, spec: tuple[int, int, int], lab: bool, listener: int) -> tuple[float, Usage]:
    """Seconds from the ssh start until IPython's client sees every worker (and JupyterLab answers, with lab),
    and what it cost the host until settled; then everything of it ends."""
    script = by_hand_script(b.env, *spec, lab=lab)
    # a login shell: a person logs in (its profile runs once) and types; portal's windows each run one too
    argv = user.ssh_argv(b.host, shlex.join(["bash", "-l", "-c", script]),
                         options=["-tt", "-o", "ControlMaster=no", "-o", "ControlPath=none"])
    with HostProcs(user.uid, user.name, listener) as host:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=OWN_SESSION)
        try:
            read_until(proc, b"READY", 240, "by hand: IPython did not see the workers")
            seconds = time.perf_counter() - start
            usage = host.settled()
        finally:
            proc.kill()
            proc.wait()
    b.reset(user)
    return seconds, usage


def with_portal(b: Bench, user: TestUser, lab: bool, listener: int) -> tuple[float, Usage, float | None]:
    """Seconds of a cold `up` (with lab: until JupyterLab answers on the laptop), its cost on the host, and
    (without lab) the seconds until its IPython shows its prompt with ``client`` connected."""
    b.reset(user)
    prompt = None
    with HostProcs(user.uid, user.name, listener) as host:
        if lab:
            _, seconds, _ = up_jupyter.cold_up(b, user)
        else:
            start = time.perf_counter()
            seconds, res = b.up(user)
            prompt = ipython_ready(b, user, res.stderr, start, 60, every=0.05)
        usage = host.settled()
    return seconds, usage, prompt


def _middle(usages: list[Usage]) -> Usage:
    """The run of median CPU (its breakdown goes into the table)."""
    ordered = sorted(usages, key=lambda u: u.total)
    return ordered[len(ordered) // 2]


def breakdown(title: str, mine: Usage, hand: Usage) -> str:
    """Markdown: per process kind, how many processes (of them Python interpreters) and their CPU seconds."""
    a, h = mine.by_kind(), hand.by_kind()
    kinds = sorted(set(a) | set(h), key=lambda k: -max(a.get(k, (0, 0, 0.0))[2], h.get(k, (0, 0, 0.0))[2]))
    lines = [f"#### {title}", "",
             ("| process (what it runs) | portal: processes (Python) | portal: CPU s | by hand: processes (Python) "
              "| by hand: CPU s |"), "|---|---:|---:|---:|---:|"]

    def cells(row: tuple[int, int, float] | None) -> str:
        return "– | –" if row is None else f"{row[0]} ({row[1]}) | {row[2]:.3f}"

    for k in kinds:
        lines.append(f"| {k} | {cells(a.get(k))} | {cells(h.get(k))} |")
    lines.append(f"| **total** | {len(mine.procs)} ({mine.pythons}) | **{mine.total:.2f}** | "
                 f"{len(hand.procs)} ({hand.pythons}) | **{hand.total:.2f}** |")
    lines += ["", f"Settled {mine.settle:.1f} s (portal) and {hand.settle:.1f} s (by hand) after ready; idle then "
              f"{mine.idle * 1000:.0f} and {hand.idle * 1000:.0f} CPU-ms per second."
              + (f" Exit records the kernel dropped: {mine.lost} + {hand.lost} (their CPU is missing)."
                 if mine.lost or hand.lost else ""), ""]
    return "\n".join(lines)


def _rows(label: str, hand_what: str, runs: list[tuple[float, Usage, float | None]],
          hands: list[tuple[float, Usage]], n: int) -> list[Row]:
    prompts = [p for _, _, p in runs if p is not None]
    return [
        Row("13", f"{label}: host CPU until ready and settled, every process incl. sshd and the helper "
            f"(median of {n})", median([u.total for _, u, _ in runs]), "CPU-s", hand_what,
            median([u.total for _, u in hands]), target=CPU_TARGET),
        Row("13", f"{label}: wall time until ready (median of {n})", median([s for s, _, _ in runs]), "s",
            f"{hand_what}: until ready", median([s for s, _ in hands]), target=WALL_TARGET),
        *([Row("13", f"{label}: wall time until its IPython shows its prompt with `client` connected (median of "
               f"{len(prompts)})", median(prompts), "s", f"{hand_what}: until ready", median([s for s, _ in hands]))]
          if prompts else []),
        Row("13", f"{label}: Python interpreters started on the host", median([u.pythons for _, u, _ in runs]), "",
            "by hand", median([u.pythons for _, u in hands])),
        Row("13", f"{label}: what it keeps costing once settled, all of it idle (CPU-ms per second; median of {n})",
            median([u.idle * 1000 for _, u, _ in runs]), "ms/s", f"{hand_what}, idle (Dask's default ticks)",
            median([u.idle * 1000 for _, u in hands])),
    ]


def run(b: Bench, runs: int = 3) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    listener = listener_pid(b.server.run_id)
    b.reset(alice)
    spec = (2, 2, 2**30)
    rows: list[Row] = []
    for lab in (False, True):
        mine, hands = [], []
        for _ in range(runs):  # side by side, so both see the same machine
            mine.append(with_portal(b, alice, lab, listener))
            spec = cluster_spec(b, alice)
            b.reset(alice)
            hands.append(by_hand(b, alice, spec, lab, listener))
        what = (f"`dask scheduler` + `dask worker --nworkers {spec[0]}` + `ipython` whose `Client()` waits for them"
                + (" + `jupyter lab` (until /lab answers)" if lab else "") + ", by hand over one fresh ssh")
        label = "cold `up --jupyter` (until JupyterLab answers on the laptop)" if lab else "cold `up`"
        rows += _rows(label, what, mine, hands, runs)
        b.notes.append(breakdown(f"{label}: where the host's CPU goes (the run of median CPU)",
                                 _middle([u for _, u, _ in mine]), _middle([u for _, u in hands])))
    b.reset(alice)
    return rows

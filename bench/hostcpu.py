"""The CPU one user's work costs the test host, per process: every process it starts (ended or alive), the
per-connection sshd included, read from /proc while alive and from the kernel's exit records (exits.py).

The test host shares this machine's pid namespace: its processes are ours to read. What belongs to the user:
every process of their uid, and the root (and pre-auth) sshd processes of their connections (children of the
host's sshd listener). The laptop side (``portal`` itself, the ssh client and master) runs as root here and is
not counted: the host's CPU is what a shared server runs out of.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.exits import Ended, Exits

TICK = os.sysconf("SC_CLK_TCK")
PYTHON = re.compile(r"(^|/)(python[0-9.]*|ipython[0-9]*|dask(-\w+)?|jupyter(-\w+)?)$")


@dataclass
class Proc:
    """One process of the user's work on the host: what it ran and the CPU it cost (seconds)."""

    pid: int
    ppid: int
    uid: int
    comm: str
    args: str = ""
    exe: str = ""
    cpu: float = 0.0
    alive: bool = True
    before: float = 0.0  # its CPU when the measurement started (it was already running)
    user: int = -2  # the uid whose work is measured
    first: bool = False  # running when the measurement started

    @property
    def cost(self) -> float:
        return max(0.0, self.cpu - self.before)

    @property
    def python(self) -> bool:
        """An interpreter start: the process runs Python (by its exe, else its name or first word)."""
        word = self.args.split(" ", 1)[0] if self.args else ""
        return bool(PYTHON.search(self.exe) or PYTHON.search(self.comm) or (word and PYTHON.search(word)))

    @property
    def kind(self) -> str:
        return kind_of(self.comm, self.args, self.uid, self.user)


#: (kind, pattern on "comm\0args"), the first that matches names a process
KINDS: list[tuple[str, re.Pattern[str]]] = [(k, re.compile(p)) for k, p in [
    ("portal env probe (python -c)", r"importlib\.util\.find_spec"),
    ("portal helper", r"remote-\w+\.pyz|portal_tasks\.remote|/\.portal/bin/"),
    ("tmux server", r"^tmux: server"),
    ("tmux (utempter, records the window's terminal)", r"^utempter\0"),
    ("tmux client/command", r"^tmux"),
    ("dask spec: scheduler and nannies", r"dask[- ]spec|distributed\.cli\.dask_spec"),
    ("dask scheduler", r"dask[- ]scheduler|distributed\.cli\.dask_scheduler"),
    ("dask worker (spawned)", r"multiprocessing[.]spawn|--multiprocessing-fork"),
    ("multiprocessing resource tracker", r"resource_tracker"),
    ("forkserver and the dask workers it forks", r"multiprocessing[.]forkserver"),
    ("dask worker/nanny (main)", r"dask[- ]worker|distributed\.cli\.dask_worker|\bnanny\b"),
    ("IPython", r"ipython|IPython"),
    ("JupyterLab", r"jupyter[- ]lab|jupyterlab|jupyter-server|jupyter_server"),
    ("python (other)", r"^python|\0\S*python"),
    ("shell", r"^(sh|bash|dash|zsh|fish|tcsh|csh)\0"),
    ("login shell's profile: Lmod (lua addto)", r"^(addto|lua[0-9.]*)\0"),
    ("login shell's profile: coreutils (uname, dircolors, sed, id, ...)",
     r"^(uname|dircolors|sed|cat|expr|readlink|basename|id|mkdir|rm|mktemp|tty|tput|grep|dirname|hostname)\0"),
    ("node (JupyterLab's build check: yarn, npm)", r"^(node|npm.*)\0"),
]]


def kind_of(comm: str, args: str, uid: int = -1, user: int = -2) -> str:
    if comm.startswith("sshd"):
        return {0: "sshd: connection (root monitor)", user: "sshd: user session"}.get(uid, "sshd: pre-auth")
    text = f"{comm}\0{args}"
    for kind, pattern in KINDS:
        if pattern.search(text):
            return kind
    return f"other ({comm})"


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, CPU seconds) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cpu(pid: int) -> float | None:
    """CPU seconds of a live process: its threads' exact run time (/proc/PID/task/*/schedstat) or, when more
    (threads that ended count there only), the clock ticks of /proc/PID/stat."""
    st = _stat(pid)
    if st is None:
        return None
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return st[2]
    return max(st[2], total / 1e9)


def _args(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


@dataclass
class Usage:
    """What the user's work cost the host, per process, at one moment."""

    procs: list[Proc]
    lost: int = 0  # exit records the kernel dropped (a busy machine): their CPU is missing
    settle: float = 0.0  # seconds waited after ready until the CPU use was flat
    idle: float = 0.0  # CPU-seconds per second once flat (what keeping it all running costs)

    @property
    def total(self) -> float:
        return sum(p.cost for p in self.procs)

    @property
    def pythons(self) -> int:
        return sum(1 for p in self.procs if self.started(p))

    def started(self, p: Proc) -> bool:
        """An interpreter start: a Python process not forked by a forkserver of the work (that one imported once)."""
        forks = {q.pid for q in self.procs if q.kind == FORKSERVER}
        return p.python and not (p.kind == FORKSERVER and p.ppid in forks)

    def by_kind(self) -> dict[str, tuple[int, int, float]]:
        """kind -> (processes, of them interpreter starts, CPU seconds), costliest first."""
        out: dict[str, list[float]] = {}
        for p in self.procs:
            row = out.setdefault(p.kind, [0, 0, 0.0])
            row[0] += 1
            row[1] += self.started(p)
            row[2] += p.cost
        return {k: (int(v[0]), int(v[1]), v[2]) for k, v in sorted(out.items(), key=lambda kv: -kv[1][2])}


@dataclass
class HostProcs:
    """``with HostProcs(uid, name, listener) as h: ...; usage = h.settled()``: the user's processes on the host and
    their CPU from the moment the block starts; `listener` is the pid of the host's sshd listener."""

    uid: int
    name: str
    listener: int
    interval: float = 0.02
    seen: dict[int, Proc] = field(default_factory=dict)
    _checked: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._exits = Exits()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _belongs(self, uid: int | None, ppid: int) -> bool:
        return uid == self.uid or ppid == self.listener or (ppid in self.seen and self.seen[ppid].uid == 0)

    def _poll(self, first: bool = False) -> None:
        """Find the user's new processes (and keep the latest command line of the known ones: an exec)."""
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        with self._lock:
            for pid in pids:
                known = self.seen.get(pid)
                if known is not None:
                    if known.alive:
                        known.args = _args(pid) or known.args
                    continue
                if pid in self._checked or pid == self.listener:
                    continue
                self._checked.add(pid)
                st = _stat(pid)
                if st is None:
                    continue
                uid = _uid(pid)
                if not self._belongs(uid, st[1]):
                    continue
                p = Proc(pid, st[1], uid if uid is not None else -1, st[0], _args(pid), _exe(pid), st[2],
                         user=self.uid, first=first)
                if first:
                    p.before = _cpu(pid) or p.cpu
                self.seen[pid] = p

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def __enter__(self) -> HostProcs:  # noqa: PYI034 - a final class
        self._exits.__enter__()
        self._poll(first=True)
        self._thread = threading.Thread(target=self._run, name="host-procs", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._exits.__exit__()

    def usage(self) -> Usage:
        """Every process so far, the ended ones with the exact CPU the kernel reported at their end."""
        self._poll()
        ended = self._exits.snapshot()
        with self._lock:
            procs = {pid: Proc(**vars(p)) for pid, p in self.seen.items()}
        mine = {e.pid: e for e in _ended_of(ended, self.uid, self.listener, procs)}
        for p in procs.values():
            if p.pid not in mine:
                cpu, st = _cpu(p.pid), _stat(p.pid)
                if cpu is not None and st is not None:
                    p.cpu, p.comm, p.exe = cpu, st[0], _exe(p.pid) or p.exe
        for e in mine.values():
            if e.pid not in procs:
                procs[e.pid] = Proc(e.pid, e.ppid, e.uid, e.comm, user=self.uid)
            p = procs[e.pid]
            if p.comm != e.comm and not e.comm.startswith(p.comm[:15]):
                p.comm, p.args, p.exe = e.comm, "", ""  # it ran another program (exec) after it was seen
            p.alive, p.cpu = False, e.cpu_ns / 1e9
        for p in procs.values():  # ended before it was seen: the python right under the ssh session is the helper
            parent = procs.get(p.ppid)
            if not p.args and PYTHON.search(p.comm) and parent is not None and parent.comm.startswith("sshd"):
                p.args = "(the python right under the ssh session: portal_tasks.remote, the helper)"
        kept = [p for p in procs.values() if not _someone_elses(p, self.name) and not (p.first and p.cost <= 0)]
        return Usage(sorted(kept, key=lambda p: p.pid), lost=self._exits.lost)

    def settled(self, window: float = 1.0, most: float = 10.0) -> Usage:
        """The usage once the CPU use of the user's processes is flat (idle Dask still ticks): the last
        `window` seconds cost no more than the `window` before them (+20 %, +10 ms), at most `most` s from now;
        ``idle`` is the rate of the last window (CPU-seconds per second)."""
        start = time.monotonic()
        samples = [(start, self.usage().total)]
        rate = 0.0
        while time.monotonic() - start < most:
            time.sleep(0.25)
            now, total = time.monotonic(), self.usage().total
            samples.append((now, total))
            last = [s for s in samples if now - s[0] >= window]
            if not last:
                continue
            mid = last[-1]
            rate = (total - mid[1]) / (now - mid[0])
            before = [s for s in samples if mid[0] - s[0] >= window]
            if before:
                earlier = (mid[1] - before[-1][1]) / (mid[0] - before[-1][0])
                if rate <= earlier * 1.2 + 0.01:
                    break
        got = self.usage()
        got.settle, got.idle = time.monotonic() - start, rate
        return got


def _someone_elses(p: Proc, name: str) -> bool:
    """An sshd process of another user's connection (its title names them: "sshd: bob [priv]", "sshd: bob@notty")."""
    m = re.match(r"sshd: ([^\s@\[]+)", p.args)
    return p.comm.startswith("sshd") and m is not None and m.group(1) not in (name, "unknown")


def listener_pid(run_id: str, label: str = "matagorda") -> int:
    """The pid of the sshd listening on the netns test host `label` (the others are its connections')."""
    from portal_tasks.testing.netns import sshd_pids

    pids = sshd_pids(run_id, label)
    parents = {pid: (_stat(pid) or ("", 0, 0.0))[1] for pid in pids}
    found = [pid for pid, ppid in parents.items() if ppid not in parents]
    if len(found) != 1:
        raise RuntimeError(f"no single sshd listener on {label} (sshd processes: {parents})")
    return found[0]


def _ended_of(ended: Iterable[Ended], uid: int, listener: int, seen: dict[int, Proc]) -> list[Ended]:
    """The exit records of the user's processes: their uid, or sshd processes under the host's listener (the
    root monitor of a connection, its pre-auth child), or a process seen alive as theirs."""
    records = list(ended)
    roots = {pid for pid, p in seen.items() if p.uid == 0}
    changed = True
    while changed:  # a pre-auth child's parent is a monitor that may itself be known only from its record
        changed = False
        for e in records:
            if e.pid not in roots and (e.ppid == listener or e.ppid in roots) and e.uid != uid:
                roots.add(e.pid)
                changed = True
    return [e for e in records if e.uid == uid or e.pid in roots or e.pid in seen]


#: the kinds that make up a user's cluster (everything else of theirs on the host: portal's, or their IPython)
FORKSERVER = "forkserver and the dask workers it forks"
CLUSTER_KINDS = ("dask spec: scheduler and nannies", "dask scheduler", "dask worker/nanny (main)", "dask worker (spawned)", FORKSERVER,
                 "multiprocessing resource tracker")
SESSION_KINDS = ("IPython", "JupyterLab")


def pss(pid: int) -> int:
    """Proportional resident memory of a process in bytes (shared pages split among their users), 0 when gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def resident(uids: set[int], names: set[str]) -> dict[str, tuple[int, int]]:
    """kind -> (processes, PSS bytes) of everything the users run on the host now, their connections' root
    sshd processes included (by their title: "sshd: NAME [priv]")."""
    out: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        uid, st = _uid(pid), _stat(pid)
        if uid is None or st is None:
            continue
        args = _args(pid)
        if uid not in uids:
            m = re.match(r"sshd: ([^\s@\[]+)", args) if st[0].startswith("sshd") else None
            if m is None or m.group(1) not in names:
                continue
        row = out.setdefault(kind_of(st[0], args, uid, uid if uid in uids else -2), [0, 0])
        row[0] += 1
        row[1] += pss(pid)
    return {k: (v[0], v[1]) for k, v in sorted(out.items(), key=lambda kv: -kv[1][1])}


def sides(kinds: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Bytes of the users' clusters, their IPython/JupyterLab sessions, and the rest (portal's own: tmux, the
    windows' shells, the kept ssh connection's sshd, helpers)."""
    out = {"cluster": 0, "session": 0, "portal": 0}
    for kind, (_, size) in kinds.items():
        out["cluster" if kind in CLUSTER_KINDS else "session" if kind in SESSION_KINDS else "portal"] += size
    return out

"""Host-side fair share of one server: every portal cluster's memory and cores, registered host-wide.

A registration is one file per cluster, ``share-ID`` in the claims directory (sticky, trusted as
``ports.open_claims`` says), written whole by its user. Whose budget it is comes from the file's
owner, never from its name or content, so a co-user can register only on their own name, and
each user's count is clamped to the per-user cap. A registration counts while the scheduler it
names runs on this machine (pid, start time and owner checked), or, before it names one, for
PENDING_SECONDS after it was written. No lock is shared with co-users: a start writes its
registration, then checks again against what the others registered (of two starts at once, at
least one sees the other), and takes it back when it no longer fits.

The arithmetic (caps, what is free, the fair default, the refusal line) is pure and comes first.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import pwd
import random
import stat
import time
from typing import TYPE_CHECKING, Any, Iterable

from . import ports
from .common import Failure, cmdline, pid_uid, state_path
from .amounts import format_bytes, parse_amount
from .hostconfig import HOST_CONFIG

if TYPE_CHECKING:
    from typing import Literal, TypedDict

    class Caps(TypedDict):
        """A server's caps (:func:`caps`): memory in bytes, cores (None: no cap), and what they come from."""

        memory_total: int
        memory_per_user: int
        cores_total: int | None
        cores_per_user: int | None
        fair_users: int
        host_memory: int
        host_cores: int

    class Holding(TypedDict):
        """One share that counts now (:func:`holdings`): a registration, or a co-user's running workers."""

        uid: int
        user: str
        id: Any
        memory: int
        cores: int

    class Row(TypedDict):
        """One user's shares together (:func:`per_user`), clamped to the per-user caps."""

        uid: int
        user: str
        memory: int
        cores: int
        clusters: int

#: All portal clusters of a server together may use this share of its memory unless the admin says otherwise.
DEFAULT_TOTAL = 0.9
#: A default budget is an equal share of the total cap for at least this many users.
DEFAULT_FAIR_USERS = 4
#: The smallest budget per worker a default is allowed to shrink to.
MIN_WORKER_BYTES = 256 * 1024**2
#: How long a registration not yet bound to a running scheduler counts (a cluster starting).
PENDING_SECONDS = 180
PREFIX = "share-"
ATTEMPTS = 4


# -- arithmetic (pure) ----------------------------------------------------------------------------

def _admin_size(admin: dict[str, str], name: str, host_memory: int) -> int | None:
    text = admin.get(name)
    if text is None:
        return None
    parsed = parse_amount(text)
    if parsed is None or parsed[1] <= 0 or (parsed[0] == "share" and parsed[1] > 1):
        raise Failure(f"{HOST_CONFIG}: {name} {text!r} is neither a size (64GiB) nor a share of the host (75%).",
                      "ConfigError", hint="Ask the server's admins to correct it.")
    return int(parsed[1] * host_memory) if parsed[0] == "share" else int(parsed[1])


def _admin_count(admin: dict[str, str], name: str) -> int | None:
    text = admin.get(name)
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise Failure(f"{HOST_CONFIG}: {name} {text!r} is not a whole number of at least 1.", "ConfigError",
                      hint="Ask the server's admins to correct it.")
    return int(text)


def caps(admin: dict[str, str], host_memory: int, host_cores: int) -> Caps:
    """The server's caps from the admin's settings: memory in bytes, cores (None: no cap), fair_users."""
    total = _admin_size(admin, "memory_total", host_memory) or int(host_memory * DEFAULT_TOTAL)
    per_user = _admin_size(admin, "memory_per_user", host_memory)
    cores_total = _admin_count(admin, "cores_total")
    cores_per_user = _admin_count(admin, "cores_per_user")
    return {
        "memory_total": total, "memory_per_user": min(per_user or total, total),
        "cores_total": cores_total, "cores_per_user": min(cores_per_user, cores_total or cores_per_user) if cores_per_user else None,
        "fair_users": _admin_count(admin, "fair_users") or DEFAULT_FAIR_USERS,
        "host_memory": host_memory, "host_cores": host_cores,
    }


def per_user(holdings: list[Holding], limits: Caps) -> list[Row]:
    """One row per user holding a share: memory and cores counted (clamped to the per-user caps), clusters."""
    rows: dict[int, Row] = {}
    for h in holdings:
        row = rows.setdefault(h["uid"], {"uid": h["uid"], "user": h["user"], "memory": 0, "cores": 0, "clusters": 0})
        row["memory"] += int(h["memory"])
        row["cores"] += int(h.get("cores") or 0)
        row["clusters"] += 1
    for row in rows.values():
        row["memory"] = min(row["memory"], limits["memory_per_user"])
        if limits["cores_per_user"]:
            row["cores"] = min(row["cores"], limits["cores_per_user"])
    return sorted(rows.values(), key=lambda r: (-r["memory"], r["user"]))


def free_for(limits: Caps, rows: list[Row], uid: int) -> tuple[int, int | None]:
    """What ``uid`` may still take: ``(memory, cores)``, each the smaller of what the total cap and the
    user's own cap leave (cores None without a cap)."""
    mine = [r for r in rows if r["uid"] == uid]
    held_mem, my_mem = sum(r["memory"] for r in rows), sum(r["memory"] for r in mine)
    memory = max(0, min(limits["memory_total"] - held_mem, limits["memory_per_user"] - my_mem))
    left = []
    if limits["cores_total"]:
        left.append(limits["cores_total"] - sum(r["cores"] for r in rows))
    if limits["cores_per_user"]:
        left.append(limits["cores_per_user"] - sum(r["cores"] for r in mine))
    return memory, (max(0, min(left)) if left else None)


def fair_default(limits: Caps, rows: list[Row], uid: int) -> int:
    """A new cluster's default budget: an equal share of the total cap among ``fair_users`` users (or
    among everyone holding a share and this user, when more), less what the user already holds,
    within what is free."""
    others = [r for r in rows if r["uid"] != uid and r["memory"] > 0]
    users = max(limits["fair_users"], len(others) + 1)
    fair = min(limits["memory_total"] // users, limits["memory_per_user"])
    mine = sum(r["memory"] for r in rows if r["uid"] == uid)
    return max(0, min(fair - mine, free_for(limits, rows, uid)[0]))


def holders_text(rows: list[Row], uid: int, key: Literal["memory", "cores"] = "memory") -> str:
    """``alice 8 GiB, bob 6 GiB`` (you for ``uid``), biggest first."""
    shown = sorted((r for r in rows if r[key]), key=lambda r: (-r[key], r["user"]))
    if not shown:
        return "nobody"
    amount = format_bytes if key == "memory" else (lambda n: f"{n} cores")
    return ", ".join(f"{'you' if r['uid'] == uid else r['user']} {amount(r[key])}" for r in shown)


def refusal(limits: Caps, rows: list[Row], uid: int, memory: float, cores: int) -> str | None:
    """Why a budget of ``memory`` bytes and ``cores`` cores does not fit (one line), or None."""
    free_mem, free_cores = free_for(limits, rows, uid)
    mine = [r for r in rows if r["uid"] == uid]
    my_mem = sum(r["memory"] for r in mine)
    if memory > free_mem and limits["memory_per_user"] - my_mem < limits["memory_total"] - sum(r["memory"] for r in rows):
        return (f"--memory {format_bytes(memory)} is more than your share here: "
                f"{format_bytes(limits['memory_per_user'])} per user (memory_per_user in {HOST_CONFIG}), your other "
                f"clusters hold {format_bytes(my_mem)}.")
    if memory > free_mem:
        return (f"--memory {format_bytes(memory)} is more than is free: portal clusters may use "
                f"{format_bytes(limits['memory_total'])} together on this server; held now: {holders_text(rows, uid)} "
                f"({format_bytes(free_mem)} free).")
    if free_cores is not None and cores > free_cores:
        caps_text = f"cores_total {limits['cores_total'] or '-'}, cores_per_user {limits['cores_per_user'] or '-'} in {HOST_CONFIG}"
        return (f"{cores} cores (workers x threads) are more than are free: {free_cores} of the cores cap ({caps_text}) "
                f"are free; held: {holders_text(rows, uid, 'cores')}.")
    return None


# -- registrations on disk ------------------------------------------------------------------------

def reg_id(uid: int, key: str, machine: str) -> str:
    """The file name part of a cluster's registration: names no env (co-users read the directory)."""
    return hashlib.sha256(f"{uid}:{machine}:{key}".encode()).hexdigest()[:16]


def start_time(pid: int | str) -> int | None:
    """The process's start time (clock ticks since boot), or None: a pid reused later has another."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def counts(data: Any, owner: int, now: float, machine: str) -> bool:
    """True while the registration holds a share: its scheduler runs (owned by the file's owner), or it is pending."""
    if not isinstance(data, dict) or data.get("machine") != machine:
        return False
    procs = data.get("procs")
    if not procs:
        return now < float(data.get("pending_until", 0))
    return any(isinstance(p, list) and len(p) == 2 and pid_uid(int(p[0])) == owner and start_time(p[0]) == p[1]
               for p in procs)


def _dask_args(argv: list[str], command: str) -> list[str] | None:
    """The arguments after ``dask COMMAND`` (or ``dask-COMMAND``) in ``argv``, a process's command line; None
    when it runs no such command."""
    names = [os.path.basename(a) for a in argv]
    for i, name in enumerate(names):
        if name == "dask-" + command or (name == command and i > 0 and names[i - 1] == "dask"):
            return argv[i + 1:]
    return None


def _options(args: list[str], wanted: tuple[str, ...]) -> dict[str, str]:
    """The values of the ``wanted`` options in ``args``, given as ``--name value`` or ``--name=value``."""
    found: dict[str, str] = {}
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in wanted:
            found[name] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return found


def _spec_budget(args: list[str]) -> tuple[int, int] | None:
    """``(memory bytes, cores)`` of the workers ``dask spec --spec JSON`` runs (portal's own cluster: a nanny
    per worker, each with its memory limit and threads), or None when it runs none."""
    try:
        servers = json.loads(_options(args, ("--spec",)).get("--spec", ""))
        opts = [s.get("opts") or {} for s in servers.values()
                if isinstance(s, dict) and str(s.get("cls", "")).rsplit(".", 1)[-1] in ("Nanny", "Worker")]
        limits = [parse_amount(str(o.get("memory_limit", ""))) for o in opts]
        cores = sum(int(o.get("nthreads") or 1) for o in opts)
    except (ValueError, TypeError, AttributeError):
        return None
    if not opts or not all(limit and limit[0] == "bytes" and limit[1] >= 1024**2 for limit in limits):
        return None
    return int(sum(limit[1] for limit in limits if limit)), cores


def worker_budget(argv: list[str]) -> tuple[int, int] | None:
    """``(memory bytes, cores)`` a ``dask worker`` command line asks for (limit x nworkers, threads x nworkers),
    or portal's ``dask spec`` (:func:`_spec_budget`); None for any other command line or a limit that is not a
    size."""
    spec = _dask_args(argv, "spec")
    if spec is not None:
        return _spec_budget(spec)
    args = _dask_args(argv, "worker")
    if args is None:
        return None
    options = _options(args, ("--memory-limit", "--nworkers", "--nthreads"))
    limit = parse_amount(options.get("--memory-limit", ""))
    try:
        workers = int(options.get("--nworkers", "1"))
        threads = int(options.get("--nthreads", "1"))
    except ValueError:
        return None
    if not limit or limit[0] != "bytes" or limit[1] < 1024**2 or workers < 1:
        return None
    return int(limit[1]) * workers, threads * workers


def tmp_mount(mountinfo: str) -> tuple[str, str] | None:
    """Which file system a process sees as /tmp (device and root of the last mount on /tmp, else on /), from
    its /proc/PID/mountinfo (world-readable): processes of one server see the same one."""
    found: dict[str, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] in ("/", "/tmp"):
            found[fields[4]] = (fields[2], fields[3])
    return found.get("/tmp") or found.get("/")


def _tmp_of(pid: str) -> tuple[str, str] | None:
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            return tmp_mount(fh.read())
    except OSError:
        return None


#: observed()'s last look, ``(skip_uid, monotonic time, holdings)``: one helper call asks several times in a row
_LAST_LOOK: list[tuple[int, float, list[Holding]]] = []
#: how long a look at every process of the server stands for the next (a start asks up to four times)
LOOK_SECONDS = 1.0


def observed(skip_uid: int) -> list[Holding]:
    """Other users' shares as their running ``dask worker`` command lines say (world-readable in
    /proc): the owner is the process's. Only processes that see this server's /tmp count (where
    several hosts share one process table, as containers do, the others are not on this server).
    A look at every process of a busy server costs; one less than :data:`LOOK_SECONDS` old is reused."""
    now = time.monotonic()
    if _LAST_LOOK and _LAST_LOOK[0][0] == skip_uid and now - _LAST_LOOK[0][1] < LOOK_SECONDS:
        return list(_LAST_LOOK[0][2])
    held = _observed(skip_uid)
    _LAST_LOOK[:] = [(skip_uid, now, held)]
    return list(held)


def _observed(skip_uid: int) -> list[Holding]:
    held: list[Holding] = []
    here = _tmp_of("self")
    for name in os.listdir("/proc"):
        owner = pid_uid(int(name)) if name.isdigit() else None
        if owner is None or owner == skip_uid:
            continue
        found = worker_budget(cmdline(int(name)))
        if found and _tmp_of(name) == here:
            held.append({"uid": owner, "user": login_name(owner), "id": "pid-" + name, "memory": found[0],
                         "cores": found[1]})
    return held


def open_registry(plan: dict[str, Any]) -> tuple[int, bool, str | None]:
    """``(dir fd, trusted, note)``: the claims directory when trusted, else a private directory of the user's."""
    fd, problem = ports.open_claims(ports.claims_path(plan))
    if fd is not None:
        return fd, True, None
    private = os.path.dirname(state_path("share", "x"))
    note = ("other users' memory shares are read from their running Dask workers: the claims directory is not "
            f"one portal can trust ({problem}).")
    return os.open(private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW), False, note


def _read(fd: int, name: str) -> tuple[Any, int | None]:
    try:
        entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None, None
    try:
        st = os.fstat(entry)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4096:
            return None, None
        data = os.read(entry, 4096)
    finally:
        os.close(entry)
    try:
        return json.loads(data.decode()), st.st_uid
    except ValueError:
        return None, None


def registrations(fd: int) -> list[tuple[str, int, Any]]:
    """Every registration file in the directory: ``(name, owner uid, data)``."""
    found: list[tuple[str, int, Any]] = []
    for name in sorted(os.listdir(fd)):
        if name.startswith(PREFIX):
            data, owner = _read(fd, name)
            if owner is not None:
                found.append((name, owner, data))
    return found


def login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def holdings(fd: int, skip: str | None = None, now: float | None = None) -> list[Holding]:
    """The shares that count now, ``{uid, user, memory, cores, id}`` each (one per owner and id);
    ``skip``: a registration id left out. A user with no registration here (they could not trust
    this directory, or run Dask without portal) holds what their running workers ask for."""
    now = time.time() if now is None else now
    machine = platform.node()
    held: list[Holding]
    seen: set[tuple[int, Any]]
    held, seen = [], set()
    for _name, owner, data in registrations(fd):
        if counts(data, owner, now, machine) and data.get("id") != skip and (owner, data.get("id")) not in seen:
            seen.add((owner, data.get("id")))
            try:
                held.append({"uid": owner, "user": login_name(owner), "id": data.get("id"),
                             "memory": max(0, int(data.get("memory", 0))), "cores": max(0, int(data.get("cores", 0)))})
            except (TypeError, ValueError):
                continue
    registered = {h["uid"] for h in held} | {os.getuid()}
    return held + [h for h in observed(os.getuid()) if h["uid"] not in registered]


def _mine(fd: int, rid: str) -> list[str]:
    uid = os.getuid()
    return [name for name, owner, data in registrations(fd) if owner == uid and isinstance(data, dict) and data.get("id") == rid]


def write(fd: int, rid: str, record: dict[str, Any]) -> None:
    """Replace this user's registration ``rid`` whole (a file of another user's by that name: a new name)."""
    for old in _mine(fd, rid)[1:]:
        _unlink(fd, old)
    existing = _mine(fd, rid)
    target = existing[0] if existing else PREFIX + rid
    tmp = f"tmp-{rid}.{os.getpid()}.{os.urandom(4).hex()}"
    entry = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    try:
        os.fchmod(entry, 0o644)
        os.write(entry, json.dumps(record, sort_keys=True).encode())
        os.fsync(entry)
    finally:
        os.close(entry)
    try:
        os.rename(tmp, target, src_dir_fd=fd, dst_dir_fd=fd)
    except PermissionError:  # a co-user's file took the name first (sticky dir): ours goes beside it
        os.rename(tmp, f"{PREFIX}{rid}-{os.urandom(4).hex()}", src_dir_fd=fd, dst_dir_fd=fd)


def _unlink(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def host_resources() -> tuple[int, int]:
    from .system import meminfo_bytes

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return meminfo_bytes() or 0, cores


def limits_here() -> Caps:
    memory, cores = host_resources()
    if not memory:
        raise Failure("the host's memory is unknown (no /proc/meminfo).", "ClusterError",
                      hint="Give --memory as a size, e.g. --memory 4GiB.")
    return caps(ports.host_config(), memory, cores)


# -- verbs and what the cluster verbs call --------------------------------------------------------

def register(plan: dict[str, Any], key: str, memory: float | None = None, cores: int = 0,
             workers: int = 1) -> dict[str, Any]:
    """Register the budget of the env's new cluster: ``memory`` bytes when asked for, else the fair default.

    Returns ``{memory, cores, trusted, notes}``; a budget that does not fit is a Failure naming who holds what.
    """
    limits = limits_here()
    uid, machine = os.getuid(), platform.node()
    rid = reg_id(uid, key, machine)
    fd, trusted, note = open_registry(plan)
    try:
        for _attempt in range(ATTEMPTS):
            rows = per_user(holdings(fd, skip=rid), limits)
            budget = memory if memory is not None else fair_default(limits, rows, uid)
            if memory is None and budget < MIN_WORKER_BYTES * workers:
                raise Failure(f"no fair share of memory is left for a new cluster: portal clusters may use "
                              f"{format_bytes(limits['memory_total'])} together on this server; held now: "
                              f"{holders_text(rows, uid)}.",
                              "ClusterError", hint="Wait for one of them to end theirs (`portal down`), or ask the admins "
                                                   f"to raise memory_total in {HOST_CONFIG}.")
            problem = refusal(limits, rows, uid, budget, cores)
            if problem:
                raise Failure(problem, "ClusterError", hint="Ask for less (or leave --memory out for a fair share), "
                                                            "or wait for a holder to `portal down`.")
            write(fd, rid, {"id": rid, "machine": machine, "memory": int(budget), "cores": int(cores),
                            "procs": [], "pending_until": time.time() + PENDING_SECONDS, "since": time.time()})
            if not refusal(limits, per_user(holdings(fd, skip=rid), limits), uid, budget, cores):
                return {"memory": int(budget), "cores": int(cores), "trusted": trusted, "notes": [note] if note else []}
            for name in _mine(fd, rid):  # another start took it meanwhile: step back, look again
                _unlink(fd, name)
            time.sleep(random.uniform(0.05, 0.4))
        raise Failure("the server's memory share kept changing while several clusters started.", "ClusterError",
                      hint="Run the command again.")
    finally:
        os.close(fd)


def bind(plan: dict[str, Any], key: str, pids: Iterable[int | None]) -> bool:
    """The cluster is up: its registration now counts while these processes (the scheduler's first) run."""
    uid, machine = os.getuid(), platform.node()
    rid = reg_id(uid, key, machine)
    fd, _trusted, _note = open_registry(plan)
    try:
        found = _mine(fd, rid)
        data = _read(fd, found[0])[0] if found else None
        if not isinstance(data, dict):
            return False
        procs = [[int(p), start_time(p)] for p in dict.fromkeys(pids) if p and start_time(p) is not None]
        write(fd, rid, dict(data, procs=procs))
        return True
    finally:
        os.close(fd)


def adopt(plan: dict[str, Any], key: str, state: dict[str, Any]) -> bool:
    """A running cluster without a registration (started before shares existed, or its file lost): register it
    as it is, never refused (it already runs)."""
    uid, machine = os.getuid(), platform.node()
    rid = reg_id(uid, key, machine)
    fd, _trusted, _note = open_registry(plan)
    try:
        if _mine(fd, rid):
            return False
        write(fd, rid, {"id": rid, "machine": machine, "memory": int(state.get("memory_budget") or 0),
                        "cores": int(state.get("workers", 0)) * int(state.get("threads", 0)), "procs": [],
                        "pending_until": time.time() + PENDING_SECONDS, "since": time.time()})
    finally:
        os.close(fd)
    return bind(plan, key, [state.get("scheduler_pid"), state.get("workers_pid")])


def release(plan: dict[str, Any], key: str) -> None:
    """The env's cluster ended: its registration goes (and any of this user's that no longer count)."""
    uid, machine = os.getuid(), platform.node()
    rid = reg_id(uid, key, machine)
    fd, _trusted, _note = open_registry(plan)
    try:
        now = time.time()
        for name, owner, data in registrations(fd):
            if owner == uid and isinstance(data, dict) and (data.get("id") == rid or (
                    data.get("machine") == machine and not counts(data, owner, now, machine))):
                _unlink(fd, name)
    finally:
        os.close(fd)


def report(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``share-report`` (read-only): the caps, who holds how much, what is free, and the default a new cluster would get."""
    limits = limits_here()
    uid = os.getuid()
    fd, trusted, note = open_registry(payload["plan"])
    try:
        rows = per_user(holdings(fd), limits)
        mine = reg_id(uid, payload["key"], platform.node()) if payload.get("key") else None
        without_env = per_user(holdings(fd, skip=mine), limits)
    finally:
        os.close(fd)
    free_mem, free_cores = free_for(limits, rows, uid)
    return {"caps": limits, "users": [{k: r[k] for k in ("user", "memory", "cores", "clusters")} for r in rows],
            "held_memory": sum(r["memory"] for r in rows), "free_memory": free_mem, "free_cores": free_cores,
            "default_memory": fair_default(limits, without_env, uid), "trusted": trusted, "notes": [note] if note else []}


VERBS = {"share-report": report}

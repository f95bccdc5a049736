"""Host-side cluster verbs: health of a recorded cluster (TLS handshake), stale cleanup, start-up wait, stop.

Processes of a cluster carry ``PORTAL_CLUSTER=<key>@<machine>`` in their environment; only
processes of this user are ever signalled. Records live in this server's state directory.
"""

from __future__ import annotations

import glob
import os
import platform
import signal
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

from . import hostpaths, jobs, ports, reach, share, slots
from .common import (
    Failure,
    NotYours,
    cmdline,
    connect_owned,
    environ,
    holder_problem,
    install_preload,
    listeners,
    pid_alive,
    pid_uid,
    read_json,
    read_state,
    server_path,
    state_path,
    listening_rows,
    write_json,
)
from .interfaces import interface_address
from .tls import tls_dir

if TYPE_CHECKING:
    from .common import Listener

MARK = hostpaths.CLUSTER_MARK
#: What a cluster record must hold to be used (else it is damaged); a record of this version also has
#: ``http_ports``, ``http`` (the workers' HTTP ports), ``workers_pids`` and ``block``.
RECORD_FIELDS = ("key", "env", "scheduler_pid", "scheduler_port", "dashboard_port", "worker_ports", "nanny_ports",
                 "workers", "threads", "memory_limit", "memory_budget")


# -- TLS ------------------------------------------------------------------------------------------

def handshake(port: int, timeout: float = 2.0, pid: int | None = None, found: list[Listener] | None = None,
              host: str = "127.0.0.1") -> bool:
    """True when a TLS server signed by the user's CA answers on host:port (local) with our client cert.

    The client certificate goes out only to the user's own listener (``pid``'s, when given).
    """
    path = tls_dir()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(os.path.join(path, "ca.pem"))
        ctx.load_cert_chain(os.path.join(path, "cert.pem"), os.path.join(path, "key.pem"))
        with connect_owned(int(port), [int(pid)] if pid else None, timeout, "your Dask scheduler", found,
                           host) as raw:
            with ctx.wrap_socket(raw) as conn:
                conn.do_handshake()
        return True
    except (OSError, ssl.SSLError, ValueError, NotYours):
        return False


# -- processes ------------------------------------------------------------------------------------

def own(pid: int) -> bool:
    return bool(pid) and pid_alive(pid) and pid_uid(int(pid)) == os.getuid()


def _needles(key: str) -> set[bytes]:
    return {("%s=%s" % (MARK, mark)).encode() for mark in (hostpaths.cluster_mark(key, platform.node()), key)}


def marked_pids(key: str) -> list[int]:
    """This user's processes started with PORTAL_CLUSTER=KEY@MACHINE (this machine), or =KEY (earlier versions)."""
    needles = _needles(key)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid() and pid_uid(int(name)) == os.getuid():
            if needles & set(environ(int(name))):
                found.append(int(name))
    return found


def outside_block(key: str, block: dict[str, Any] | None, found: list[Listener]) -> list[Listener]:
    """Listeners of the env's cluster processes (marked KEY) outside the user's block: a Dask HTTP server
    whose port was taken falls back to a port the kernel picks (with only a warning in its log)."""
    if not block:
        return []
    needles, uid = _needles(key), os.getuid()
    return [e for e in found if e["uid"] == uid and e["pid"] and not block["start"] <= e["port"] <= block["end"]
            and any(needles & set(environ(pid)) for pid in (e.get("pids") or [e["pid"]]))]


def workers_pids(state: dict[str, Any] | None) -> list[int]:
    """The pids of the processes of a cluster's nannies: its ``dask spec`` (the scheduler's own); an earlier
    portal's ``dask worker`` (one for all, or one per worker)."""
    pids = (state or {}).get("workers_pids") or [(state or {}).get("workers_pid")]
    return [int(p) for p in pids if p]


def worker_pid_files(paths: dict[str, Any]) -> list[str]:
    """The pid files of an earlier portal's clusters, one per ``dask worker`` process (removed with the cluster)."""
    return [hostpaths.worker_pid_file(paths["workers_pid_file"], i) for i in range(slots.MAX_WORKERS)]


def read_pid(path: str) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def in_ranges(port: int, rec: dict[str, Any]) -> bool:
    if port in (rec.get("scheduler_port"), rec.get("dashboard_port")):
        return True
    return any(lo <= port <= hi for lo, hi in (rec.get(name) or [0, -1] for name in slots.RANGES))


def this_host(state: dict[str, Any] | None) -> bool:
    """True when the state was written on this machine (a home shared over NFS is read by several)."""
    return (state or {}).get("hostname") in (None, platform.node())


def stale_pids(key: str, state: dict[str, Any] | None, planned: dict[str, Any] | None) -> list[int]:
    """Recorded pids, marked processes, and dask processes of this user on the env's planned ports.

    Pids recorded on another machine mean nothing here and are never signalled.
    """
    pids = set(marked_pids(key))
    recorded: list[Any] = [(state or {}).get("scheduler_pid")] + workers_pids(state) if this_host(state) else []
    for pid in recorded:
        if own(pid) and any("dask" in part or "distributed" in part for part in cmdline(int(pid))):
            pids.add(int(pid))
    for entry in listeners():
        if entry["uid"] == os.getuid() and entry["pid"] and planned and in_ranges(entry["port"], planned):
            if any("dask" in part for part in entry["cmdline"]):
                pids.add(entry["pid"])
    pids.discard(os.getpid())
    return sorted(p for p in pids if own(p))


def terminate(pids: Iterable[int], seconds: float = 8.0) -> list[int]:
    """SIGTERM, wait (bounded), SIGKILL what is left; only this user's processes."""
    pids = [p for p in pids if own(p)]
    for sig, budget in ((signal.SIGTERM, seconds), (signal.SIGKILL, 3.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _running(p)]
        if not pids:
            break
    return pids


def _running(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- state and health -----------------------------------------------------------------------------

def state_file(key: str) -> str:
    return hostpaths.cluster_record(server_path(), key)


def _record_problem(record: dict[str, Any]) -> str | None:
    missing = [name for name in RECORD_FIELDS if name not in record]
    return "lacks %s" % ", ".join(missing) if missing else None


def read_record(key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The env's cluster record on this server: (record or None, what is wrong with the file or None)."""
    return read_state(state_file(key), _record_problem)


def recorded_ports(key: str) -> dict[str, Any] | None:
    """The env's ports in this server's port plan (None when not planned or the plan is unreadable)."""
    data, _ = read_state(hostpaths.ports_file(server_path()))
    rec = ((data or {}).get("envs") or {}).get(key)
    return rec if isinstance(rec, dict) else None


def own_listeners(found: list[Listener], lo: int, hi: int) -> list[Listener]:
    uid = os.getuid()
    return [e for e in found if e["uid"] == uid and lo <= e["port"] <= hi]


def dashboard_owner(port: int | None, sched: int | None, found: list[Listener]) -> tuple[bool, str | None]:
    """(True, None) when the scheduler ``sched`` of the user holds the dashboard port, else (False, why)."""
    if not port:
        return False, "the scheduler serves no dashboard (is bokeh installed in the env?)"
    if not any(e["port"] == port for e in found):
        return False, f"nothing listens on dashboard port {port}"
    problem = holder_problem(port, found, [int(sched)] if sched else None)
    if problem:
        return False, f"dashboard port {port} is held by {problem}, not by your scheduler"
    return True, None


def health(state: dict[str, Any]) -> dict[str, Any]:
    """What is true of a recorded cluster right now (on another machine: nothing, as seen from here).

    ``healthy`` is about the cluster (scheduler, TLS, workers); ``dashboard_ok`` says the dashboard
    port is held by this very scheduler, so it may be forwarded.
    """
    if not this_host(state):
        return {"scheduler_alive": False, "tls": False, "workers_running": 0, "healthy": False,
                "dashboard_ok": False, "dashboard_unowned": None, "elsewhere": state.get("hostname")}
    found = listeners()
    sched: Any = state.get("scheduler_pid")  # the record's JSON: an int where it is intact
    port: Any = state.get("scheduler_port")
    holder = [e for e in found if e["port"] == port]
    ours = bool(holder) and all(e["uid"] == os.getuid() and e["pid"] in (None, sched) for e in holder)
    alive = own(sched)
    # a scheduler busy with other clients (ten `up` at once) can miss 2 s; it is asked again, longer,
    # before a verdict that replaces it
    where = state.get("scheduler_host") or "127.0.0.1"
    tls_ok = alive and ours and (handshake(port, pid=sched, found=found, host=where)
                                 or handshake(port, 10.0, sched, host=where))
    workers = len(own_listeners(found, *state.get("worker_ports", [0, -1])))
    pids = workers_pids(state)
    alone = not state.get("workers", 1)  # --workers 0: the scheduler alone here (jobs or other servers bring them)
    healthy = bool(tls_ok and (alone or (pids and all(own(p) for p in pids) and workers > 0)))
    dash_ok, dash_problem = dashboard_owner(state.get("dashboard_port"), sched, found) if alive else (False, None)
    dash_open = bool(alive and state.get("dashboard_port") and not reach.preloaded([int(sched)]))
    outside = outside_block(cast(str, state.get("key")), state.get("block") or ports.recorded_block(),
                            found) if alive else []
    return {"scheduler_alive": alive, "tls": bool(tls_ok), "workers_running": workers, "healthy": healthy,
            "dashboard_ok": dash_ok, "dashboard_unowned": dash_problem, "dashboard_open": dash_open,
            "outside_block": sorted({"%s:%d" % (e["addr"], e["port"]) for e in outside})}


def outside_note(state: dict[str, Any]) -> str | None:
    """One line when listeners of a running cluster lie outside the user's block (None when all are inside)."""
    if not state.get("outside_block"):
        return None
    why = ("it was started by an earlier portal, whose workers' HTTP servers took ports the kernel picks"
           if not state.get("http_ports") else "ports it was given were taken by others while it started")
    return ("your cluster of env %s listens outside your port block on %s: %s. They are on loopback and TLS or "
            "read-only; `portal down --env %s` and up again moves them into the block."
            % (state.get("env"), ", ".join(state["outside_block"]), why, state.get("env")))


def served_dashboard(path: str) -> int | None:
    """The port the scheduler really serves its dashboard on, from its scheduler file (Dask's own
    ``identity()``: ``services.dashboard``), or None."""
    port = ((read_json(path, {}) or {}).get("services") or {}).get("dashboard")
    return int(port) if isinstance(port, int) else None


def moved_dashboard_note(planned: int, served: int | None, found: list[Listener],
                         block: dict[str, Any] | None) -> str | None:
    """One line when Dask serves the dashboard elsewhere than planned (someone took the planned port)."""
    if not served or served == planned:
        return None
    holder = holder_problem(planned, found) or "someone (gone now)"
    where = "inside" if block and block["start"] <= served <= block["end"] else "outside"
    return (f"dashboard port {planned} was taken by {holder} while the scheduler started; Dask serves the "
            f"dashboard on {served} ({where} your block) and portal forwards that one.")


def _scheduler_address(path: str) -> Any:
    return (read_json(path, {}) or {}).get("address")


def env_kind(spec: str) -> str:
    """``named`` for an env name; for a path, venv or conda-prefix (EnvError when it has no dask)."""
    if "/" not in spec and not spec.startswith(("~", ".")):
        return "named"
    path = os.path.expanduser(spec)
    if not os.path.isfile(os.path.join(path, "bin", "dask")):
        raise Failure("env %s has no dask (no %s/bin/dask)." % (spec, spec.rstrip("/")), "EnvError",
                      hint="Install it there: pip install 'dask[distributed]'.")
    return "conda-prefix" if os.path.isdir(os.path.join(path, "conda-meta")) else "venv"


def prepare(payload: dict[str, Any]) -> dict[str, Any]:
    """The cluster part of the ``up`` verb, first: reuse a healthy cluster, else clean up what is stale and plan ports.

    A damaged record (empty, not JSON, fields missing) is stale when nothing of the env's cluster
    runs; while something does, it is one line and nothing is touched (``down`` is the way out).
    """
    key = payload["key"]
    kind = env_kind(payload["env"])
    listen = interface_address(payload["interface"]) if payload.get("interface") else "127.0.0.1"
    state, problem = read_record(key)
    notes = []
    if problem:
        running = [pid for pid in marked_pids(key) if own(pid)]
        if running:
            raise Failure("the record of your cluster of env %s, %s, %s, and the cluster still runs (pids %s)."
                          % (payload["env"], state_file(key), problem, ", ".join(map(str, running))), "StateError",
                          hint="Run `portal down --env %s` to stop it (that removes the record), then up again."
                          % payload["env"])
        notes.append("the record %s %s and no cluster of env %s runs: starting afresh."
                     % (state_file(key), problem, payload["env"]))
    if state:
        now = health(state)
        if now["healthy"]:
            if payload.get("plan"):
                share.adopt(payload["plan"], key, state)
            note = outside_note(dict(state, **now))
            return {"reused": True, "state": dict(state, **now), "notes": notes + ([note] if note else [])}
    cleaned = stale_pids(key, state, recorded_ports(key))
    survivors = terminate(cleaned)
    if survivors:
        raise Failure("stale cluster processes %s of env %s did not end." % (survivors, payload["env"]), "ClusterError",
                      hint="Look at them with `ps -fp %s`." % ",".join(map(str, survivors)))
    paths = payload["paths"]
    for path in [paths[name] for name in ("scheduler_file", "scheduler_pid_file", "workers_pid_file")] + \
            worker_pid_files(paths):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    state_path("clusters", "x")
    if os.path.exists(state_file(key)):
        os.unlink(state_file(key))
    old = os.umask(0o077)
    try:
        os.makedirs(paths["scratch"], mode=0o700, exist_ok=True)
    finally:
        os.umask(old)
    if paths.get("preload"):
        install_preload(paths["preload"])
    share.release(payload["plan"], key)  # what the stale cluster held
    planned = ports.assign({"plan": payload["plan"], "key": key, "env": payload["env"], "replan": True,
                            "check": ["scheduler_port", "dashboard_port"]})
    planned["ports"] = dict(planned["ports"], http=ports.choose_http(planned["ports"], listeners()))
    asked = payload.get("share") or {}
    budget = share.register(payload["plan"], key, asked.get("memory"), int(asked.get("cores", 0)),
                            int(asked.get("workers", 1)))
    planned["notes"] = notes + planned.get("notes", []) + budget.pop("notes")
    return dict(planned, reused=False, cleaned=cleaned, was_recorded=bool(state), env_kind=kind, share=budget,
                listen=listen)


def wait(payload: dict[str, Any]) -> dict[str, Any]:
    """The cluster part of the ``up`` verb, once its window runs: bounded wait until scheduler (TLS) and every worker listen; records state.

    Every worker (its worker, nanny and HTTP servers) is counted; an HTTP server Dask moved outside the block
    (its port was taken meanwhile) counts too, and a note says so. The scheduler and the nannies are one
    process (``dask spec``): its pid is the scheduler's and the workers' both.
    """
    paths, rec, n = payload["paths"], payload["ports"], int(payload["workers"])
    block = payload.get("block") or ports.recorded_block()
    http = [slots.per_worker(rec, i)["http_port"] for i in range(n)]
    started = time.monotonic()
    deadline = started + float(payload.get("seconds", 60))
    pause, shaken = 0.04, False
    last = "nothing yet"
    served: int | None  # the workers' HTTP servers while waiting, then the port Dask serves its dashboard on
    while True:
        sched = read_pid(paths["scheduler_pid_file"])
        # the nannies run in the scheduler's process; none with --workers 0 (the scheduler alone: jobs bring workers)
        workers = [sched] if n else []
        address = _scheduler_address(paths["scheduler_file"])
        if sched and not own(sched):
            held = holder_problem(rec["scheduler_port"], listeners())
            why = f": its port {rec['scheduler_port']} was taken by {held} meanwhile" if held else ""
            raise Failure(f"the scheduler exited right after starting{why}.", "ClusterError",
                          "Run portal again to move to another port of your block." if held else None)
        listening = bool(sched and address and _all_listen(rec, n))
        if listening and not shaken:  # the scheduler's TLS answers: asked once
            shaken = handshake(rec["scheduler_port"], 1.0, sched, host=payload.get("listen") or "127.0.0.1")
        if listening and shaken:
            found = listeners()
            got = len(own_listeners(found, *rec["worker_ports"]))
            nannies = len(own_listeners(found, *rec["nanny_ports"]))
            served = sum(1 for e in found if e["uid"] == os.getuid() and e["port"] in http)
            strays = [e for e in outside_block(payload["key"], block, found) if e["pid"] != sched]
            if all(workers) and got >= n and nannies >= n and served + len(strays) >= n:
                break
            last = "%d of %d workers listening, %d of their HTTP servers" % (got, n, served + len(strays))
        else:
            last = "scheduler not answering TLS on port %d yet" % rec["scheduler_port"]
        if time.monotonic() > deadline:
            raise Failure("the cluster did not come up within %ss (%s)." % (payload.get("seconds", 60), last),
                          "ClusterError")
        # often while a quiet host boots it (about a second), less and less on a busy one: each look costs CPU
        # that twenty colleagues starting at once need for their own clusters (past 10 s, twice a second)
        waited = time.monotonic() - started
        pause = 0.04 if waited < 2 else min(pause * 1.25, 0.25 if waited < 10 else 0.5)
        time.sleep(pause)
    found = listeners()
    served = served_dashboard(paths["scheduler_file"])
    notes = [moved_dashboard_note(rec["dashboard_port"], served, found, block),
             moved_http_note(payload["record"].get("env"), http, outside_block(payload["key"], block, found),
                             [sched], found, block)]
    state = dict(payload["record"], scheduler_pid=sched, workers_pid=workers[0] if workers else None,
                 workers_pids=workers,
                 address=address, started=time.time(), hostname=platform.node(), http=http, block=block,
                 **{k: rec[k] for k in ("scheduler_port", "worker_ports", "nanny_ports")})
    if rec.get("http_ports"):
        state["http_ports"] = rec["http_ports"]
    state["dashboard_port"] = served
    state["planned_dashboard_port"] = rec["dashboard_port"]
    write_json(state_path("clusters", "%s.json" % payload["key"]), state)
    if payload.get("plan"):
        share.bind(payload["plan"], payload["key"], [sched])
    return dict(state, notes=[note for note in notes if note], **health(state))


def _all_listen(rec: dict[str, Any], n: int) -> bool:
    """A cheap look first (the kernel's listeners alone, common.listening_rows): the scheduler's port and n worker
    and n nanny ports listen as this user. Only then are owners by pid and the TLS handshake asked, so a wait
    costs little on a busy host where many users start clusters at once."""
    mine = {row["local"][1] for row in listening_rows() if row["uid"] == os.getuid()}
    inside: Callable[[int, int], int] = lambda lo, hi: sum(1 for port in mine if lo <= port <= hi)  # noqa: E731
    return rec["scheduler_port"] in mine and inside(*rec["worker_ports"]) >= n and inside(*rec["nanny_ports"]) >= n


def moved_http_note(env: str | None, http: list[int], outside: list[Listener], skip: list[int], found: list[Listener],
                    block: dict[str, Any] | None) -> str | None:
    """One line when workers' HTTP servers listen outside the block: Dask took another port when theirs
    was taken (by whom, where it still is). The workers themselves work; their HTTP servers are on loopback."""
    moved = sorted(e["port"] for e in outside if e["pid"] not in skip)
    if not moved:
        return None
    mine = {e["port"] for e in found if e["uid"] == os.getuid()}
    lost = [port for port in http if port not in mine]
    held = "; ".join("%d by %s" % (port, holder_problem(port, found) or "someone (gone now)") for port in lost)
    span = "%d-%d" % (block["start"], block["end"]) if block else "?"
    return ("the HTTP server (health, metrics) of %d worker(s) of env %s listens on %s, outside your "
            "block %s: Dask took another port when its own was taken (%s). On loopback only; `portal down --env %s` "
            "and up again moves it back." % (len(moved), env, ", ".join("127.0.0.1:%d" % p for p in moved), span,
                                              held or "taken meanwhile", env))


def records() -> list[dict[str, Any]]:
    """Every intact cluster record of this user on this server, as written (no health asked)."""
    found = []
    for path in sorted(glob.glob(server_path("clusters", "*.json"))):
        state, _ = read_state(path, _record_problem)
        if state and path == state_file(state["key"]):  # a damaged record is listed by nobody: prepare/stop say it
            found.append(state)
    return found


def describe(_payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Verb ``cluster-list``: every recorded cluster of this user with its health."""
    found = []
    for state in records():
        now = dict(state, **health(state))
        if jobs.read_record(state["key"]):  # its worker jobs: queue state, workers joined
            now["jobs"] = jobs.describe(state["key"], now.get("dashboard_port"), now.get("scheduler_pid"))["jobs"]
        found.append(now)
    return found


def stop(payload: dict[str, Any]) -> dict[str, Any]:
    """For the ``down`` verb: end this user's cluster processes of the env and forget its state."""
    key = payload["key"]
    state, _ = read_record(key)  # a damaged record: the marked processes are still found and stopped
    pids = stale_pids(key, state, recorded_ports(key))
    survivors = terminate(pids)
    if payload.get("plan") and not survivors:
        share.release(payload["plan"], key)
    recorded = (state or {}).get("paths", {})
    extra = worker_pid_files(recorded) if "workers_pid_file" in recorded else []
    for path in [state_file(key)] + list(recorded.values()) + extra:
        if path.endswith((".json", ".pid")) and os.path.isfile(path):
            os.unlink(path)
    return {"stopped": pids, "survivors": survivors, "had_state": bool(state)}


VERBS = {"cluster-list": describe}  # prepare and wait run inside `up` (remote/up.py), stop inside `down`

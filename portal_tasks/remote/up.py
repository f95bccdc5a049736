"""Verb ``up``: carry out the host-side plan of a cold ``portal up`` in one call, streaming progress.

The laptop plans (ports, windows, the lines typed into them, all from the builders ``--explain``
prints) and sends the plan on stdin; this runs it here: TLS files, the tmux session, the env's
window, the cluster (``cluster.prepare``, its window, ``cluster.wait``), IPython, JupyterLab
(``jupyter.prepare``, its window, ``jupyter.wait``). The tmux argv come built in the plan and run
here with subprocess (no ssh per tmux call). Dask, IPython and JupyterLab boot side by side, as typed by
hand; IPython's client waits for the scheduler (parts/ipython.py), so its prompt is there once Dask is up.

Each finished step prints one JSON line ``{"event": STEP, ...}`` (flushed) before the final
``{"ok": ..., "result": ...}``; the cluster's ``cluster-ready`` goes out as soon as it is ready, so it
may come before IPython's or JupyterLab's. Each part is optional but the session: the single steps
(`portal env`, `portal cluster`, ...) send only theirs. When the host gives the cluster (or JupyterLab) other ports than
the laptop planned with (someone took one meanwhile), nothing is started with the old plan: the
result is ``{"replan": {...}}`` with what the host gave, and the laptop sends the plan again.

The same host locks as the single steps are held (``cluster-KEY``, ``window-SESSION-NAME``), all
taken at the start in sorted order (two `up` at once never hold them crosswise).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from . import cluster, jobs, jupyter, ports, snapshot, tls, tmux
from .common import Failure, locked

#: tmux runs with a UTF-8 locale (its output is parsed).
TMUX_ENV = dict(os.environ, LC_ALL="C.UTF-8")
#: The cluster's ports the lines typed into its window depend on.
CLUSTER_PORTS = ("scheduler_port", "dashboard_port", "worker_ports", "nanny_ports", "http_ports", "http")


EMITTING = threading.Lock()


def emit(event: str, **data: Any) -> None:
    """One progress line for the laptop, flushed at once (whole, also when a wait's thread says it)."""
    line = json.dumps(dict(data, event=event)) + "\n"
    with EMITTING:
        sys.stdout.write(line)
        sys.stdout.flush()


def run_tmux(argv: Sequence[str], timeout: float = 15) -> tuple[bool, str, str]:
    """Run a tmux argv (as built on the laptop, ``tmux ...``) here; (ok, stdout, stderr)."""
    try:
        out = subprocess.run(["tmux", "-u"] + list(argv[1:]), capture_output=True, text=True, timeout=timeout,
                             env=TMUX_ENV, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "", str(exc)
    return out.returncode == 0, out.stdout, out.stderr.strip()


def must(argv: Sequence[str], what: str) -> str:
    ok, out, err = run_tmux(argv)
    if not ok:
        raise Failure("tmux refused %s: %s" % (what, err or "no reason given"), "TmuxError",
                      "Run `%s` on the host by hand to see why." % " ".join(argv))
    return out


def ensure_session(plan: dict[str, Any]) -> bool:
    """(created) the session: an existing one is reused; one another portal made meanwhile too."""
    if run_tmux(plan["has"])[0]:
        return False
    ok, _, err = run_tmux(plan["new"])
    if ok:
        return True
    if run_tmux(plan["has"])[0]:
        return False
    raise Failure("tmux could not create session %r: %s" % (plan["name"], err), "TmuxError",
                  "Run `tmux new-session -d` on the host by hand to see why.")


def foreground(session: str, name: str) -> str | None:
    entry = (snapshot.windows(session) or {}).get(name)
    return None if entry is None else entry["command"]


def busy(session: str, name: str) -> bool:
    return tmux.runs_program(foreground(session, name) or "")


def at_prompt(session: str, name: str) -> bool:
    """True when the window's shell is at its prompt (or the window is gone): nothing started, nothing activates."""
    command = foreground(session, name)
    return command is None or command in tmux.SHELLS


def tail(session: str, name: str, lines: int = 5) -> str:
    ok, out, _ = run_tmux(["tmux", "capture-pane", "-p", "-t", "=%s:=%s" % (session, name)])
    if not ok:
        return ""
    text = [line.strip() for line in out.splitlines() if line.strip()]
    return " / ".join(text[-lines:])


def open_window(session: str, window: dict[str, Any]) -> bool:
    """Open the window and type its lines unless it is kept ({keep: "marker" | "busy" | "never"}); True when
    opened now."""
    entry = (snapshot.windows(session) or {}).get(window["name"])
    if entry is not None:
        keep = window.get("keep")
        if keep == "marker" and entry["marker"] == window.get("marker"):
            return False
        if keep == "busy" and tmux.runs_program(entry["command"]):
            return False
        run_tmux(window["kill"])
    for argv in window["argv"]:
        must(argv, "window %s (%s)" % (window["name"], argv[1]))
    return True


def differs(planned: dict[str, Any], given: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: given.get(name) for name in names if list_or(planned.get(name)) != list_or(given.get(name))}


def list_or(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


class Waiter(threading.Thread):
    """A wait that runs beside the others; ``result()`` re-raises its Failure here. ``done(value)`` runs in
    its thread as soon as it succeeds (its progress line goes out then, not in the order of the steps)."""

    value: Any
    error: Failure | None

    def __init__(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None) -> None:
        super().__init__(daemon=True)
        self.fn, self.done, self.value, self.error = fn, done, None, None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn()
            if self.done is not None:
                self.done(self.value)
        except Failure as exc:
            self.error = exc
        except Exception as exc:  # a bug: still one line on the laptop
            self.error = Failure("portal's helper failed: %s: %s" % (type(exc).__name__, exc))

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def _cluster_wait(session: str, plan: dict[str, Any], prep: dict[str, Any]) -> dict[str, Any]:
    payload = dict(plan["wait"], ports=prep["ports"], listen=prep["listen"], block=prep.get("block"))
    try:
        return cluster.wait(payload)
    except Failure as exc:
        shows = tail(session, plan["window"]["name"])
        raise Failure("env %s: %s Window %s shows: %s" % (plan["env"], exc.message, plan["window"]["name"],
                                                          shows or "nothing"), exc.kind,
                      "Attach with `tmux attach -t %s` to look." % session)


def _ipython_wait(session: str, plan: dict[str, Any]) -> bool:
    """Until IPython runs in its window (bounded): looked for at once, then less and less often (each look
    is a tmux process; many users may start at once)."""
    deadline = time.monotonic() + float(plan.get("seconds", 30))
    pause = 0.02
    while not busy(session, plan["window"]["name"]):
        if time.monotonic() >= deadline:
            raise Failure("IPython did not start in window %s (%s)." % (plan["window"]["name"],
                                                                        tail(session, plan["window"]["name"])),
                          "EnvError", "Attach (tmux attach -t %s) and look at window %s." % (session,
                                                                                         plan["window"]["name"]))
        time.sleep(pause)
        pause = min(pause * 1.5, 0.2)
    return True


def _after(seconds: float, check: Callable[..., bool], *args: Any) -> bool:
    """``check(*args)`` once ``seconds`` have passed."""
    time.sleep(seconds)
    return check(*args)


def _jupyter_wait(session: str, plan: dict[str, Any]) -> dict[str, Any]:
    name = plan["window"]["name"]
    deadline = time.monotonic() + float(plan.get("seconds", 90))
    while time.monotonic() < deadline:
        entry = jupyter.wait({"key": plan["key"], "timeout": 3})
        if entry and (entry.get("healthy") or entry.get("taken")):
            return entry
        if at_prompt(session, name):
            # gone only when the shell stays at its prompt for 3 s: the line may still be on its way, and an
            # env's activation (conda, seconds on a busy host) is not the prompt
            if all(_after(0.5, at_prompt, session, name) for _ in range(6)):
                why = tail(session, name) if foreground(session, name) is not None else "its window is gone"
                raise Failure("JupyterLab for env %r exited (%s)." % (plan["env"], why), "JupyterError",
                              "Attach and look at window %s." % name)
    raise Failure("JupyterLab for env %r did not answer within %gs." % (plan["env"], float(plan.get("seconds", 90))),
                  "JupyterError", "Attach (tmux attach -t %s) and look at window %s." % (session, name))


def _jobs_joined(wait: dict[str, Any], submitted: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Until the submitted jobs' workers joined the new cluster (``jobs-wait``, bounded); said as it ends."""
    now = jobs.wait(dict(wait, dashboard_port=state.get("dashboard_port"), scheduler_pid=state.get("scheduler_pid")))
    emit("jobs", submitted=submitted, now=now)
    return {"submitted": submitted, "now": now}


def up(payload: dict[str, Any]) -> dict[str, Any]:
    session = payload["session"]["name"]
    with contextlib.ExitStack() as held:
        for name in sorted(set(payload.get("locks") or [])):
            held.enter_context(locked(name, float(payload.get("lock_timeout", 150))))
        return _up(payload, session)


def _up(payload: dict[str, Any], session: str) -> dict[str, Any]:
    """Each part the plan carries (``env``, ``cluster``, ``ipython``, ``jupyter``; the session always),
    so the single steps (`portal env`, `portal cluster`, ...) take the same path as `up`."""
    result: dict[str, Any] = {}
    if not shutil.which("tmux"):
        raise Failure("tmux is not installed (or not on the PATH).", "TmuxError",
                      "Ask the admins for tmux, or install it in ~/.local/bin.")
    if payload.get("tls"):
        result["tls"] = tls.tls_install(payload["tls"])
        emit("tls", status=result["tls"])
    emit("tmux", created=ensure_session(payload["session"]))
    env = payload.get("env")
    if env:
        emit("env", started=open_window(session, env["window"]))
    for window in payload.get("windows") or []:  # windows of their own (the workers on another server)
        open_window(session, window)

    plan: Any  # the payload's cluster part (JSON), None without one
    prep: dict[str, Any] | None
    booting: Waiter | None
    submitting: Waiter | None
    plan, prep, booting, submitting = payload.get("cluster"), None, None, None
    if plan:
        prep = cluster.prepare(plan["prepare"])
        if prep["reused"]:
            given = prep["state"]
            moved = differs(plan["expect"], dict(given, scheduler_host=given.get("scheduler_host") or "127.0.0.1"),
                            ("scheduler_port", "dashboard_port", "scheduler_host"))
        else:
            moved = differs(plan["ports"], prep["ports"], CLUSTER_PORTS)
            moved.update(differs(plan["expect"], {"scheduler_host": prep["listen"],
                                                  "budget": int(prep["share"]["memory"]),
                                                  "env_kind": prep.get("env_kind")},
                                 ("scheduler_host", "budget", "env_kind")))
        if moved:  # the lines were planned with other ports: nothing starts with them
            emit("replan", cluster=moved)
            return {"replan": {"cluster": prep}}
        if not prep["reused"]:
            open_window(session, plan["window"])
            if plan.get("jobs"):  # queued while the scheduler boots: the job script is written meanwhile
                submitting = Waiter(lambda: jobs.submit(plan["jobs"]["submit"]))
        emit("cluster-starting", prep=prep)
        if prep["reused"]:
            emit("cluster-ready", state=dict(prep["state"], reused=True))
        else:  # its line goes out once it is ready: the laptop forwards the dashboard while the rest boots
            booting = Waiter(lambda: _cluster_wait(session, plan, prep), lambda state: emit("cluster-ready", state=state))

    lab = payload.get("jupyter")
    lab_wait: Waiter | None
    replan: dict[str, Any]
    lab_wait, replan = None, {}
    if lab:  # set going before IPython's wait, so JupyterLab boots beside Dask
        lab_wait, replan, result["jupyter"] = _start_lab(session, lab)

    ipy = payload.get("ipython")
    if ipy:
        # IPython starts beside Dask, as typed by hand: its import overlaps Dask's boot, and its client waits
        # for the scheduler (ipython.CLIENT_SOURCE), so the prompt comes when the cluster is up, not after
        started = open_window(session, ipy["window"])
        if started:
            _ipython_wait(session, ipy)
        emit("ipython", started=started)

    if lab:
        if lab_wait is not None:
            entry = lab_wait.result()
            if entry.get("taken"):  # the next free port of the block comes with it: one more call, not two
                replan["jupyter"] = {"taken": entry["taken"], "port": None, "notes": []}
                if not lab.get("socket"):
                    moved = ports.assign({"plan": lab["plan"], "key": lab["key"], "env": lab["env"],
                                          "check": ["jupyter_port"]})
                    replan["jupyter"].update(port=int(moved["ports"]["jupyter_port"]), notes=moved.get("notes", []))
            else:
                result["jupyter"] = dict(entry, started=True)
        emit("jupyter", entry=result.get("jupyter"), replan=replan.get("jupyter"))
    if prep is not None:
        result["cluster"] = booting.result() if booting is not None else dict(prep["state"], reused=True)
        result["cluster_notes"] = prep.get("notes", [])
    if submitting is not None:  # last: IPython and JupyterLab did not wait for the queue
        result["jobs"] = _jobs_joined(plan["jobs"]["wait"], submitting.result(), result["cluster"])
    if replan:
        result["replan"] = replan
    return result


def _start_lab(session: str, lab: dict[str, Any]) -> tuple[Waiter | None, dict[str, Any], dict[str, Any] | None]:
    """(waiter or None, replan, kept entry or None): JupyterLab set going on the planned port, or kept."""
    entry = jupyter.status({"key": lab["key"]})
    if entry and entry.get("healthy") and bool(entry.get("socket")) == bool(lab.get("socket")):
        return None, {}, dict(entry, started=False)
    port = None
    if not lab.get("socket"):
        reply = ports.assign({"plan": lab["plan"], "key": lab["key"], "env": lab["env"], "check": ["jupyter_port"]})
        port = int(reply["ports"]["jupyter_port"])
        if port != lab.get("port"):
            return None, {"jupyter": {"port": port, "notes": reply.get("notes", [])}}, None
        lab["notes"] = reply.get("notes", [])
        emit("jupyter-port", notes=lab["notes"])
    jupyter.prepare({"key": lab["key"], "env": lab["env"], "port": port, "socket": bool(lab.get("socket"))})
    open_window(session, lab["window"])
    return Waiter(lambda: _jupyter_wait(session, lab)), {}, None


#: How long ``snapshot-up`` waits for the laptop's plan after the snapshot (the laptop decides in milliseconds).
PLAN_SECONDS = 120


def next_line(seconds: float) -> Any:
    """The next line on stdin as JSON, or None when the laptop sent none (an empty line, its end, or
    nothing within ``seconds``)."""
    ready, _, _ = select.select([sys.stdin], [], [], seconds)
    line = sys.stdin.readline() if ready else ""
    return json.loads(line) if line.strip() else None


def snapshot_then_up(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Verb ``snapshot-up``: the snapshot as a progress line (``{"event": "answer", "result": ...}``), then,
    in the same call, the ``up`` plan the laptop made from it (its next stdin line), carried out; nothing
    when the laptop sends none (everything ran). A cold `up` is then one session, not two."""
    emit("answer", result=snapshot.snapshot(payload))
    plan = next_line(PLAN_SECONDS)
    return None if plan is None else up(plan)


VERBS = {"up": up, "snapshot-up": snapshot_then_up}

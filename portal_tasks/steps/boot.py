"""Cold `up` in one host call: the laptop plans from the snapshot, the helper's ``up`` verb does.

The snapshot (``warm.snapshot``) brought the facts, the env check, the env's ports, the share's
default and the TLS status; :func:`payload` builds the whole host-side plan from the same builders
``--explain`` prints (tmux argv, env activation, the Dask and Jupyter command lines), and
:func:`run` sends it in one streaming call, turning each progress line into the step line the user
sees. When the host gave other ports than planned (a co-user took one meanwhile), the helper starts
nothing with the old plan; the plan is made again with what the host gave and sent once more.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from .. import daskcmd, envs, hostenv, plan, progress, tls
from .. import tmux_commands as cmds
from ..daskcmd import through_jupyter
from ..envs import Env
from ..errors import PortError
from ..plan import EnvPorts
from ..remote import layout
from ..replies import Snapshot
from ..services import Service, collect, not_forwarded
from ..target import Target
from . import cluster, env as env_step, ipython, jupyter as jupyter_step, tmux

#: How often the plan is made again when the host gives other ports (each time someone took one).
REPLANS = 4


def usable(target: Target, snap: Snapshot, options: dict[str, Any]) -> bool:
    """True when the snapshot carries what the plan needs (else `up` takes the step-by-step path)."""
    return bool(snap.get("env") and snap.get("ports") and snap.get("tls") and snap.get("share")
                and snap["facts"].get("tmux") and not cluster.beyond_host(options))


class Plan:
    """What one cold `up` plans, and what the host changed of it (``replan``)."""

    def __init__(self, target: Target, spec: str, snap: Snapshot, options: dict[str, Any], jupyter: bool,
                 socket: bool) -> None:
        self.target, self.spec, self.snap, self.options = target, spec, snap, options
        self.jupyter, self.socket = jupyter, socket
        target.cache.env_checks.setdefault(spec, snap["env"])  # type: ignore[arg-type]
        self.env: Env = hostenv.resolve(target, spec)
        self.env_check: dict[str, Any] = dict(snap["env"] or {})
        self.key = plan.env_key(spec)
        facts = snap["facts"]
        self.plan = plan.plan_payload(target.settings, facts["uid"])
        self.server = layout.server_dir(facts["home"], facts["hostname"])
        report = snap["ports"]
        recorded = report["envs"].get(self.key)
        self.ports: dict[str, Any] = dict((recorded if recorded and layout.is_current(recorded) else None)
                                          or report.get("would_be") or recorded or {})
        target.cache.planned_ports[self.key] = dict(self.ports)
        if self.ports.get("http_ports") and "http" not in self.ports:
            lo, hi = self.ports["http_ports"]
            self.ports["http"] = list(range(lo, hi + 1))
        asked = cluster.share_request(target, options)
        self.share = asked
        self.budget = int(asked["memory"] if asked["memory"] is not None else snap["share"]["default_memory"])
        self.kind = self.env.kind
        self.listen = daskcmd.LOOPBACK
        running = next((c for c in snap.get("clusters") or [] if c.get("key") == self.key and c.get("healthy")), None)
        self.sched = dict(running) if running else None  # a healthy cluster: its ports, kept
        self.lab_port: int | None = None
        if jupyter and not socket:
            self.lab_port = int(self.ports.get("jupyter_port") or 0) or None
        self.tls_files: dict[str, Any] | None = None
        status = snap["tls"]
        left = tls.days_left(status)
        if not status.get("exists") or (left is not None and left <= 0):
            self.tls_files = {"files": tls.make_bundle(facts["user"], facts.get("hostname") or target.host),
                              "replace": bool(status.get("exists"))}
        elif left is not None and left < tls.WARN_DAYS:
            target.say(f"{target.host}: note: your TLS certificate ends on {tls.not_after(status['cert']):%Y-%m-%d}; "
                       f"run `portal tls --rotate --host {target.host}` when your clusters may restart.")

    # -- what the host gave instead --------------------------------------------------------
    def replan(self, asked: dict[str, Any]) -> None:
        prep = asked.get("cluster")
        if prep:
            for note in prep.get("notes", []):  # why it moved (the second call's plan has no more to say)
                self.target.say(f"{self.target.host}: {note}")
            if prep["reused"]:
                self.sched = dict(prep["state"])
            else:
                self.sched = None
                self.ports = dict(prep["ports"])
                self.budget = int(prep["share"]["memory"])
                self.kind = prep.get("env_kind") or self.kind
                self.listen = prep.get("listen") or daskcmd.LOOPBACK
        lab = asked.get("jupyter")
        if lab:
            for note in lab.get("notes", []):
                self.target.say(f"{self.target.host}: {note}")
            if lab.get("taken"):
                self.target.say(f"{self.target.host}: JupyterLab for env {self.spec!r}: {lab['taken']} "
                                "Moving to another port.")
                self.lab_port = int(lab["port"]) if lab.get("port") else None  # None: the next call says
            else:
                self.lab_port = int(lab["port"])

    # -- the plan --------------------------------------------------------------------------
    def client_environment(self) -> dict[str, str]:
        source: dict[str, Any] = self.sched or dict(self.ports, scheduler_host=self.listen)
        host = str(source.get("scheduler_host") or daskcmd.LOOPBACK)
        return daskcmd.client_environment(int(source["scheduler_port"]), int(source["dashboard_port"]),
                                          tls.paths(self.snap["facts"]["home"]), host)

    def _window(self, name: str, lines: list[str], environment: dict[str, str] | None, keep: str,
                mark: str | None) -> dict[str, Any]:
        session = self.target.settings.session
        argv = [cmds.new_window(session, name, environment)]
        if mark is not None:
            argv.append(cmds.set_window_option(session, name, cmds.MARKER, mark))
        argv += [cmds.send_keys(session, name, line) for line in lines]
        return {"name": name, "keep": keep, "marker": mark, "kill": cmds.kill_window(session, name), "argv": argv}

    def cluster_spec(self) -> daskcmd.ClusterSpec:
        return cluster._spec(self.target, self.key, EnvPorts.from_dict(self.ports), self.options, self.budget,
                             self.listen)

    def payload(self) -> dict[str, Any]:
        target, session, env = self.target, self.target.settings.session, self.env
        locks = [f"cluster-{self.key}"] + [f"window-{session}-{name}" for name in
                                           (env_step.window_name(env), ipython.window_name(env))]
        prepare = {"key": self.key, "env": self.spec, "paths": layout.cluster_paths(self.server, self.key),
                   "plan": self.plan, "share": self.share, "interface": None}
        expect: dict[str, Any] = {"scheduler_host": self.listen, "budget": self.budget, "env_kind": self.kind}
        if self.sched:
            expect.update(scheduler_port=self.sched["scheduler_port"], dashboard_port=self.sched["dashboard_port"],
                          scheduler_host=self.sched.get("scheduler_host") or daskcmd.LOOPBACK)
        cluster_plan: dict[str, Any] = {"env": self.spec, "prepare": prepare, "expect": expect, "ports": self.ports}
        if self.ports:
            spec = self.cluster_spec()
            lines = daskcmd.window_lines(spec, cluster.activation(target, self.spec, self.kind))
            record = dict(daskcmd.record(spec, self.spec, self.budget), workers_on=[],
                          dashboard_problem=envs.dashboard_problem(self.spec, self.env_check.get("dashboard")))
            cluster_plan["window"] = self._window(cluster.window_name(self.key), lines, None, "never", None)
            cluster_plan["wait"] = {"key": self.key, "paths": prepare["paths"], "plan": self.plan,
                                    "workers": spec.workers, "seconds": cluster.WAIT_SECONDS, "record": record}
        else:
            cluster_plan["window"] = {"name": cluster.window_name(self.key)}
        variables = self.client_environment()
        out: dict[str, Any] = {
            "session": {"name": session, "has": cmds.has_session(session), "new": cmds.new_session(session)},
            "locks": locks, "tls": self.tls_files,
            "env": {"window": self._window(env_step.window_name(env), [env.activation()], None, "marker",
                                           env_step.window_mark(env))},
            "cluster": cluster_plan,
            "ipython": {"window": self._window(ipython.window_name(env), [ipython.launch_line(env)], variables,
                                               "busy", f"ipython:{env.location}"),
                        "seconds": ipython.START_SECONDS},
        }
        if self.jupyter:
            locks.append(f"window-{session}-{jupyter_step.window_name(env)}")
            directory = layout.jupyter_dir(self.server, self.key)
            proxy = env.has("jupyter_server_proxy")
            lab_env = through_jupyter(variables) if proxy else dict(variables)
            lab_env["JUPYTER_TOKEN_FILE"] = f"{directory}/token"
            command = jupyter_step.jupyter_command(self.lab_port, f"{directory}/jupyter.sock" if self.socket else None,
                                                   root=int(self.snap["facts"].get("uid", -1)) == 0,
                                                   config_dir=f"{directory}/config" if proxy else None)
            out["jupyter"] = {"key": self.key, "env": self.spec, "socket": self.socket, "port": self.lab_port,
                              "plan": self.plan, "seconds": jupyter_step.START_SECONDS,
                              "window": self._window(jupyter_step.window_name(env),
                                                     [f"{env.activation()} && {command}"], lab_env, "never",
                                                     f"jupyter:{env.location}")}
        return out


class Display:
    """The step lines of `up` (✓ name (time)), closed as the host's progress lines arrive."""

    def __init__(self, order: list[tuple[str, str, str]]) -> None:
        self.order = list(order)  # (event, name, label)
        self.done: set[str] = set()
        self.current: Any = None
        self._next()

    def _next(self) -> None:
        self.current = None
        if self.order:
            _, name, label = self.order[0]
            self.current = progress.step(name, label)
            self.current.__enter__()

    def close(self, event: str, lines: list[str], say: Callable[[str], None]) -> None:
        """Say a step's lines and close its line (and any before it); a step already closed says nothing."""
        if event in self.done:
            return
        for line in lines:
            say(line)
        while self.order:
            head = self.order.pop(0)[0]
            self.done.add(head)
            self.current.__exit__(None, None, None)
            self._next()
            if head == event:
                break

    def fail(self, exc: BaseException) -> None:
        if self.current is not None:
            with contextlib.suppress(BaseException):
                self.current.__exit__(type(exc), exc, exc.__traceback__)
            self.current = None


def run(target: Target, spec: str, snap: Snapshot, options: dict[str, Any], jupyter: bool, socket: bool,
        order: list[tuple[str, str]]) -> list[Service]:
    """Start what is missing in one streaming call (more only when the host moved a port); the services
    to forward (this env's just started, the others' from the snapshot)."""
    with _each_line_once(target):
        return _run(target, spec, snap, options, jupyter, socket, order)


@contextlib.contextmanager
def _each_line_once(target: Target) -> Iterator[None]:
    """The same note (a claims directory portal cannot trust, ...) is said once per `up`, though both the
    snapshot and the `up` call (and a second one after a re-plan) report it."""
    plain, said = target.say, set()

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            plain(line)

    target.say = once
    try:
        yield
    finally:
        target.say = plain


def _run(target: Target, spec: str, snap: Snapshot, options: dict[str, Any], jupyter: bool, socket: bool,
         order: list[tuple[str, str]]) -> list[Service]:
    planned = Plan(target, spec, snap, options, jupyter, socket)
    hostenv.require(target, planned.env, "IPython", "ipython")
    if jupyter:
        hostenv.require(target, planned.env, "jupyterlab", "jupyter")
    display = Display([("tmux", "tmux", order[0][1]), ("env", "env", order[1][1]),
                       ("cluster-starting", "cluster", "starting"), ("ipython", "ipython", ""),
                       *([("jupyter", "jupyter", "")] if jupyter else []), ("cluster-ready", "cluster", "ready")])
    try:
        for _ in range(REPLANS):
            result = target.link.helper_stream("up", planned.payload(), lambda e: _event(target, planned, display, e),
                                               timeout=cluster.WAIT_SECONDS + jupyter_step.START_SECONDS + 60)
            if not result.get("replan"):
                break
            planned.replan(result["replan"])
            if planned.tls_files:  # installed by the first call
                planned.tls_files = None
        else:
            raise PortError(f"the ports planned for env {spec!r} kept being taken while portal started it.",
                               host=target.host, hint="Stop what holds them, or run portal again later.")
    except BaseException as exc:
        display.fail(exc)
        raise
    state = result["cluster"]
    target.cache.cluster_ports[planned.key] = cluster.SchedulerPorts.of(state)
    mine = [cluster.describe_entry(state)]
    labs = [result["jupyter"]] if result.get("jupyter") else []
    clusters = mine + [cluster.describe_entry(c) for c in snap.get("clusters") or [] if c.get("key") != planned.key]
    jupyters = labs + [j for j in snap.get("jupyters") or [] if j.get("env_key") != planned.key]
    for line in not_forwarded(clusters, jupyters):
        target.say(f"{target.host}: {line}")
    return collect(clusters, jupyters)


def _event(target: Target, planned: Plan, display: Display, event: dict[str, Any]) -> None:
    """One progress line of the helper: what the step says, and its ✓."""
    host, name, spec = target.host, event["event"], planned.spec
    if name == "tls":
        status = event["status"]
        if planned.tls_files and planned.tls_files["replace"]:
            target.say(f"{host}: your TLS certificate had expired; made a new one in {status['dir']} "
                       "(clusters started with the old one are replaced).")
        elif status.get("installed"):
            target.say(f"{host}: made your TLS certificate in {status['dir']} (Dask accepts only it).")
    elif name == "tmux":
        display.close("tmux", tmux._said(target, bool(event["created"])), target.say)
    elif name == "env":
        state = "activated" if event["started"] else "already active, kept"
        display.close("env", env_step._said(target, planned.env, state), target.say)
    elif name == "cluster-starting":
        prep = event["prep"]
        lines = [f"{host}: {note}" for note in prep.get("notes", [])]
        if prep["reused"]:
            lines += cluster._reused(target, spec, prep["state"], planned.options)
        elif prep.get("was_recorded"):
            lines.append(f"{host}: the recorded cluster of env {spec} was not healthy; replacing it.")
        display.close("cluster-starting", lines, target.say)
    elif name == "jupyter-port":
        for note in event.get("notes", []):
            target.say(f"{host}: {note}")
    elif name == "ipython":
        state = "started" if event["started"] else "already running, kept"
        display.close("ipython", [ipython._said(target, planned.env, state, True)], target.say)
    elif name == "jupyter":
        entry = event.get("entry")
        if entry is None:
            return  # moved: the next call starts it
        if entry.get("started"):
            line = (f"{host}: JupyterLab for env {spec!r} started in window {jupyter_step.window_name(planned.env)}: "
                    f"{entry['url']}")
        else:
            line = jupyter_step._kept_line(target, planned.env, entry)
        display.close("jupyter", [line], target.say)
    elif name == "cluster-ready":
        state = event["state"]
        lines = []
        if not state.get("reused"):
            lines = [f"{host}: {note}" for note in state.get("notes", [])]
            lines.append(f"{host}: started Dask cluster for env {spec}: {cluster.summary(state)}.")
            lines += cluster._dashboard_lines(target, state)
        display.close("cluster-ready", lines, target.say)

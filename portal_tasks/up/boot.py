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
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

from .. import daskcmd, envs, hostenv, plan, progress, tls
from ..remote import tmux as cmds
from ..daskcmd import through_jupyter
from ..envs import Env
from ..errors import ClusterError, PortError, TmuxError
from ..plan import EnvPorts
from ..remote import hostpaths, slots
from ..link.base import Conversation, reported
from ..replies import Snapshot
from ..request import ClusterOptions
from ..runcache import SchedulerPorts
from ..services import Service, collect, not_forwarded
from ..target import Target
from ..parts import cluster, env as env_step, ipython, jobs as jobs_step, jupyter as jupyter_step, tmux

#: How often the plan is made again when the host gives other ports (each time someone took one).
REPLANS = 4


#: The parts of `up`'s host work, in order; the session always comes first.
PARTS = ("env", "cluster", "ipython", "jupyter")


def require(target: Target, spec: str | None, snap: Snapshot, parts: Sequence[str]) -> None:
    """One line, before anything starts, when the snapshot says the parts cannot be planned: tmux is
    missing, or the env (the env check's own error, as the helper reported it)."""
    if not snap["facts"].get("tmux"):
        raise TmuxError("tmux is not installed (or not on the PATH).", host=target.host,
                        hint="Ask the admins for tmux, or install it in ~/.local/bin.")
    failed = snap.get("env_failure")
    if parts and failed:
        raise reported(failed["kind"], failed["message"], target.host, failed.get("hint"))


class UpPlan:
    """What one call of the ``up`` verb is given for ``parts`` (of PARTS), and what the host changed of it
    (``replan``). "Plan" alone means the port plan (plan.py), which it carries as ``port_plan`` (the
    payload key ``plan``, as in every helper call)."""

    def __init__(self, target: Target, spec: str, snap: Snapshot, options: ClusterOptions, parts: Sequence[str],
                 socket: bool) -> None:
        self.target, self.spec, self.snap, self.options = target, spec, snap, options
        self.parts = tuple(p for p in PARTS if p in parts)
        self.jupyter, self.socket = "jupyter" in self.parts, socket
        target.cache.env_checks.setdefault(spec, snap["env"])  # type: ignore[arg-type]
        self.env: Env = hostenv.resolve(target, spec)
        self.socket = jupyter_step.on_socket(target, self.env, socket)
        self.env_check: dict[str, Any] = dict(snap["env"] or {})
        self.key = plan.env_key(spec)
        facts = snap["facts"]
        self.port_plan = plan.plan_payload(target.settings, facts["uid"])
        self.server = hostpaths.server_dir(facts["home"], facts["hostname"])
        self.ports: dict[str, Any] = slots.planned_ports(snap["ports"], self.key)
        target.cache.planned_ports[self.key] = dict(self.ports)
        if self.ports.get("http_ports") and "http" not in self.ports:
            self.ports["http"] = slots.span(self.ports["http_ports"])
        asked = cluster.share_request(target, options)
        self.share = asked
        self.budget = int(asked["memory"] if asked["memory"] is not None else snap["share"]["default_memory"])
        self.kind = self.env.kind
        self.interface: str | None = None
        self.listen = daskcmd.LOOPBACK
        if options.beyond_host:  # workers on other servers or in jobs dial scheduler_interface
            self.interface = target.settings.scheduler_interface
            where = snap.get("interface") or {}
            if "address" not in where:
                raise reported(where.get("kind", "ConfigError"), where.get("message", "scheduler_interface is not known "
                               "on this host."), target.host, where.get("hint"))
            self.listen = str(where["address"])
        running = next((c for c in snap.get("clusters") or [] if c.get("key") == self.key and c.get("healthy")), None)
        self.sched = dict(running) if running else None  # a healthy cluster: its ports, kept
        self.lab_port: int | None = None
        if self.jupyter and not self.socket:
            self.lab_port = int(self.ports.get("jupyter_port") or 0) or None
        self.tls_files: dict[str, Any] | None = None
        if "cluster" in self.parts:  # only a cluster needs the TLS files made now
            self.tls_files = tls.needed(snap["tls"], facts["user"], facts.get("hostname") or target.host)
            note = None if self.tls_files else tls.end_note(snap["tls"], target.host)
            if note:
                target.say(note)

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
        """Variables for IPython's and JupyterLab's windows: the running cluster's, else the planned ports'
        ({} while the block has none planned: the host plans them, and the plan is made again)."""
        source: dict[str, Any] = self.sched or dict(self.ports, scheduler_host=self.listen)
        if "scheduler_port" not in source:
            if "cluster" in self.parts:
                return {}
            raise ClusterError(f"no ports planned for env {self.spec} (your port block is full).", host=self.target.host,
                               hint="`portal ports` shows what holds them; `portal down --env OTHER` frees a slot.")
        host = str(source.get("scheduler_host") or daskcmd.LOOPBACK)
        return daskcmd.client_environment(int(source["scheduler_port"]), int(source["dashboard_port"]),
                                          tls.paths(self.snap["facts"]["home"]), host)

    def started(self, prep: dict[str, Any]) -> dict[str, Any]:
        """Where the env's cluster listens once the host prepared it (the workers beyond the host dial it); a
        kept one says ``reused`` (its worker jobs are not the `up` call's)."""
        if prep["reused"]:
            return {"key": self.key, **prep["state"], "reused": True}
        return {"key": self.key, "address": self.cluster_spec().address, "scheduler_host": self.listen, **prep["ports"]}

    def cluster_spec(self) -> daskcmd.ClusterSpec:
        return cluster._spec(self.target, self.key, EnvPorts.from_dict(self.ports), self.options, self.budget,
                             self.listen)

    def payload(self) -> dict[str, Any]:
        session = self.target.settings.session
        out: dict[str, Any] = {"session": cmds.session_plan(session, hostenv.session_environment(self.target)),
                               "locks": [], "tls": self.tls_files}
        for part in self.parts:
            getattr(self, f"_{part}")(out)
        return out

    def _lock(self, out: dict[str, Any], name: str) -> None:
        out["locks"].append(cmds.window_lock(self.target.settings.session, name))

    def _env(self, out: dict[str, Any]) -> None:
        name = env_step.window_name(self.env)
        self._lock(out, name)
        out["env"] = {"window": env_step.window(self.target.settings.session, self.env)}

    def _cluster(self, out: dict[str, Any]) -> None:
        out["locks"].append(cmds.cluster_lock(self.key))
        prepare = {"key": self.key, "env": self.spec, "paths": hostpaths.cluster_paths(self.server, self.key),
                   "plan": self.port_plan, "share": self.share, "interface": self.interface}
        expect: dict[str, Any] = {"scheduler_host": self.listen, "budget": self.budget, "env_kind": self.kind}
        if self.sched:
            expect.update(scheduler_port=self.sched["scheduler_port"], dashboard_port=self.sched["dashboard_port"],
                          scheduler_host=self.sched.get("scheduler_host") or daskcmd.LOOPBACK)
        part: dict[str, Any] = {"env": self.spec, "prepare": prepare, "expect": expect, "ports": self.ports}
        if self.ports:
            spec = self.cluster_spec()
            env = self.env if self.kind == self.env.kind else replace(self.env, kind=self.kind, location=self.spec)
            lines = daskcmd.window_lines(spec, env.activation())
            record = dict(daskcmd.record(spec, self.spec, self.budget), workers_on=list(self.options.workers_on),
                          dashboard_problem=envs.dashboard_problem(self.spec, self.env_check.get("dashboard")))
            part["window"] = cluster.window(self.target.settings.session, self.key, lines)
            part["wait"] = {"key": self.key, "paths": prepare["paths"], "plan": self.port_plan,
                            "workers": spec.workers, "seconds": cluster.WAIT_SECONDS, "record": record}
            if self.options.jobs:  # submitted as the scheduler boots, waited for in the same call
                where = {"key": self.key, "address": spec.address, "scheduler_host": self.listen, **self.ports}
                part["jobs"] = {"submit": jobs_step.submit_payload(self.target, where, self.spec, self.options.jobs,
                                                                   self.options.job),
                                "wait": jobs_step.wait_payload(self.target, self.key)}
        else:
            part["window"] = {"name": cluster.window_name(self.key)}
        out["cluster"] = part

    def _ipython(self, out: dict[str, Any]) -> None:
        name = ipython.window_name(self.env)
        self._lock(out, name)
        # IPython starts beside a cluster this call starts: its client waits for the scheduler as long as `up` does
        wait = cluster.WAIT_SECONDS if "cluster" in self.parts else ipython.CLIENT_SECONDS
        out["ipython"] = {"window": ipython.window(self.target.settings.session, self.env, self.client_environment(),
                                                   wait),
                          "seconds": ipython.START_SECONDS}

    def _jupyter(self, out: dict[str, Any]) -> None:
        env, name = self.env, jupyter_step.window_name(self.env)
        self._lock(out, name)
        variables = self.client_environment()
        directory = hostpaths.jupyter_dir(self.server, self.key)
        proxy = env.has("jupyter_server_proxy")
        # a jupyter-server-proxy with a known hole is not used for the link: the dashboard's own forward
        lab_env = through_jupyter(variables) if proxy and env.proxy_safe() and variables else dict(variables)
        lab_env["JUPYTER_TOKEN_FILE"] = f"{directory}/token"
        command = jupyter_step.jupyter_command(self.lab_port, f"{directory}/jupyter.sock" if self.socket else None,
                                               root=int(self.snap["facts"].get("uid", -1)) == 0,
                                               config_dir=f"{directory}/config" if proxy else None, shell=env.shell)
        out["jupyter"] = {"key": self.key, "env": self.spec, "socket": self.socket, "port": self.lab_port,
                          "plan": self.port_plan, "seconds": jupyter_step.START_SECONDS,
                          "window": jupyter_step.window(self.target.settings.session, env, command, lab_env)}


class Display:
    """The step lines of `up` (✓ name (time)), closed in their order as the host's progress lines arrive.

    A line that arrives before the steps ahead of it are done (the cluster ready while JupyterLab still
    boots) waits, with what it says, until they are."""

    def __init__(self, order: list[tuple[str, str, str]], shown: bool = True) -> None:
        self.order = list(order)  # (event, name, label)
        self.shown = shown  # False: the lines steps say, no step lines (a single step)
        self.done: set[str] = set()
        self.waiting: dict[str, list[str]] = {}
        self.current: Any = None
        self._next()

    def _next(self) -> None:
        self.current = None
        if self.order:
            _, name, label = self.order[0]
            self.current = progress.step(name, label) if self.shown else contextlib.nullcontext()
            self.current.__enter__()

    def close(self, event: str, lines: list[str], say: Callable[[str], None]) -> None:
        """Say a step's lines and close its line, or keep them until the steps before it are closed; a step
        already closed (or waiting) says nothing more."""
        if event in self.done or event in self.waiting or not any(e == event for e, _, _ in self.order):
            return
        self.waiting[event] = lines
        while self.order and self.order[0][0] in self.waiting:
            head = self.order.pop(0)[0]
            for line in self.waiting.pop(head):
                say(line)
            self.done.add(head)
            self.current.__exit__(None, None, None)
            self._next()

    def drop(self, event: str) -> None:
        """A step still ahead that this call will not do after all (its line is not shown)."""
        self.order = [step for step in self.order if step[0] != event or step is self.order[0]]

    def finish(self, say: Callable[[str], None]) -> None:
        """Close what is still open once the host answered (its lines, if any, said)."""
        while self.order:
            head = self.order.pop(0)[0]
            for line in self.waiting.pop(head, []):
                say(line)
            self.done.add(head)
            self.current.__exit__(None, None, None)
            self._next()

    def fail(self, exc: BaseException) -> None:
        if self.current is not None:
            with contextlib.suppress(BaseException):
                self.current.__exit__(type(exc), exc, exc.__traceback__)
            self.current = None


@dataclass
class Booted:
    """What one cold start brought up: the env, its cluster and JupyterLab (when asked), every service to forward."""

    env: Env
    created: bool = False  # the session was made now
    cluster: dict[str, Any] | None = None
    jupyter: dict[str, Any] | None = None
    services: list[Service] = field(default_factory=list)


@dataclass
class Hooks:
    """What the caller does while the host still boots: ``started`` once the host prepared the cluster (where
    it listens: worker jobs are submitted then), ``ready`` for each service as soon as the host has seen it
    listen as the user's (its forward is made then)."""

    started: Callable[[dict[str, Any]], None] | None = None
    ready: Callable[[Service], None] | None = None


def run(target: Target, spec: str, snap: Snapshot, options: ClusterOptions, parts: Sequence[str], socket: bool = False,
        labels: dict[str, str] | None = None, hooks: Hooks | None = None, call: Conversation | None = None) -> Booted:
    """Start what is missing of ``parts`` (the session always) in one streaming call (more only when the
    host moved a port). ``labels``: the step lines' details (``tmux``, ``env``); None: no step lines.
    ``call``: the snapshot's call, still open: the plan goes in it (no second session)."""
    with _each_line_once(target):
        return _run(target, spec, snap, options, parts, socket, labels, hooks or Hooks(), call)


def session_only(target: Target) -> bool:
    """Ensure the user's session (the `tmux` step): the ``up`` verb with nothing but the session; True when made now."""
    session = target.settings.session
    payload = {"session": cmds.session_plan(session, hostenv.session_environment(target)), "locks": []}
    created: list[bool] = []
    target.link.helper_stream("up", payload, lambda e: created.append(bool(e.get("created")))
                              if e["event"] == "tmux" else None, timeout=60)
    for line in tmux._said(target, bool(created and created[0])):
        target.say(line)
    return bool(created and created[0])


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


def _run(target: Target, spec: str, snap: Snapshot, options: ClusterOptions, parts: Sequence[str], socket: bool,
         shown: dict[str, str] | None, hooks: Hooks, call: Conversation | None) -> Booted:
    labels = shown or {}
    require(target, spec, snap, parts)
    planned = UpPlan(target, spec, snap, options, parts, socket)
    if "ipython" in planned.parts:
        hostenv.require(target, planned.env, "IPython", "ipython")
    if planned.jupyter:
        hostenv.require(target, planned.env, "jupyterlab", "jupyter")
    # the order the user reads them in (IPython and JupyterLab boot beside the cluster; the lines of a step that
    # is done before the steps ahead of it wait for them)
    jobs = [("jobs", "jobs", f"{options.jobs} on the batch system")] \
        if "cluster" in planned.parts and options.jobs and planned.ports else []  # waited for in the same call
    steps = {"env": [("env", "env", labels.get("env", spec))],
             "cluster": [("cluster-starting", "cluster", "starting"), ("cluster-ready", "cluster", "ready")],
             "ipython": [*jobs, ("ipython", "ipython", "")], "jupyter": [("jupyter", "jupyter", "")]}
    order = [("tmux", "tmux", labels.get("tmux", f"session {target.settings.session}"))]
    order += [step for part in planned.parts for step in steps[part]]
    if jobs and "ipython" not in planned.parts:
        order += jobs
    display = Display(order, shown=shown is not None)
    booted = Booted(planned.env)
    try:
        for _ in range(REPLANS):
            on_event: Callable[[dict[str, Any]], None] = lambda e: _event(target, planned, display, e, booted, hooks)
            if call is not None:  # the first plan rides the snapshot's call
                first, call = call, None
                result = first.send(planned.payload(), on_event)
            else:
                result = target.link.helper_stream("up", planned.payload(), on_event,
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
    display.finish(target.say)
    mine, labs = [], []
    if result.get("cluster"):
        booted.cluster = state = result["cluster"]
        target.cache.cluster_ports[planned.key] = SchedulerPorts.of(state)
        mine = [cluster.describe_entry(state)]
    if result.get("jupyter"):
        booted.jupyter = result["jupyter"]
        labs = [result["jupyter"]]
    clusters = mine + [cluster.describe_entry(c) for c in snap.get("clusters") or []
                       if not (mine and c.get("key") == planned.key)]
    jupyters = labs + [j for j in snap.get("jupyters") or [] if not (labs and j.get("env_key") == planned.key)]
    for line in not_forwarded(clusters, jupyters):
        target.say(f"{target.host}: {line}")
    booted.services = collect(clusters, jupyters)
    return booted


def _event(target: Target, planned: UpPlan, display: Display, event: dict[str, Any], booted: Booted,
           hooks: Hooks) -> None:
    """One progress line of the helper: what the step says, and its ✓."""
    host, name, spec = target.host, event["event"], planned.spec
    if name == "tls":
        for line in tls.installed_lines(event["status"], bool(planned.tls_files and planned.tls_files["replace"]), host):
            target.say(line)
    elif name == "tmux":
        booted.created = bool(event["created"])
        said = tmux._said(target, booted.created)
        if not display.shown and not booted.created:
            said = []  # a step on its own says its own part, and the session only when it made it
        display.close("tmux", said, target.say)
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
        if prep["reused"]:
            display.drop("jobs")  # a kept cluster's jobs are made beside the call (up/command.py)
        if hooks.started is not None:
            hooks.started(planned.started(prep))
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
            line = (f"{host}: JupyterLab for env {spec!r} started in window {jupyter_step.window_name(planned.env)}"
                    f"{jupyter_step.where(entry)}")
        else:
            line = jupyter_step._kept_line(target, planned.env, entry)
        display.close("jupyter", [line], target.say)
        _ready(hooks, collect([], [entry]))
    elif name == "jobs":
        lines = [jobs_step.submitted_line(target, spec, planned.options.jobs, event["submitted"]),
                 f"{host}: {jobs_step.summary(event['now']['jobs'])}."]
        display.close("jobs", lines, target.say)
    elif name == "cluster-ready":
        state = event["state"]
        lines = []
        if not state.get("reused"):
            lines = [f"{host}: {note}" for note in state.get("notes", [])]
            lines.append(f"{host}: started Dask cluster for env {spec}: "
                         f"{cluster.summary(state, jobs_asked=bool(planned.options.jobs))}.")
            lines += cluster._dashboard_lines(target, state)
        display.close("cluster-ready", lines, target.say)
        _ready(hooks, collect([cluster.describe_entry(state)], []))


def _ready(hooks: Hooks, services: list[Service]) -> None:
    if hooks.ready is not None:
        for service in services:
            hooks.ready(service)

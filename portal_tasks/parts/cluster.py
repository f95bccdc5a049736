"""`cluster`: start or reuse the user's one Dask cluster for an env (TLS, 127.0.0.1, the user's ports).

For the other steps: :func:`client_environment` (variables for IPython/Jupyter windows),
:func:`describe` (``status --json``).
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from .. import daskcmd, envs, hostenv, plan, tls
from ..config import DEFAULTS
from ..remote import tmux
from ..errors import ClusterError, UsageError
from ..link.openssh import explain_ssh
from ..plan import EnvPorts
from ..remote import common, hostpaths, slots
from ..replies import ClusterEntry, ClusterState, PortsReport
from ..request import ClusterAsk, ClusterOptions
from ..runcache import SchedulerPorts
from ..seen import Seen
from ..target import Explained, Target
from . import jobs as jobs_step

WAIT_SECONDS = 90


def validate(target: Target, ask: ClusterAsk) -> ClusterOptions:
    """The options checked (bad values raise UsageError before anything starts); settings fill the gaps."""
    s = target.settings
    asked = str(s.memory if ask.memory in (None, "") else ask.memory)
    jobs, job = jobs_step.validate(target, ask.jobs, ask.job)
    workers = plan.parse_count("workers", s.workers if ask.workers is None else ask.workers, 0, plan.MAX_WORKERS)
    options = ClusterOptions(
        workers=workers,
        threads=plan.parse_count("threads", s.threads if ask.threads is None else ask.threads, 1, 1024),
        memory=None if asked == plan.FAIR else asked,  # None: the fair share the host gives
        workers_on=tuple(plan.parse_hosts("workers-on", ask.workers_on, target.host)),
        jobs=jobs, job=job, node_workers=0 if workers else _node_workers(s.workers))
    if not options.workers and not options.beyond_host:
        given = "--workers 0" if ask.workers is not None else "workers: 0 (portal.yaml)"
        raise UsageError(f"{given} leaves the cluster no workers: none on {target.host}, and no --jobs or --workers-on "
                         "to bring any.", host=target.host,
                         hint=f"Give --workers 1 to {plan.MAX_WORKERS}, or keep 0 and add --jobs N (workers as batch "
                              "jobs) or --workers-on HOSTS (workers on other servers).")
    if options.workers_on and not s.scheduler_interface:
        raise UsageError(f"--workers-on needs the scheduler to listen where {', '.join(options.workers_on)} reach it.",
                         host=target.host, hint=f"Set scheduler_interface for {target.host} in portal.yaml (under hosts:), "
                                                "e.g. the interface `ip -4 addr` shows on that network.")
    if options.jobs and not s.scheduler_interface:
        raise UsageError("--jobs needs the scheduler to listen where the compute nodes reach it.", host=target.host,
                         hint=f"Set scheduler_interface for {target.host} in portal.yaml (under hosts:), "
                              "e.g. the interface `ip -4 addr` shows on the compute nodes' network.")
    if options.memory is not None:
        plan.parse_memory(options.memory)
    return options


def _node_workers(configured: int) -> int:
    """Workers on each of --workers-on's servers when the host has none: the ``workers`` setting, else its default."""
    return plan.parse_count("workers", configured or DEFAULTS["workers"], 1, plan.MAX_WORKERS)


def share_request(target: Target, options: ClusterOptions) -> dict[str, Any]:
    """What the host registers for the cluster: memory in bytes (None: its fair share), cores, workers. With no
    workers on the host (``--workers 0``), nothing: the scheduler alone holds no worker's memory."""
    if not options.workers:
        return {"memory": 0, "cores": 0, "workers": 0}
    memory = options.memory
    asked = None if memory is None else plan.memory_budget(memory, target.facts().get("memory"))
    return {"memory": asked, "cores": options.workers * options.threads, "workers": options.workers}


def env_spec(target: Target, env: str | None) -> str:
    """The env as given; on localhost with none given, the env portal itself runs in."""
    return hostenv.choose(target, env)


def activation(target: Target, spec: str, kind: str | None = None) -> list[str]:
    """The lines activating env ``spec`` in a window of ``target`` (a host the env was not checked on)."""
    guessed = envs.guess_env(spec, hostenv.found_manager(target), target.facts().get("shell"), target.settings.modules)
    if kind and kind != guessed.kind:
        guessed = envs.Env(spec=spec, kind=kind, location=spec, manager=guessed.manager, shell=guessed.shell,
                           loads=guessed.loads)
    return guessed.activation()


def window_name(key: str) -> str:
    return tmux.cluster_window(key)


def window(session: str, key: str, lines: list[str]) -> dict[str, Any]:
    """The cluster's window as the helper opens it (a window left from an earlier cluster is replaced)."""
    return tmux.window_plan(session, window_name(key), lines)


def _spec(target: Target, key: str, ports: EnvPorts, options: ClusterOptions, budget: int,
          listen: str = daskcmd.LOOPBACK) -> daskcmd.ClusterSpec:
    facts = target.facts()
    limit = plan.split_memory(budget, options.workers)
    spec = daskcmd.ClusterSpec(key=key, mark=hostpaths.cluster_mark(key, facts["hostname"]), ports=ports,
                               tls=tls.paths(facts["home"]), paths=hostpaths.cluster_paths(target.server_dir(), key),
                               workers=options.workers, threads=options.threads, memory_limit=limit,
                               listen=listen)
    return spec


def summary(state: ClusterState, jobs_asked: bool = False) -> str:
    """One line about a cluster's state: address, dashboard port, workers, memory, pid; ``jobs_asked``: worker
    jobs are on their way (submitted by the same `up`, not yet in the state)."""
    if not state["workers"]:
        return (f"{state['address']}, dashboard port {state['dashboard_port']}, the scheduler alone on this host "
                f"(its workers: {_elsewhere(state, jobs_asked)}; scheduler pid {state['scheduler_pid']})")
    return (f"{state['address']}, dashboard port {state['dashboard_port']}, {state.get('workers_running', state['workers'])} "
            f"workers x {state['threads']} threads, {plan.format_bytes(state['memory_limit'])} each "
            f"(scheduler pid {state['scheduler_pid']})")


def alone_text(entry: Mapping[str, Any]) -> str | None:
    """For `status` and the page: ``no workers on the host, 2 joined from its 2 jobs`` for a cluster whose
    scheduler runs alone on the host (``--workers 0``); None for one with workers there."""
    if entry.get("workers"):
        return None
    jobs = entry.get("jobs") or []
    joined = sum(len(job.get("workers") or []) for job in jobs)
    count = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}"
    return "no workers on the host" + (f", {joined} joined from its {count}" if jobs else "")


def _elsewhere(state: ClusterState, jobs_asked: bool = False) -> str:
    """Where the workers of a cluster without workers on its host are: batch jobs, other servers."""
    nodes = list(state.get("workers_on") or [])
    return " and ".join(([f"on {', '.join(nodes)}"] if nodes else []) + (
        ["batch jobs"] if state.get("jobs") or jobs_asked or not nodes else []))


def _reused(target: Target, spec_text: str, state: ClusterState, options: ClusterOptions) -> list[str]:
    """What `cluster` says when it keeps the env's healthy cluster."""
    lines = [f"{target.host}: reusing your Dask cluster for env {spec_text}: {summary(state)}.",
             *_dashboard_lines(target, state)]
    if (state["workers"], state["threads"]) != (options.workers, options.threads):
        runs = (f"{state['workers']} workers x {state['threads']} threads" if state["workers"]
                else "no workers on this host")
        lines.append(f"{target.host}: (it runs {runs}; `portal down --env {spec_text}` first to change that.)")
    return lines


def kept(target: Target, seen: Seen) -> list[str] | None:
    """What `cluster` says when the snapshot shows the env's cluster healthy, its dashboard the
    scheduler's own; None when it is not."""
    state = seen.cluster()
    if not (state and state.get("healthy") and state.get("dashboard_ok")) or seen.options is None:
        return None
    return _reused(target, seen.env.spec, state, seen.options)


def _dashboard_lines(target: Target, state: ClusterState) -> list[str]:
    if state.get("dashboard_problem"):
        return [f"{target.host}: {state['dashboard_problem']} Then `portal down --env {state['env']}` and up again."]
    if state.get("dashboard_open"):
        return [f"{target.host}: the dashboard of this cluster answers anyone on the server (an earlier portal started "
                f"it, before dashboards answered their owner only); `portal down --env {state['env']}` and up again "
                "closes it."]
    return []


def explain(target: Target, env: str | None = None, ask: ClusterAsk = ClusterAsk()) -> Explained:
    """The commands typed on the host: TLS files (once), activate the env, scheduler in the background, workers
    (and with --jobs, the worker jobs dask-jobqueue writes, each given to ``sbatch``)."""
    options = validate(target, ask)
    spec_text = env_spec(target, env)
    facts = target.facts()
    key = plan.env_key(spec_text)
    ports = planned_ports(target, key)
    if not ports:
        raise UsageError(f"your port block has no free slot for env {spec_text}.", host=target.host)
    asked = share_request(target, options)["memory"]
    listen = daskcmd.LOOPBACK
    if options.beyond_host:  # where the scheduler will listen (read-only)
        listen = target.link.helper("interface-address", {"name": target.settings.scheduler_interface})["address"]
    spec = _spec(target, key, EnvPorts.from_dict(ports), options,
                 asked if asked is not None else share_report(target, key)["default_memory"], listen)
    lines = tls.explain_lines(spec.tls, facts["user"])
    lines += preload_lines(spec.paths)
    lines.append(tmux.ensure_session_line(target.settings.session, hostenv.session_environment(target, ask=True)))
    lines += tmux.explain_window(window(target.settings.session, key,
                                                 daskcmd.window_lines(spec, hostenv.resolve_for_explain(target, spec_text).activation())))
    return Explained(remote=lines) + jobs_step.explain(target, spec_text, key, ports, options.jobs, options.job,
                                                       spec.address)


def preload_lines(paths: dict[str, str]) -> list[str]:
    """The lines that install portal's preload (HTTP servers that answer their owner only) at ``paths["preload"]``
    by hand, as the helper does before it starts the scheduler or workers."""
    if not paths.get("preload"):
        return []
    return daskcmd.preload_install_lines(paths["preload"], common.preload_source())


def planned_ports(target: Target, key: str) -> dict[str, Any]:
    """The env's recorded ports, else the ones it would get ({} when its block is full); read-only,
    asked once per run."""
    if key not in target.cache.planned_ports:
        payload = {"plan": plan.plan_payload(target.settings, target.facts()["uid"]), "key": key}
        report: PortsReport = target.link.helper("ports-report", payload)
        target.cache.planned_ports[key] = slots.planned_ports(report, key)
    return dict(target.cache.planned_ports[key])


def share_report(target: Target, key: str | None = None) -> dict[str, Any]:
    """The server's share (read-only): caps, who holds how much, what is free, the default for env ``key``."""
    payload: dict[str, Any] = {"plan": plan.plan_payload(target.settings, target.facts()["uid"])}
    if key:
        payload["key"] = key
    return dict(target.link.helper("share-report", payload))


def explain_forwards(target: Target, env: str | None = None, jupyter: bool = False) -> list[str]:
    """The laptop's ``ssh -L`` line for the env's dashboard (and JupyterLab) on the same port numbers."""
    if target.settings.is_local:
        return []
    key = plan.env_key(env_spec(target, env))
    ports = planned_ports(target, key)
    wanted = [ports.get("dashboard_port")] + ([ports.get("jupyter_port")] if jupyter else [])
    specs = [arg for p in wanted if p for arg in ("-L", f"127.0.0.1:{p}:127.0.0.1:{p}")]
    return [shlex.join([*explain_ssh(target.settings), "-f", "-N", *specs, target.host])] if specs else []


def client_environment(target: Target, env: str | None) -> dict[str, str]:
    """Variables for a window of ``env`` so a plain ``Client()`` reaches the user's cluster of that env."""
    facts = target.facts()
    key = plan.env_key(env_spec(target, env))
    known = target.cache.cluster_ports.get(key)  # this run's `cluster` step already knows them
    running = {} if known else {c["env_key"]: c for c in describe(target)}
    if known:
        ports = known
    elif key in running:
        ports = SchedulerPorts.of(running[key])
    else:
        planned = planned_ports(target, key)
        if not planned:
            raise ClusterError(f"no ports planned for env {env}.", host=target.host, hint="Run `portal cluster` first.")
        ports = SchedulerPorts.of(planned)
    return daskcmd.client_environment(ports.scheduler_port, ports.dashboard_port,
                                      tls.paths(facts["home"]), ports.scheduler_host or daskcmd.LOOPBACK)


def describe(target: Target) -> list[ClusterEntry]:
    """Each recorded cluster of the user: env, address, dashboard port, workers, memory, pid, healthy."""
    return [describe_entry(state) for state in target.link.helper("cluster-list", {})]


def describe_entry(state: ClusterState) -> ClusterEntry:
    """One ``cluster-list`` state as :func:`describe` shows it."""
    return {
        "env": state["env"], "env_key": state["key"], "address": state.get("address"),
        "scheduler_port": state["scheduler_port"], "dashboard_port": state["dashboard_port"],
        "workers": state["workers"], "workers_running": state["workers_running"], "threads": state["threads"],
        "memory_budget": state["memory_budget"], "memory_limit": state["memory_limit"],
        "pid": state["scheduler_pid"], "workers_pid": state["workers_pid"], "healthy": state["healthy"],
        "window": window_name(state["key"]), "dashboard_problem": state.get("dashboard_problem"),
        "dashboard_ok": state.get("dashboard_ok", False), "dashboard_unowned": state.get("dashboard_unowned"),
        "dashboard_open": bool(state.get("dashboard_open")),
        "scheduler_host": state.get("scheduler_host") or daskcmd.LOOPBACK, "workers_on": state.get("workers_on") or [],
        "jobs": state.get("jobs") or [],
        "outside_block": state.get("outside_block") or [],  # its listeners outside the user's port block
    }


"""`up`: tmux → env → cluster → IPython (→ Jupyter) → forward → browse → attach."""

from __future__ import annotations

import os
import sys

from typing import Any

from .. import progress
from ..link.base import Conversation, helper_archive
from ..replies import Snapshot
from ..request import ClusterOptions, UpRequest
from ..services import Service
from ..target import Explained, Target
from . import warm as warm_step
from ..commands import forward
from ..parts import cluster


def run(target: Target, request: UpRequest) -> None:
    options = cluster.validate(target, request.cluster)  # bad input: nothing started
    env, jupyter, socket, attach = request.env, request.jupyter, request.socket, request.attach
    spec, steps = cluster.env_spec(target, env), _steps(target, env, jupyter)
    with progress.step("connect", target.host):
        if target.link.connecting():  # ssh still logs in: meanwhile, what a cold start plans with
            _cold_imports()
        helper_archive()  # built once per helper version (on a new laptop: 0.08 s), also while ssh logs in
        target.link.connected()  # begun by the task (connect_soon) while this was imported
        # one round trip says whether everything already runs, and brings what a cold start plans with;
        # the call stays open for that plan
        snap, call = warm_step.snapshot(target, spec, interface=options.beyond_host)
    try:
        warm = None
        if not options.beyond_host:  # the other servers and the queue are asked on the cold path
            warm = warm_step.decide(target, spec, snap, [name for name, _ in steps],
                                    jupyter=jupyter, socket=socket, options=options)
        early = forward.Early(target)
        if warm is not None:
            call.close()  # nothing to do on the host
            cluster.share_request(target, options)  # as the cold path checks
            for name, label in steps:
                with progress.step(name, label):
                    for line in warm.kept[name]:
                        target.say(line)
            services = warm.services
        else:
            services = _cold(target, spec, snap, options, [name for name, _ in steps[1:]], socket, dict(steps), early,
                             call)
    finally:
        call.close()
    with progress.step("forward"):
        made = forward.forward_all(target, services, early)
    progress.table([(f.service.name, f.service.remote, f.url) for f in made], target.host)
    if request.browser:
        with progress.step("browse"):
            from ..commands import browse

            browse.open_urls([f.url for f in made])
    if request.watch or (made and not target.link.persistent_forwards):
        if not target.link.persistent_forwards:
            print(f"{target.link.name} forwards live while portal runs; attach in another terminal with: "
                  f"{attach_line(target)}; Ctrl-C ends the forwards.", flush=True)
            attach = False
        forward.keep_alive(target)
    if attach:
        if not sys.stdin.isatty():
            print(f"not attaching (no terminal); attach with: {attach_line(target)}")
            return
        argv = target.link.attach_argv(target.settings.session)
        os.execvp(argv[0], argv)


def _cold_imports() -> None:
    """The modules of a cold start (a warm `up` needs none of them), imported while the laptop waits anyway."""
    from .. import tls
    from ..parts import jobs, nodes  # noqa: F401
    from . import boot  # noqa: F401

    tls.load()


def _steps(target: Target, env: str | None, jupyter: bool) -> list[tuple[str, str]]:
    """The progress lines of `up`'s host steps, in order."""
    steps = [("tmux", f"session {target.settings.session}"), ("env", env or ""), ("cluster", ""), ("ipython", "")]
    return steps + ([("jupyter", "")] if jupyter else [])


def _cold(target: Target, spec: str, snap: Snapshot, options: ClusterOptions, parts: list[str], socket: bool,
          labels: dict[str, str], early: forward.Early, call: Conversation) -> list[Service]:
    """Start what is missing in one host call, the worker jobs of a new cluster too (submitted as the scheduler
    boots, waited for last); the workers on other servers after it. A kept cluster's jobs are made as many as
    asked beside the call (their own helper call, as soon as the host said where the cluster listens)."""
    from ..parts import jobs as jobs_step, nodes  # the cold path's (a warm `up` imports neither)
    from . import boot

    queueing: list[jobs_step.Background] = []

    def started(where: dict[str, Any]) -> None:
        if options.jobs and not queueing and where.get("reused"):
            queueing.append(jobs_step.Background(target, where, spec, options.jobs, options.job))

    try:
        booted = boot.run(target, spec, snap, options, parts, socket, labels, boot.Hooks(started, early.add), call)
    finally:
        for background in queueing:
            background.join()
    state: Any = booted.cluster
    if options.workers_on:
        with progress.step("workers", ", ".join(options.workers_on)):
            nodes.start(target, state, spec, options)
    if queueing:
        with progress.step("jobs", f"{options.jobs} on the batch system"):
            queueing[0].result()
            jobs_step.wait(target, state, spec)
    return booted.services


def explain(target: Target, request: UpRequest) -> Explained:
    from ..parts import env as env_step, ipython, jupyter as jupyter_step, tmux

    env = request.env
    options = cluster.validate(target, request.cluster)
    parts = tmux.explain(target) + env_step.explain(target, env=env) + cluster.explain(target, env, request.cluster)
    parts = parts + ipython.explain(target, env=env)
    if request.jupyter:
        parts = parts + jupyter_step.explain(target, env=env, socket=request.socket)
    parts.remote = _once(parts.remote, "tmux has-session")  # each step ensures the session; say it once
    from ..parts import nodes

    parts = parts + nodes.explain(target, cluster.env_spec(target, env), options)
    local = cluster.explain_forwards(target, env=env, jupyter=request.jupyter)
    if request.attach:
        local.append(attach_line(target))
    return parts + Explained(local=local)


def _once(lines: list[str], prefix: str) -> list[str]:
    """Lines with later repeats of a line starting with prefix dropped."""
    kept: list[str] = []
    for line in lines:
        if not (line.startswith(prefix) and line in kept):
            kept.append(line)
    return kept


def attach_line(target: Target) -> str:
    """What a person types to attach (plain ssh, without portal's control-socket options)."""
    return target.link.attach_hint(target.settings.session)

"""`up`: tmux → env → cluster → IPython (→ Jupyter) → forward → browse → attach."""

from __future__ import annotations

import os
import sys

from typing import Any

from .. import hostenv, progress
from ..target import Explained, Target
from . import boot, browse, cluster, forward, jobs as jobs_step, nodes, warm as warm_step


def run(target: Target, env: str | None = None, jupyter: bool = False, socket: bool = False, attach: bool = True,
        browser: bool = True, workers: str | None = None, threads: str | None = None, memory: str | None = None,
        watch: bool = False, workers_on: str | None = None, jobs: str | None = None,
        job: dict[str, Any] | None = None) -> None:
    options = cluster.validate(target, workers=workers, threads=threads, memory=memory,
                               workers_on=workers_on, jobs=jobs, job=job)  # bad input: nothing started
    warm, steps, snap = None, _steps(target, env, jupyter), None
    with progress.step("connect", target.host):
        target.link.connect()
        if target.settings.is_local:
            target.facts()
        else:  # one round trip says whether everything already runs (and brings the facts)
            spec = cluster.env_spec(target, env)
            snap = warm_step.snapshot(target, spec)
            warm = warm_step.decide(target, spec, snap, [name for name, _ in steps],
                                    jupyter=jupyter, socket=socket, options=options)
            if cluster.beyond_host(options):  # the other servers and the queue are asked on the full path
                warm = None
            if warm is not None:
                cluster.share_request(target, options)  # as the full path checks
    if warm is not None:
        for name, label in steps:
            with progress.step(name, label):
                for line in warm.kept[name]:
                    target.say(line)
        services = warm.services
    elif snap is not None and boot.usable(target, snap, options):  # the host does it all in one call
        services = boot.run(target, cluster.env_spec(target, env), snap, options, jupyter, socket, steps)
    else:
        _start(target, env, jupyter, socket, options)
        services = None
    with progress.step("forward"):
        made = forward.forward_all(target, services)
    progress.table([(f.service.name, f.service.remote, f.url) for f in made], target.host)
    if browser:
        with progress.step("browse"):
            browse.open_urls([f.url for f in made])
    if watch or (made and not target.link.persistent_forwards):
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


def _steps(target: Target, env: str | None, jupyter: bool) -> list[tuple[str, str]]:
    """The progress lines of `up`'s host steps, in order."""
    steps = [("tmux", f"session {target.settings.session}"), ("env", env or ""), ("cluster", ""), ("ipython", "")]
    return steps + ([("jupyter", "")] if jupyter else [])


def _start(target: Target, env: str | None, jupyter: bool, socket: bool, options: dict[str, Any]) -> None:
    """The full path: each step starts what is missing and keeps what runs.

    The cluster is set going before IPython (and Jupyter) and waited for after them, so Dask boots
    while their windows open; their clients connect once the scheduler answers.
    """
    from . import env as env_step, ipython, jupyter as jupyter_step, tmux

    hostenv.resolve(target, env)  # a missing env is one line before anything starts (the answer is kept)
    with progress.step("tmux", f"session {target.settings.session}"):
        tmux.run(target)
    with progress.step("env", env or ""):
        env_step.run(target, env=env)
    booting = cluster.start(target, env=env, **options)
    queueing: jobs_step.Background | None = None
    try:
        with progress.step("cluster", "starting"):
            planned = next(booting)
        if options["jobs"]:  # the jobs wait in the queue while Dask boots; their workers dial until it answers
            queueing = jobs_step.Background(target, planned, cluster.env_spec(target, env), options)
        with progress.step("ipython"):
            ipython.run(target, env=env)
        if jupyter:
            with progress.step("jupyter"):
                jupyter_step.run(target, env=env, socket=socket)
        with progress.step("cluster", "ready"):
            state = cluster.finish(booting)
    finally:
        booting.close()  # releases the host-side lock if a step in between failed
        if queueing is not None:
            queueing.join()
    if options["workers_on"]:
        with progress.step("workers", ", ".join(options["workers_on"])):
            nodes.start(target, state, cluster.env_spec(target, env), options)
    if queueing is not None:
        with progress.step("jobs", f"{options['jobs']} on the batch system"):
            queueing.result()
            jobs_step.wait(target, state, cluster.env_spec(target, env))


def explain(target: Target, env: str | None = None, jupyter: bool = False, socket: bool = False, attach: bool = True,
            browser: bool = True, workers: str | None = None, threads: str | None = None, memory: str | None = None,
            watch: bool = False, workers_on: str | None = None, jobs: str | None = None,
            job: dict[str, Any] | None = None) -> Explained:
    from . import env as env_step, ipython, jupyter as jupyter_step, tmux

    options = cluster.validate(target, workers=workers, threads=threads, memory=memory, workers_on=workers_on,
                               jobs=jobs, job=job)
    parts = tmux.explain(target) + env_step.explain(target, env=env) + cluster.explain(target, env=env, **options)
    parts = parts + ipython.explain(target, env=env)
    if jupyter:
        parts = parts + jupyter_step.explain(target, env=env, socket=socket)
    parts.remote = _once(parts.remote, "tmux has-session")  # each step ensures the session; say it once
    parts = parts + nodes.explain(target, cluster.env_spec(target, env), options)
    local = cluster.explain_forwards(target, env=env, jupyter=jupyter)
    if attach:
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

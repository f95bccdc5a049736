"""Warm `up`: one helper call (``snapshot``) tells whether everything asked for already runs.

When it does, `up` says what it keeps and goes straight to forward, browse and attach; when
anything is missing or unhealthy, `up` takes the full path (tmux, env, cluster, IPython, Jupyter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import hostenv, plan
from ..envs import Env
from ..services import Service, from_cluster, from_jupyter
from ..target import Target
from ..tmux_commands import SHELLS
from . import cluster as cluster_step


@dataclass(frozen=True)
class Warm:
    """What already runs for this `up`: the env, its cluster, its Jupyter server, and every service to forward."""

    env: Env
    cluster: dict[str, Any]
    jupyter: dict[str, Any] | None
    services: list[Service]


def snapshot(target: Target, spec: str) -> dict[str, Any]:
    """The host's answer to ``snapshot``; also fills the target's facts (so no separate probe)."""
    snap: dict[str, Any] = target.link.helper("snapshot", {"session": target.settings.session, "env": spec,
                                                           "manager": target.settings.env_manager})
    target.cache.facts = snap["facts"]
    return snap


def _busy(window: dict[str, str] | None) -> bool:
    return bool(window and window.get("command")) and window["command"] not in SHELLS  # type: ignore[index]


def decide(target: Target, spec: str, snap: dict[str, Any], jupyter: bool, socket: bool) -> Warm | None:
    """A Warm when the session, the env window, a healthy cluster, IPython (and Jupyter) all run; else None."""
    windows, checked = snap.get("windows"), snap.get("env")
    if not checked or windows is None or not snap["facts"].get("tmux"):
        return None
    env = hostenv.from_info(target, {"name": spec, **checked})  # type: ignore[typeddict-item]
    key = plan.env_key(spec)
    cluster = next((c for c in snap.get("clusters") or [] if c.get("key") == key), None)
    lab = next((j for j in snap.get("jupyters") or [] if j.get("env_key") == env.key), None)
    if not (env.has("IPython") and cluster and cluster.get("healthy") and cluster.get("dashboard_ok")):
        return None
    if (windows.get(f"env-{env.key}") or {}).get("marker") != f"env:{env.location}":
        return None
    if not _busy(windows.get(f"ipython-{env.key}")):
        return None
    if jupyter and not (lab and lab.get("healthy") and bool(lab.get("socket")) == socket):
        return None
    found = [from_cluster(cluster_step.describe_entry(c)) for c in snap.get("clusters") or []]
    found += [from_jupyter(j) for j in snap.get("jupyters") or []]
    return Warm(env, cluster, lab if jupyter else None, [s for s in found if s is not None])


def say_kept(target: Target, warm: Warm, step: str, options: dict[str, Any]) -> None:
    """The lines the full path prints for ``step`` when it keeps what runs (same words)."""
    host, env, session = target.host, warm.env, target.settings.session
    if step == "tmux":
        target.say(f"{host}: tmux session {session!r} already running, reused.")
        target.say(f"attach: {target.link.attach_hint(session)}")
    elif step == "env":
        target.say(f"{host}: env {env.spec!r} ({env.kind}, {env.prefix}) already active, kept "
                   f"in window env-{env.key} of session {session!r}.")
        missing = [m for m in ("IPython", "distributed") if not env.has(m)]
        if missing:
            target.say(f"{host}: note: env {env.spec!r} lacks {', '.join(missing)}.")
    elif step == "cluster":
        state = warm.cluster
        target.say(f"{host}: reusing your Dask cluster for env {env.spec}: {cluster_step.summary(state)}.")
        cluster_step.say_dashboard(target, state)
        if (state["workers"], state["threads"]) != (options["workers"], options["threads"]):
            target.say(f"{host}: (it runs {state['workers']} workers x {state['threads']} threads; "
                       f"`portal down --env {env.spec}` first to change that.)")
    elif step == "ipython":
        target.say(f"{host}: IPython in env {env.spec!r} already running, kept in window ipython-{env.key} "
                   "with the cluster's address.")
    elif step == "jupyter" and warm.jupyter is not None:
        target.say(f"{host}: JupyterLab for env {env.spec!r} already running, kept: {warm.jupyter['url']}")

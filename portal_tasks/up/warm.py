"""Warm `up`: one helper call (``snapshot``) tells whether everything asked for already runs.

Each host step of `up` reads the snapshot in its own ``kept`` and says what it keeps (or None when
its part does not run). When every step keeps, `up` prints their lines and goes straight to forward,
browse and attach; when any part is missing or unhealthy, `up` takes the full path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .. import hostenv
from ..envs import Env
from ..link.base import Conversation
from ..replies import Snapshot
from ..request import ClusterOptions
from ..seen import Seen
from ..services import Service, collect
from ..target import Target
from ..parts import cluster, env, ipython, jupyter, tmux
from ..parts.jupyter import on_socket as jupyter_on_socket

#: The host steps of `up` by name; each has ``kept(target, seen) -> list[str] | None``.
STEPS: dict[str, ModuleType] = {"tmux": tmux, "env": env, "cluster": cluster, "ipython": ipython, "jupyter": jupyter}


@dataclass(frozen=True)
class Warm:
    """What already runs for this `up`: the env, what each step says it keeps, and every service to forward."""

    env: Env
    kept: dict[str, list[str]]
    services: list[Service]


def snapshot(target: Target, spec: str | None, *, interface: bool = False) -> tuple[Snapshot, Conversation]:
    """The host's answer to ``snapshot`` (it also fills the run's facts: no separate probe), and the call
    still open for the ``up`` plan made from it (``Conversation.send``), or to be closed when nothing is to
    be done. ``interface``: also where scheduler_interface is (workers beyond the host dial it)."""
    from .. import plan

    planned = dict(plan.plan_payload(target.settings, 0), first=None)  # the host knows its uid: its own block
    payload: dict[str, Any] = {"session": target.settings.session, "env": spec, "manager": target.settings.env_manager,
                               "modules": list(target.settings.modules),
                               "plan": planned, "key": plan.env_key(spec) if spec else None}
    if interface:
        payload["interface"] = target.settings.scheduler_interface
    call = target.link.converse("snapshot-up", payload)
    try:
        snap: Snapshot = call.answer()
    except BaseException:
        call.close()
        raise
    target.cache.facts = snap["facts"]
    return snap, call


def decide(target: Target, spec: str, snap: Snapshot, steps: Sequence[str], *, options: ClusterOptions,
           jupyter: bool = False, socket: bool = False) -> Warm | None:
    """A Warm when each of ``steps`` finds its part running in the snapshot; else None (the full path)."""
    checked = snap.get("env")
    if not checked:
        return None
    resolved = hostenv.from_info(target, {"name": spec, **checked})
    seen = Seen(snap, resolved, jupyter=jupyter, socket=jupyter_on_socket(target, resolved, socket), options=options)
    kept: dict[str, list[str]] = {}
    for name in steps:
        lines: list[str] | None = STEPS[name].kept(target, seen)
        if lines is None:
            return None
        kept[name] = lines
    clusters = [cluster.describe_entry(c) for c in snap.get("clusters") or []]
    return Warm(seen.env, kept, collect(clusters, snap.get("jupyters") or []))

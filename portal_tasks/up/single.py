"""The host steps on their own (`portal tmux`, `env`, `cluster`, `ipython`, `jupyter`), on `up`'s path:
one ``snapshot-up`` call: the snapshot, then in the same call the plan carrying only that step's part (``tmux``: only the session).

A single step starts its part and nothing else; the parts it builds on (the session, for IPython the
cluster's address) come as `up` would plan them, from the same snapshot."""

from __future__ import annotations

from typing import Any

from ..request import ClusterAsk
from ..target import Target
from . import boot, warm
from ..parts import cluster


def run(target: Target, part: str, env: str | None = None, socket: bool = False, ask: ClusterAsk = ClusterAsk()) -> Any:
    """Run step ``part``: True/False (session made now) for ``tmux``; the Env for ``env`` and ``ipython``;
    the cluster's state for ``cluster``; JupyterLab's entry for ``jupyter``."""
    options = cluster.validate(target, ask)  # bad input: nothing runs
    target.link.connect()
    if part == "tmux":
        return boot.session_only(target)
    spec = cluster.env_spec(target, env)
    snap, call = warm.snapshot(target, spec)
    try:
        booted = boot.run(target, spec, snap, options, [part], socket, labels=None, call=call)  # its lines only
    finally:
        call.close()
    return {"env": booted.env, "ipython": booted.env, "cluster": booted.cluster, "jupyter": booted.jupyter}[part]

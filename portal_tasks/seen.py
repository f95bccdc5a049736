"""What one ``snapshot`` shows of an `up` (pure): the env's windows, cluster and Jupyter server, beside
what the `up` asks for. Each host step reads it in its ``kept`` to tell whether its part already runs."""

from __future__ import annotations

from dataclasses import dataclass

from .envs import Env
from .replies import ClusterState, JupyterState, Snapshot, Window
from .request import ClusterOptions


@dataclass(frozen=True)
class Seen:
    snap: Snapshot
    env: Env
    #: `up --jupyter` / `--socket`
    jupyter: bool = False
    socket: bool = False
    #: the checked cluster options of the `up` (None: none asked, as for a single part)
    options: ClusterOptions | None = None

    @property
    def session(self) -> bool:
        """True when the session exists (and tmux with it)."""
        return self.snap.get("windows") is not None and bool(self.snap["facts"].get("tmux"))

    def window(self, name: str) -> Window | None:
        """The session's window ``name``, or None."""
        return (self.snap.get("windows") or {}).get(name)

    def cluster(self) -> ClusterState | None:
        """The env's recorded cluster, or None."""
        return next((c for c in self.snap.get("clusters") or [] if c.get("key") == self.env.key), None)

    def lab(self) -> JupyterState | None:
        """The env's recorded Jupyter server, or None."""
        return next((j for j in self.snap.get("jupyters") or [] if j.get("env_key") == self.env.key), None)

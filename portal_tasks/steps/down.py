"""`down`: stop what `up` started for this user (or one env), cancel forwards. Nothing of anyone else."""

from __future__ import annotations

import contextlib
import shlex

from .. import state
from ..envs import env_key
from ..errors import PortalError
from ..target import Explained, Target
from ..tmux_commands import kill_window

STEP_WINDOWS = ("ipython", "jupyter", "env", "cluster")


def _windows_for(target: Target, key: str | None, keep_cluster: bool) -> list[str]:
    from .status import sessions

    mine = next((s for s in sessions(target) if s["name"] == target.settings.session), None)
    if mine is None:
        return []
    prefixes = [p for p in STEP_WINDOWS if not (keep_cluster and p == "cluster")]
    names = [w["name"] for w in mine["windows"]]
    return [n for n in names if any(n == f"{p}-{key}" if key else n.startswith(f"{p}-") for p in prefixes)]


def run(target: Target, env: str | None = None, keep_cluster: bool = False) -> None:
    from . import cluster, jupyter

    key = env_key(env) if env else None
    stopped: list[str] = []
    for entry in jupyter.describe(target):
        if key is None or entry["env_key"] == key:
            jupyter.stop(target, entry["env"])
            stopped.append(f"jupyter {entry['env']}")
    if not keep_cluster:
        for entry in cluster.describe(target):
            if key is None or entry["env_key"] == key:
                cluster.stop(target, entry["env"])
                stopped.append(f"cluster {entry['env']}")
    for window in _windows_for(target, key, keep_cluster):
        target.link.run(kill_window(target.settings.session, window))
        stopped.append(f"window {window}")
    if key is None and not keep_cluster:
        from .status import sessions

        mine = next((s for s in sessions(target) if s["name"] == target.settings.session), None)
        if mine is not None and all(w["name"] == "main" or w["command"] in ("bash", "sh", "zsh") for w in mine["windows"]):
            target.link.run(["tmux", "kill-session", "-t", f"={target.settings.session}"])
            stopped.append(f"session {target.settings.session}")
    with state.laptop_lock(target.host):
        forwards = state.load_forwards(target.host)
        for name, entry in list(forwards.items()):
            if key is None or name.endswith(f"-{key}") and (not keep_cluster or not name.startswith("dashboard")):
                with contextlib.suppress(PortalError):
                    target.link.cancel_forward(int(entry["local_port"]), str(entry["remote"]))
                del forwards[name]
                stopped.append(f"forward {name}")
        state.save_forwards(target.host, forwards)
    if not forwards and key is None:
        target.link.close()
    print(f"{target.host}: stopped " + (", ".join(stopped) if stopped else "nothing (nothing of yours ran)"))


def explain(target: Target, env: str | None = None, keep_cluster: bool = False) -> Explained:
    key = env_key(env) if env else "ENV"
    remote = []
    prefixes = [p for p in STEP_WINDOWS if not (keep_cluster and p == "cluster")]
    for p in prefixes:
        remote.append(shlex.join(kill_window(target.settings.session, f"{p}-{key}")) + " 2>/dev/null")
    local = [f"ssh -O exit {target.host}    # ends the master connection and its forwards"]
    return Explained(remote=remote, local=local)

"""`down`: stop what `up` started for this user (or one env), cancel forwards. Nothing of anyone else."""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

from .. import state
from ..envs import env_key
from ..errors import PortalError
from ..target import Explained, Target
from ..link.openssh import explain_ssh
from ..tmux_commands import SHELLS, kill_window

STEP_WINDOWS = ("ipython", "jupyter", "env", "cluster")


def _session(target: Target) -> dict[str, Any] | None:
    from .status import sessions

    return next((s for s in sessions(target) if s["name"] == target.settings.session), None)


def _step_windows(windows: list[dict[str, Any]], key: str | None, keep_cluster: bool) -> list[str]:
    """The names of portal's step windows (of one env, or all) among the session's windows."""
    prefixes = [p for p in STEP_WINDOWS if not (keep_cluster and p == "cluster")]
    names = [w["name"] for w in windows]
    return [n for n in names if any(n == f"{p}-{key}" if key else n.startswith(f"{p}-") for p in prefixes)]


def run(target: Target, env: str | None = None, keep_cluster: bool = False) -> None:
    from . import cluster, jobs, jupyter, nodes

    key = env_key(env) if env else None
    stopped: list[str] = []
    for lab in jupyter.describe(target):
        if key is None or lab["env_key"] == key:
            jupyter.stop(target, lab["env"])
            stopped.append(f"jupyter {lab['env']}")
    if not keep_cluster:
        for entry in cluster.describe(target):
            if key is None or entry["env_key"] == key:
                stopped += jobs.stop(target, entry)
                stopped += nodes.stop(target, entry)
                cluster.stop(target, entry["env"])
                stopped.append(f"cluster {entry['env']}")
    session = _session(target)
    windows = session["windows"] if session else []
    killed = _step_windows(windows, key, keep_cluster)
    for window in killed:
        target.link.run(kill_window(target.settings.session, window))
        stopped.append(f"window {window}")
    left = [w for w in windows if w["name"] not in killed]
    if session is not None and key is None and not keep_cluster and all(w["command"] in SHELLS for w in left):
        # only idle shells remain (e.g. the first window): the session was portal's, it goes too
        target.link.run(["tmux", "kill-session", "-t", f"={target.settings.session}"])
        stopped.append(f"session {target.settings.session}")
    with state.laptop_lock(target.host):
        forwards = state.load_forwards(target.host)
        for name, remembered in list(forwards.items()):
            ours = key is None or name.endswith(f"-{key}")
            kept = keep_cluster and name.startswith("dashboard")  # the cluster runs on: keep its dashboard
            if ours and not kept:
                with contextlib.suppress(PortalError):
                    target.link.cancel_forward(int(remembered["local_port"]), str(remembered["remote"]))
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
    exit_master = shlex.join([*explain_ssh(target.settings), "-O", "exit", target.host])
    local = [] if target.settings.is_local else [f"{exit_master}    # ends the master connection and its forwards"]
    return Explained(remote=remote, local=local)

"""Verb ``down``: stop what `up` started for this user on this server (one env, or all) in one call.

{session, key (None: every env), env (as given), keep_cluster, plan} -> {stopped, clusters, survivors[, facts]}

In order: the env's recorded Jupyter servers (``jupyter.stop``); unless ``keep_cluster``, each recorded
cluster's worker jobs (``jobs.cancel``), its processes (``cluster.stop``) and its window, under the
``cluster-KEY`` locks (taken first, in sorted order, as ``up`` takes them); then portal's step windows
of the env that are left; then the session, when only shells at their prompt remain in it (all envs,
cluster included). The functions called signal only processes of this user.

``stopped`` is what went, in the words ``down`` prints (``jupyter a``, ``cluster a``, ``window
ipython-a``, ``session portal``). Workers on other servers are the laptop's to stop (it reaches those
servers): ``clusters`` lists the stopped clusters that have some, ``at`` is where their words go in
``stopped``, and ``facts`` (this server's probe) comes along for them. A cluster whose processes did
not end is ``survivors`` and nothing after it is touched.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from . import cluster, jobs, jupyter, slots, snapshot, system, tmux
from .common import locked
from .up import run_tmux


def _labs(key: str | None) -> list[str]:
    """Words for the env's (or every) recorded Jupyter server, each stopped."""
    stopped: list[str] = []
    for lab in jupyter.listing({}):
        if key is None or lab.get("env_key") == key:
            jupyter.stop({"key": lab["env_key"]})
            stopped.append("jupyter %s" % lab["env"])
    return stopped


def _clusters(key: str | None, env: str | None) -> list[dict[str, Any]]:
    """The recorded clusters to stop: {key, env, workers_on}. With ``key``, a damaged record of it too
    (no listing shows one; its marked processes are still found and stopped)."""
    found = [{"key": rec["key"], "env": rec["env"], "workers_on": list(rec.get("workers_on") or [])}
             for rec in cluster.records() if key is None or rec["key"] == key]
    if key is not None and not found and cluster.read_record(key)[1]:
        found.append({"key": key, "env": env or key, "workers_on": []})
    return found


def _stop_clusters(session: str, found: list[dict[str, Any]], plan: dict[str, Any], lock_timeout: float,
                   result: dict[str, Any]) -> bool:
    """Jobs, processes and window of each cluster, under their locks; False when one left survivors."""
    with contextlib.ExitStack() as held:
        for name in sorted(tmux.cluster_lock(c["key"]) for c in found):
            held.enter_context(locked(name, lock_timeout))
        for entry in found:
            cancelled = jobs.cancel({"key": entry["key"]})["cancelled"]
            if cancelled:
                result["stopped"].append("jobs %s of %s" % (", ".join(cancelled), entry["env"]))
            if entry["workers_on"]:
                result["clusters"].append({"env": entry["env"], "env_key": entry["key"],
                                           "workers_on": entry["workers_on"], "at": len(result["stopped"])})
            done = cluster.stop({"key": entry["key"], "plan": plan})
            run_tmux(tmux.kill_window(session, tmux.cluster_window(entry["key"])))  # gone already is as good
            if done["survivors"]:
                result["survivors"] = {"env": entry["env"], "env_key": entry["key"], "pids": done["survivors"]}
                return False
            result["stopped"].append("cluster %s" % entry["env"])
    return True


def _windows(session: str, key: str | None, keep_cluster: bool) -> list[str]:
    """Words for portal's step windows left in the session, each killed, and the session when only shells remain."""
    shown = snapshot.windows(session)
    if shown is None:
        return []
    killed = tmux.step_windows(shown, key, keep_cluster)
    for name in killed:
        run_tmux(tmux.kill_window(session, name))
    stopped = ["window %s" % name for name in killed]
    if key is None and not keep_cluster and tmux.only_idle(w["command"] for n, w in shown.items() if n not in killed):
        run_tmux(tmux.kill_session(session))  # gone with its last window already is as good
        stopped.append("session %s" % session)
    return stopped


def down(payload: dict[str, Any]) -> dict[str, Any]:
    session, key, keep_cluster = payload["session"], payload.get("key"), bool(payload.get("keep_cluster"))
    plan = dict(payload["plan"])
    if plan.get("first") is None:  # the laptop leaves the user's own block to this side (it knows the uid)
        plan["first"] = slots.block_index(os.getuid(), int(plan["slots"]))
    result: dict[str, Any] = {"stopped": _labs(key), "clusters": [], "survivors": None}
    found = [] if keep_cluster else _clusters(key, payload.get("env"))
    done = _stop_clusters(session, found, plan, float(payload.get("lock_timeout", 120)), result) if found else True
    if done:
        result["stopped"] += _windows(session, key, keep_cluster)
    if result["clusters"]:  # the laptop stops their workers on other servers: it names this one to them
        result["facts"] = system.probe({})
    return result


VERBS = {"down": down}

"""Verb ``snapshot``: everything warm ``up`` needs to know, in one call (one round trip).

{session, env, manager[, plan, key, interface]} -> {facts, env (or env_error, env_failure), windows,
clusters, jupyters[, ports, share, tls, interface]}: the probe, the env check, the session's windows with their foreground command
and portal marker (None without the session), and every recorded cluster and Jupyter server of the
user with health. With ``plan`` (the port plan's settings; ``first`` None: this user's own block)
and the env's ``key`` it also brings what the laptop needs to plan a cold `up` without asking
again: the env's ports (``ports-report``), the share's default for it (``share-report``) and the
TLS files' status (``tls-status``). With ``sessions`` (``status``) also every tmux session of the
user with its windows.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from . import cluster, envcheck, interfaces, jupyter, ports, share, slots, system, tls
from .common import Failure

#: tmux list-windows format: name, foreground command, portal's marker (tab-separated).
WINDOW_FORMAT = "#{window_name}\t#{pane_current_command}\t#{@portal}"


def windows(session: str) -> dict[str, dict[str, str]] | None:
    """{window name: {"command", "marker"}} of the session, or None when it does not exist (or no tmux)."""
    argv = ["tmux", "-u", "list-windows", "-t", "=" + session, "-F", WINDOW_FORMAT]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15,
                             env=dict(os.environ, LC_ALL="C.UTF-8"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found: dict[str, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        name, _, rest = line.partition("\t")
        command, _, marker = rest.partition("\t")
        found.setdefault(name, {"command": command.lstrip("-"), "marker": marker})
    return found


#: tmux list-windows -a format for `status`: session, window, foreground command, pane pid (tab-separated).
SESSIONS_FORMAT = "#{session_name}\t#{window_name}\t#{pane_current_command}\t#{pane_pid}"


def sessions() -> list[dict[str, Any]]:
    """Every tmux session of the user with its windows (for ``status``): [{name, windows: [...]}]."""
    argv = ["tmux", "-u", "list-windows", "-a", "-F", SESSIONS_FORMAT]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15, env=dict(os.environ, LC_ALL="C.UTF-8"))
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: dict[str, dict[str, Any]] = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        name, window, command, pid = parts
        entry = found.setdefault(name, {"name": name, "windows": []})
        entry["windows"].append({"name": window, "command": command, "pid": int(pid) if pid.isdigit() else None})
    return list(found.values())


def snapshot(payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"facts": system.probe({})}
    try:
        result["env"] = envcheck.env_check({"env": payload.get("env"), "manager": payload.get("manager"),
                                             "modules": payload.get("modules")})
    except Failure as exc:
        result["env"], result["env_error"] = None, exc.message
        result["env_failure"] = {"message": exc.message, "kind": exc.kind, "hint": exc.hint}
    result["windows"] = windows(payload.get("session") or "portal") if result["facts"].get("tmux") else None
    result["clusters"] = cluster.describe({})
    result["jupyters"] = jupyter.listing({})
    if payload.get("plan"):
        plan = dict(payload["plan"])
        if plan.get("first") is None:
            plan["first"] = slots.block_index(os.getuid(), int(plan["slots"]))
        key = payload.get("key")
        result["ports"] = ports.report({"plan": plan, "key": key})
        result["share"] = share.report({"plan": plan, "key": key})
        result["tls"] = tls.tls_status({})
    if payload.get("interface"):  # where a scheduler for workers beyond this host would listen
        try:
            result["interface"] = {"address": interfaces.interface_address(payload["interface"])}
        except Failure as exc:
            result["interface"] = {"message": exc.message, "kind": exc.kind, "hint": exc.hint}
    if payload.get("sessions"):  # `status`: every session of the user, not only portal's
        result["sessions"] = sessions() if result["facts"].get("tmux") else []
    return result


VERBS = {"snapshot": snapshot}

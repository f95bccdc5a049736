"""Verb ``snapshot``: everything warm ``up`` needs to know, in one call (one round trip).

{session, env, manager} -> {facts, env (or env_error), windows, clusters, jupyters}: the probe,
the env check, the session's windows with their foreground command and portal marker (None
without the session), and every recorded cluster and Jupyter server of the user with health.
"""

import os
import subprocess

from . import cluster, envcheck, jupyter, system
from .common import Failure

#: tmux list-windows format: name, foreground command, portal's marker (tab-separated).
WINDOW_FORMAT = "#{window_name}\t#{pane_current_command}\t#{@portal}"


def windows(session):
    """{window name: {"command", "marker"}} of the session, or None when it does not exist (or no tmux)."""
    argv = ["tmux", "-u", "list-windows", "-t", "=" + session, "-F", WINDOW_FORMAT]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15,
                             env=dict(os.environ, LC_ALL="C.UTF-8"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found = {}
    for line in out.stdout.splitlines():
        name, _, rest = line.partition("\t")
        command, _, marker = rest.partition("\t")
        found.setdefault(name, {"command": command.lstrip("-"), "marker": marker})
    return found


def snapshot(payload):
    result = {"facts": system.probe({})}
    try:
        result["env"] = envcheck.env_check({"env": payload.get("env"), "manager": payload.get("manager")})
    except Failure as exc:
        result["env"], result["env_error"] = None, exc.message
    result["windows"] = windows(payload.get("session") or "portal") if result["facts"].get("tmux") else None
    result["clusters"] = cluster.describe({})
    result["jupyters"] = jupyter.listing({})
    return result


VERBS = {"snapshot": snapshot}

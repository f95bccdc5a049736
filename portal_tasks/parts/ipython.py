"""Step `ipython`: IPython in ENV in window ``ipython-KEY``, cluster variables in the window, ``client`` ready."""

from __future__ import annotations

import json
from typing import Any
import shlex

from .. import hostenv
from ..remote import tmux as cmds
from ..envs import Env
from ..seen import Seen
from ..target import Explained, Target
from ..remote.tmux import runs_program
from . import cluster as cluster_step

#: Run by ``ipython -i -c``: ``client`` connects to the user's cluster when the window knows its
#: address (no LocalCluster otherwise), waiting up to SECONDS for its scheduler; a cluster that is down
#: gives one line, not a traceback.
CLIENT_SOURCE = """import os
try:
    from dask.distributed import Client
    client = Client(timeout=SECONDS) if os.environ.get("DASK_SCHEDULER_ADDRESS") else None
except Exception as exc:
    client = None
    print("portal: no Dask client yet (" + type(exc).__name__ + ": " + str(exc) + ")")"""
START_SECONDS = 30.0
#: how long ``client`` waits for a scheduler that runs already (IPython started on its own)
CLIENT_SECONDS = 10


def ipython_command(with_client: bool, client_seconds: int = CLIENT_SECONDS) -> str:
    """The IPython command line; with_client makes ``client`` ready (None when no cluster is known), waiting
    up to client_seconds for the scheduler."""
    source = CLIENT_SOURCE.replace("SECONDS", str(int(client_seconds)))
    code = f"exec({json.dumps(source)})"  # one line: the newlines stay escaped inside the literal
    return shlex.join(["ipython", "-i", "-c", code]) if with_client else "ipython"


def window_name(env: Env) -> str:
    return cmds.step_window("ipython", env.key)


def launch_lines(env: Env, client_seconds: int = CLIENT_SECONDS) -> list[str]:
    """Activation, then IPython only if it worked: IPython never starts outside the env."""
    return env.launch(ipython_command(env.has('distributed'), client_seconds))


def window(session: str, env: Env, variables: dict[str, str], client_seconds: int = CLIENT_SECONDS) -> dict[str, Any]:
    """IPython's window as the helper opens it (kept while a program runs in it), the cluster's variables in it;
    its client waits up to client_seconds for the scheduler (as long as `up` waits for a cluster it starts)."""
    return cmds.window_plan(session, window_name(env), launch_lines(env, client_seconds), variables, "busy",
                            f"ipython:{env.location}")


def _said(target: Target, env: Env, state: str, with_cluster: bool) -> str:
    cluster = "with the cluster's address" if with_cluster else "(no cluster known yet)"
    return f"{target.host}: IPython in env {env.spec!r} {state} in window {window_name(env)} {cluster}."


def kept(target: Target, seen: Seen) -> list[str] | None:
    """What `run` says when the snapshot shows IPython running in the env's window; None when it does not."""
    window = seen.window(window_name(seen.env))
    if not (seen.env.has("IPython") and window and runs_program(window.get("command", ""))):
        return None
    return [_said(target, seen.env, "already running, kept", with_cluster=True)]


def explain(target: Target, env: str | None = None) -> Explained:
    resolved = hostenv.resolve_for_explain(target, env)
    session = target.settings.session
    variables = cluster_step.client_environment(target, resolved.spec)
    return Explained(remote=[cmds.ensure_session_line(session, hostenv.session_environment(target, ask=True)),
                             *cmds.explain_window(window(session, resolved, variables))])

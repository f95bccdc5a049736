"""Step `jupyter`: JupyterLab for ENV in window ``jupyter-KEY`` on its planned port (or a unix socket).

The token is portal's own (``jupyter/KEY/token`` in the server's state directory, 0600, new for each start),
handed to the server as JUPYTER_TOKEN_FILE so it never shows on a command line; the URL comes from portal's state.
A port someone else grabs before the server binds it moves the server within the block (bounded).
"""

from __future__ import annotations

import shlex
from typing import Any

from .. import hostenv, plan
from ..remote import tmux as cmds
from ..envs import Env, shell_family
from ..errors import PortalError
from ..remote import hostpaths, slots
from ..replies import JupyterState
from ..seen import Seen
from ..target import Explained, Target
from . import cluster as cluster_step

START_SECONDS = 90.0


#: Runs JupyterLab with portal's config directory first on JUPYTER_CONFIG_PATH, from any shell (argv: the
#: directory, then the command): fish and tcsh have no ``${VAR:+...}``.
CONFIG_PATH_SH = 'd=$1; shift; JUPYTER_CONFIG_PATH=$d${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH} exec "$@"'


def jupyter_command(port: int | None = None, socket: str | None = None, *, root: bool = False,
                    config_dir: str | None = None, shell: str | None = None) -> str:
    """The JupyterLab command line: loopback only, no browser, no silent move to another port.

    ``config_dir`` goes first on JUPYTER_CONFIG_PATH: portal's limits for jupyter-server-proxy (its
    one setting); everything else still comes from the user's own Jupyter config."""
    argv = ["jupyter", "lab", "--no-browser", *(["--allow-root"] if root else [])]
    if socket:
        argv += [f"--ServerApp.sock={socket}", "--ServerApp.sock_mode=0600"]
    else:
        argv += ["--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
    if config_dir and shell_family(shell) in ("fish", "csh"):
        return shlex.join(["sh", "-c", CONFIG_PATH_SH, "portal-jupyter", config_dir, *argv])
    if config_dir:
        return f"JUPYTER_CONFIG_PATH={shlex.quote(config_dir)}${{JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}} " + \
            shlex.join(argv)
    return shlex.join(argv)


def on_socket(target: Target, env: Env, asked: bool) -> bool:
    """JupyterLab listens on a Unix socket: asked (the default), its jupyter_server can (1.9+), and a forward
    carries it to the browser (portal on the host itself forwards nothing: a browser there needs the port)."""
    return asked and env.lab_socket() and not target.settings.is_local


def _root(target: Target) -> bool:
    """Jupyter refuses to run as root without --allow-root (containers, the localhost demo)."""
    try:
        return int(target.facts().get("uid", -1)) == 0
    except PortalError:
        return False


def window_name(env: Env) -> str:
    return cmds.step_window("jupyter", env.key)


def window(session: str, env: Env, command: str, variables: dict[str, str]) -> dict[str, Any]:
    """JupyterLab's window as the helper opens it (always afresh: a server that answered was kept before)."""
    return cmds.window_plan(session, window_name(env), env.launch(command), variables, "never",
                            f"jupyter:{env.location}")


def planned_port(target: Target, env: Env) -> int:
    """The env's Jupyter port from the port plan, read only (for --explain; `up` claims it on the host)."""
    ports = cluster_step.planned_ports(target, env.key)
    return int(ports["jupyter_port"]) if "jupyter_port" in ports else fallback_port(target)


def fallback_port(target: Target) -> int:
    """The Jupyter port of the first slot of the user's block, for --explain when the plan has none (a full
    block) or the host cannot be asked (without the uid: the plan's first block)."""
    try:
        index = slots.block_index(int(target.facts()["uid"]), target.settings.slots)
    except PortalError:
        index = 0
    return plan.block_for(target.settings, index).start + int(slots.LAYOUT["jupyter_port"])


def _healthy(entry: JupyterState | None) -> bool:
    return bool(entry and entry.get("healthy"))


def where(entry: JupyterState) -> str:
    """The end of a line saying where the server answers: on a Unix socket no browser opens, the socket and
    the command that makes a browser URL of it (no token: the forward's URL carries it); else ``: URL``."""
    if entry.get("socket"):
        return f", on its Unix socket {entry['socket']} (`portal forward` makes a browser URL of it)"
    return f": {entry['url']}"


def _kept_line(target: Target, env: Env, entry: JupyterState) -> str:
    return f"{target.host}: JupyterLab for env {env.spec!r} already running, kept{where(entry)}"


def kept(target: Target, seen: Seen) -> list[str] | None:
    """What `run` says when the snapshot shows the env's JupyterLab healthy, on a socket as asked
    (or on a port); None when it does not run. Nothing to say when `up` did not ask for it."""
    if not seen.jupyter:
        return []
    lab = seen.lab()
    if not (lab and _healthy(lab) and bool(lab.get("socket")) == seen.socket):
        return None
    return [_kept_line(target, seen.env, lab)]


def describe(target: Target) -> list[JupyterState]:
    """Every Jupyter server portal recorded for this user on the host.

    Each entry: env, env_key, port (or None), socket (or None), token, url_path, url (on the
    host), healthy, pid.
    """
    return list(target.link.helper("jupyter-list", {}) or [])


def explain(target: Target, env: str | None = None, socket: bool = False) -> Explained:
    resolved = hostenv.resolve_for_explain(target, env)
    session = target.settings.session
    directory = hostpaths.jupyter_dir(target.server_dir(), resolved.key)
    q = shlex.quote
    token = q(f"{directory}/token")
    if on_socket(target, resolved, socket):
        command = jupyter_command(socket=f"{directory}/jupyter.sock", root=_root(target))
        url = f"unix socket {directory}/jupyter.sock, path /lab?token=$(cat {token})"
    else:
        try:
            port = planned_port(target, resolved)
        except PortalError:  # explain still prints when the host cannot be asked
            port = fallback_port(target)
        command = jupyter_command(port, root=_root(target))
        url = f"http://127.0.0.1:{port}/lab?token=$(cat {token})"
    variables = dict(cluster_step.client_environment(target, resolved.spec), JUPYTER_TOKEN_FILE=f"{directory}/token")
    return Explained(remote=[
        cmds.ensure_session_line(session, hostenv.session_environment(target, ask=True)),
        f"(umask 077 && mkdir -p {q(directory)}) && chmod 700 ~/{hostpaths.PORTAL_DIR}",
        f"(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(24), end=\"\")' > {token})",
        *cmds.explain_window(window(session, resolved, command, variables)),
        f'echo "{url}"',
    ])

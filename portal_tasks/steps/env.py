"""Step `env`: check ENV on the host, then activate it in window ``env-KEY``.

Also the env plumbing the other session steps share: which env (``choose``), what it is
on the host (``resolve``), and the cluster variables a window of that env carries.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import tmux_commands as cmds
from ..envs import Env, guess_env, pick_manager
from ..errors import EnvError, PortalError, UsageError
from ..target import Explained, Target
from ..tmuxctl import marker, open_window, window_lock

#: Modules a step needs, with the package that provides each.
PACKAGES = {"IPython": "ipython", "jupyterlab": "jupyterlab", "distributed": "dask[distributed]"}


def choose(target: Target, env: str | None) -> str:
    """The env spec: as given, or on localhost the env portal itself runs in."""
    if env:
        return env
    if target.settings.is_local:
        return sys.prefix
    raise UsageError("no env given.", host=target.host, hint="Pass --env NAME (conda/mamba/micromamba) or --env PATH.")


def manager(target: Target, spec: str) -> str | None:
    """The env manager for a named env: config env_manager, else what the host has."""
    from ..envs import is_path

    if target.settings.env_manager or is_path(spec):
        return target.settings.env_manager
    return pick_manager(None, target.facts().get("managers") or {})


def resolve(target: Target, env: str | None) -> Env:
    """The env as the host knows it (kind, prefix, python, modules); EnvError when it is missing."""
    return from_info(target, inspect(target, env))


def from_info(target: Target, info: dict[str, Any]) -> Env:
    """The Env for what the host's ``env-check`` said (``info["name"]`` is the spec)."""
    spec = info["name"]
    location = spec if info["kind"] == "named" else info["prefix"]
    return Env(spec=spec, kind=info["kind"], location=location, manager=info.get("manager") or manager(target, spec),
               prefix=info["prefix"], modules=info["modules"])


def resolve_for_explain(target: Target, env: str | None) -> Env:
    """Like resolve, but falls back to what the env's spelling tells when the host cannot say."""
    spec = choose(target, env)
    try:
        return resolve(target, spec)
    except PortalError:
        try:
            mgr = manager(target, spec)
        except PortalError:
            mgr = target.settings.env_manager or "conda"
        return guess_env(spec, mgr or "conda")


def require(target: Target, env: Env, module: str, step: str) -> None:
    """EnvError naming the env and what to install when it lacks ``module``."""
    if not env.has(module):
        package = PACKAGES.get(module, module)
        raise EnvError(f"env {env.spec!r} lacks {module}, which `{step}` needs.", host=target.host,
                       hint=f"Install it into the env (pip install {package!r}, or conda install), or pass another --env.")


def cluster_environment(target: Target, env: Env) -> dict[str, str]:
    """The variables that point a plain ``Client()`` at the user's cluster for this env ({} without one)."""
    from .cluster import client_environment

    return dict(client_environment(target, env.spec))


def inspect(target: Target, env: str | None) -> dict[str, Any]:
    """What `check` prints about the env: name, kind, prefix, python, modules."""
    spec = choose(target, env)
    checks = target.cache.env_checks
    if spec not in checks:  # env, cluster, ipython and jupyter of one `up` ask the same
        checks[spec] = target.link.helper("env-check", {"env": spec, "manager": manager(target, spec)})
    return {"name": spec, **checks[spec]}


def window_name(env: Env) -> str:
    return f"env-{env.key}"


def run(target: Target, env: str | None = None) -> Env:
    """Activate the env in its window; a window that already has it active is left alone."""
    resolved = resolve(target, env)
    mark = f"env:{resolved.location}"
    with window_lock(target, window_name(resolved)):
        result = open_window(target, window_name(resolved), lines=[resolved.activation()],
                             keep=lambda window: marker(window) == mark, mark=mark)
    state = "activated" if result.started else "already active, kept"
    target.say(f"{target.host}: env {resolved.spec!r} ({resolved.kind}, {resolved.prefix}) {state} "
               f"in window {window_name(resolved)} of session {target.settings.session!r}.")
    missing = [m for m in ("IPython", "distributed") if not resolved.has(m)]
    if missing:
        target.say(f"{target.host}: note: env {resolved.spec!r} lacks {', '.join(missing)}.")
    return resolved


def explain(target: Target, env: str | None = None) -> Explained:
    resolved = resolve_for_explain(target, env)
    session = target.settings.session
    return Explained(remote=[cmds.ensure_session_line(session),
                             *cmds.window_lines(session, window_name(resolved), None, [resolved.activation()])])

"""Step `env`: check ENV on the host, then activate it in window ``env-KEY``.

What the env is on the host (shared by the other steps) is :mod:`portal_tasks.hostenv`.
"""

from __future__ import annotations

from typing import Any

from .. import hostenv
from ..remote import tmux as cmds
from ..envs import Env
from ..hostenv import resolve_for_explain
from ..seen import Seen
from ..target import Explained, Target


def window_name(env: Env) -> str:
    return cmds.step_window("env", env.key)


def window_mark(env: Env) -> str:
    """portal's marker on the env's window once it activated the env there."""
    return f"env:{env.location}"


def window(session: str, env: Env) -> dict[str, Any]:
    """The env's window as the helper opens it (kept while it carries the env's marker)."""
    return cmds.window_plan(session, window_name(env), env.activation(), None, "marker", window_mark(env))


def _said(target: Target, env: Env, state: str) -> list[str]:
    lines = [(f"{target.host}: env {env.spec!r} ({env.kind}, {env.prefix}) {state} "
              f"in window {window_name(env)} of session {target.settings.session!r}.")]
    missing = [m for m in ("IPython", "distributed") if not env.has(m)]
    if missing:
        lines.append(f"{target.host}: note: env {env.spec!r} lacks {', '.join(missing)}.")
    return lines


def kept(target: Target, seen: Seen) -> list[str] | None:
    """What `run` says when the snapshot shows the env active in its window; None when it is not."""
    window = seen.window(window_name(seen.env))
    if window is None or window.get("marker") != window_mark(seen.env):
        return None
    return _said(target, seen.env, "already active, kept")


def explain(target: Target, env: str | None = None) -> Explained:
    resolved = resolve_for_explain(target, env)
    session = target.settings.session
    return Explained(remote=[cmds.ensure_session_line(session, hostenv.session_environment(target, ask=True)),
                             *cmds.explain_window(window(session, resolved))])

"""Step `env`: check ENV on the host, then activate it in window ``env-KEY``.

What the env is on the host (shared by the other steps) is :mod:`portal_tasks.hostenv`.
"""

from __future__ import annotations

from .. import tmux_commands as cmds
from ..envs import Env
from ..hostenv import resolve, resolve_for_explain
from ..target import Explained, Target
from ..tmuxctl import marker, open_window, window_lock



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

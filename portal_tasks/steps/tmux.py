"""Step `tmux`: ensure the user's tmux session on the host (an existing one is reused)."""

from __future__ import annotations

from .. import tmux_commands as cmds
from ..target import Explained, Target
from ..tmuxctl import ensure_session


def run(target: Target) -> bool:
    """Ensure the session; True when it was created now, False when an existing one was reused."""
    _, created = ensure_session(target)
    name = target.settings.session
    target.say(f"{target.host}: tmux session {name!r} {'created' if created else 'already running, reused'}.")
    target.say(f"attach: {target.link.attach_hint(name)}")
    return created


def explain(target: Target) -> Explained:
    return Explained(remote=[cmds.ensure_session_line(target.settings.session)])

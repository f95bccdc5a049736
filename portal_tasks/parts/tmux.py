"""Step `tmux`: ensure the user's tmux session on the host (an existing one is reused); it runs on `up`'s
path (``up/boot``), this says what it did and what it stands for."""

from __future__ import annotations

from .. import hostenv
from ..remote import tmux as cmds
from ..seen import Seen
from ..target import Explained, Target


def _said(target: Target, created: bool) -> list[str]:
    name = target.settings.session
    return [f"{target.host}: tmux session {name!r} {'created' if created else 'already running, reused'}.",
            f"attach: {target.link.attach_hint(name)}"]


def kept(target: Target, seen: Seen) -> list[str] | None:
    """What `run` says when the snapshot shows the session; None when it does not run."""
    return _said(target, created=False) if seen.session else None


def explain(target: Target) -> Explained:
    return Explained(remote=[cmds.ensure_session_line(target.settings.session, hostenv.session_environment(target, ask=True))])

"""tmux command lines (pure): what the host-side helper runs, as argv a person could type (``--explain``
prints the same).

Targets use tmux's exact-match prefix ``=``: a bare ``-t portal`` would also match a
session called ``portal2`` (tmux falls back to prefix matching), and portal never
touches another session.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

# shared with the host-side helper, which runs them as they are
from .remote.layout import SHELLS as SHELLS
from .remote.layout import kill_session as kill_session
from .remote.layout import kill_window as kill_window
from .remote.layout import runs_program as runs_program
from .remote.layout import session_target as session_target
from .remote.layout import window_target as window_target

#: Name of the first window of a session portal creates.
FIRST_WINDOW = "shell"
#: The window option where portal records what it typed into a window (e.g. the env it activated).
MARKER = "@portal"


def has_session(session: str) -> list[str]:
    return ["tmux", "has-session", "-t", session_target(session)]


def new_session(session: str, window: str = FIRST_WINDOW, environment: Mapping[str, str] | None = None) -> list[str]:
    """A detached session, with variables in the environment of every window it will have."""
    argv = ["tmux", "new-session", "-d", "-s", session, "-n", window]
    for name, value in (environment or {}).items():
        argv += ["-e", f"{name}={value}"]
    return argv


def session_plan(session: str, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The session as the helper's ``up`` verb ensures it: ``has`` asked first, ``new`` when it is missing."""
    return {"name": session, "has": has_session(session), "new": new_session(session, environment=environment)}


def ensure_session_line(session: str, environment: Mapping[str, str] | None = None) -> str:
    """One shell line: create the session unless it exists (pasteable, idempotent)."""
    return f"{shlex.join(has_session(session))} 2>/dev/null || {shlex.join(new_session(session, environment=environment))}"


def new_window(session: str, window: str, environment: Mapping[str, str] | None = None) -> list[str]:
    """A detached window at the session's next free index, with variables in its environment."""
    argv = ["tmux", "new-window", "-d", "-t", f"{session_target(session)}:", "-n", window]
    for name, value in (environment or {}).items():
        argv += ["-e", f"{name}={value}"]
    return argv


def send_keys(session: str, window: str, line: str) -> list[str]:
    """Type a line into the window's shell and press Enter."""
    return ["tmux", "send-keys", "-t", window_target(session, window), line, "Enter"]


def set_window_option(session: str, window: str, option: str, value: str) -> list[str]:
    return ["tmux", "set-option", "-w", "-t", window_target(session, window), option, value]


def window_plan(session: str, window: str, lines: list[str], environment: Mapping[str, str] | None = None,
                keep: str = "never", mark: str | None = None) -> dict[str, Any]:
    """A window as the helper's ``up`` verb opens it: ``kill`` (run when the window is there and not kept:
    ``keep`` "never", "busy" (a program runs in it) or "marker" (its marker is ``mark``)), then ``argv``
    in order: the new window with its variables, portal's marker, the lines typed."""
    argv = [new_window(session, window, environment)]
    if mark is not None:
        argv.append(set_window_option(session, window, MARKER, mark))
    argv += [send_keys(session, window, line) for line in lines]
    return {"name": window, "keep": keep, "marker": mark, "kill": kill_window(session, window), "argv": argv}


def explain_window(plan: Mapping[str, Any]) -> list[str]:
    """The shell lines of a :func:`window_plan`, as the helper runs them (the old window goes first)."""
    return [f"{shlex.join(plan['kill'])} 2>/dev/null || true", *(shlex.join(argv) for argv in plan["argv"])]


def attach(session: str) -> list[str]:
    return ["tmux", "attach", "-t", session_target(session)]

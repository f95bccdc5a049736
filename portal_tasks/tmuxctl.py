"""The user's tmux session on the host, driven by libtmux through the link's ``tmux_bin``.

Steps put each service in a window of its own (``ipython-a``, ``jupyter-a``, ``cluster-a``):

    result = open_window(target, "cluster-a", lines=[activation, "dask scheduler ..."],
                         environment={"DASK_...": "..."})
    if result.started: wait_busy(result.window)  # or poll the service itself

A window whose pane runs something other than a shell is kept as it is; a window
whose pane sits idle at a shell prompt is replaced, so variables are fresh.

libtmux is imported when tmux is first driven, not with this module: warm `up` never drives it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Mapping, Sequence

from .errors import LinkError, TmuxError
from .target import Target
from .tmux_commands import FIRST_WINDOW, MARKER, runs_program

if TYPE_CHECKING:
    import libtmux


@dataclass(frozen=True)
class WindowResult:
    """A step's window, and whether portal typed its lines now (False: a running one was kept)."""

    window: libtmux.Window
    started: bool


def server(target: Target) -> libtmux.Server:
    """A libtmux Server for the user's default tmux socket on the host."""
    if not target.settings.is_local and not target.facts().get("tmux"):
        raise TmuxError("tmux is not installed (or not on the PATH).", host=target.host,
                        hint="Ask the admins for tmux, or install it in ~/.local/bin.")
    import libtmux

    return libtmux.Server(tmux_bin=target.link.tmux_bin())


@contextlib.contextmanager
def tmux_errors(target: Target) -> Iterator[None]:
    """libtmux's exceptions as portal's errors: a link that dropped under a tmux call is a LinkError."""
    from libtmux import exc as tmux_exc

    try:
        yield
    except tmux_exc.LibTmuxException as exc:
        if not target.settings.is_local and not target.link.is_alive():
            raise LinkError("the SSH connection failed (it closed under a tmux command).", host=target.host,
                            hint="Run the command again; portal reconnects and keeps what runs.") from None
        raise TmuxError(f"tmux refused a command: {' '.join(str(exc).split())[:300]}", host=target.host,
                        hint=f"Attach (tmux attach -t {target.settings.session}) to look.") from None


def find_session(target: Target) -> libtmux.Session | None:
    """The session named settings.session (exact match), or None."""
    name = target.settings.session
    with tmux_errors(target):
        return next((s for s in server(target).sessions if s.session_name == name), None)


def ensure_session(target: Target) -> tuple[libtmux.Session, bool]:
    """The user's session, created detached when missing; (session, created)."""
    from libtmux import exc as tmux_exc

    found = find_session(target)
    if found is not None:
        return found, False
    srv = server(target)
    try:
        return srv.new_session(session_name=target.settings.session, window_name=FIRST_WINDOW, attach=False), True
    except tmux_exc.LibTmuxException as exc:
        # another portal created it meanwhile: libtmux's own check (TmuxSessionExists), or tmux's
        # "duplicate session" when both passed that check at once
        again = find_session(target)
        if again is not None:
            return again, False
        raise TmuxError(f"tmux could not create session {target.settings.session!r}: {exc}", host=target.host,
                        hint="Run `tmux new-session -d` on the host by hand to see why.") from None


def window_lock(target: Target, name: str) -> ContextManager[None]:
    """Held (on the host) while a step looks at window ``name`` and starts what runs there, until it runs:
    portals started at once then start it once, and none replaces a window another is still starting."""
    return target.link.lock(f"window-{target.settings.session}-{name}")


def find_window(session: libtmux.Session, name: str) -> libtmux.Window | None:
    """The session's window with exactly this name, or None."""
    return next((w for w in session.windows if w.window_name == name), None)


def _display(window: libtmux.Window, fmt: str) -> str:
    out = window.cmd("display-message", "-p", fmt).stdout
    return out[0].strip() if out else ""


def foreground(window: libtmux.Window) -> str:
    """The name of the command in the foreground of the window's pane (e.g. bash, python3)."""
    return _display(window, "#{pane_current_command}").lstrip("-")


def is_busy(window: libtmux.Window) -> bool:
    """True when the pane runs something other than a shell at its prompt."""
    return runs_program(foreground(window))


def pane_pid(window: libtmux.Window) -> int:
    """The pid of the shell the window's pane started with."""
    return int(_display(window, "#{pane_pid}") or 0)


def marker(window: libtmux.Window) -> str:
    return _display(window, "#{%s}" % MARKER)


def set_marker(window: libtmux.Window, value: str) -> None:
    window.cmd("set-option", "-w", MARKER, value)


def tail(window: libtmux.Window, lines: int = 5) -> str:
    """The last non-empty lines of the pane, for error messages."""
    text = [line for line in window.active_pane.capture_pane() if line.strip()] if window.active_pane else []
    return " / ".join(line.strip() for line in text[-lines:])


def open_window(
    target: Target,
    name: str,
    *,
    lines: Sequence[str],
    environment: Mapping[str, str] | None = None,
    keep: Callable[[libtmux.Window], bool] = is_busy,
    mark: str | None = None,
) -> WindowResult:
    """Ensure window ``name`` in the user's session runs ``lines``, typed into a fresh shell.

    An existing window for which ``keep(window)`` is true is left alone; otherwise it is
    replaced by a new window carrying ``environment`` (tmux ``new-window -e``).
    """
    from libtmux import exc as tmux_exc

    session, _ = ensure_session(target)
    with tmux_errors(target):
        window = find_window(session, name)
        if window is not None:
            if keep(window):
                return WindowResult(window, started=False)
            window.kill()
        window = session.new_window(window_name=name, attach=False, environment=dict(environment or {}))
        if mark is not None:
            set_marker(window, mark)
        pane = window.active_pane
        if pane is None:  # libtmux found no pane: the link dropped under it (a LinkError), or tmux failed
            raise tmux_exc.LibTmuxException(f"window {name} has no pane")
        for line in lines:
            pane.send_keys(line, enter=True)
    return WindowResult(window, started=True)


def wait_busy(window: libtmux.Window, seconds: float = 30.0, interval: float = 0.1) -> bool:
    """Wait (bounded) until the window's pane runs a program rather than its shell."""
    deadline = time.monotonic() + seconds
    while True:
        if is_busy(window):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

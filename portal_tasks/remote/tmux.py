"""portal's tmux: every argv the helper runs (built on the laptop, run as they are on the host; ``--explain``
prints the same), every window and lock name, and how a pane's foreground command reads (standard library
only, Python 3.8+; shipped in the helper's zipapp, imported by the laptop).

Targets use tmux's exact-match prefix ``=``: a bare ``-t portal`` would also match a session called
``portal2`` (tmux falls back to prefix matching), and portal never touches another session.
"""

from __future__ import annotations

import shlex
from typing import Any, Iterable, Mapping

#: Name of the first window of a session portal creates.
FIRST_WINDOW = "shell"
#: The window option where portal records what it typed into a window (e.g. the env it activated).
MARKER = "@portal"
#: portal's step windows are ``PREFIX-KEY`` (:func:`step_window`); ``down`` stops them in this order.
STEP_WINDOWS = ("ipython", "jupyter", "env", "cluster")

#: Shells at their prompt: a tmux pane whose foreground command is one of these is idle.
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "fish", "ksh", "mksh", "tcsh", "csh", "ash", "busybox", "login"})
#: What runs in a window while it activates an env (the manager's hook and activate): not yet its program.
ACTIVATING = frozenset({"conda", "mamba", "micromamba"})


# -- names ----------------------------------------------------------------------------------------

def step_window(prefix: str, key: str) -> str:
    """The window of step ``prefix`` (of :data:`STEP_WINDOWS`) for env ``key``: ``cluster-KEY``, ``env-KEY``, ..."""
    return "%s-%s" % (prefix, key)


def cluster_window(key: str) -> str:
    return step_window("cluster", key)


def cluster_lock(key: str) -> str:
    """The host lock held while the env's cluster starts or stops: named as its window."""
    return cluster_window(key)


def window_lock(session: str, window: str) -> str:
    """The host lock held while a window of the session is opened."""
    return "window-%s-%s" % (session, window)


def session_target(session: str) -> str:
    """An exact tmux target: a bare ``-t portal`` would also match ``portal2`` (tmux falls back to prefixes)."""
    return "=" + session


def window_target(session: str, window: str) -> str:
    return "=%s:=%s" % (session, window)


def step_prefixes(keep_cluster: bool) -> list[str]:
    """The step windows ``down`` closes: all of :data:`STEP_WINDOWS`, the cluster's kept with ``keep_cluster``."""
    return [p for p in STEP_WINDOWS if not (keep_cluster and p == "cluster")]


def step_windows(names: Iterable[str], key: str | None, keep_cluster: bool) -> list[str]:
    """portal's step windows among ``names`` (of env ``key``, or of every env for None), in their order."""
    prefixes = step_prefixes(keep_cluster)
    return [n for n in names
            if any(n == step_window(p, key) if key else n.startswith(step_window(p, "")) for p in prefixes)]


# -- panes ----------------------------------------------------------------------------------------

def runs_program(command: str) -> bool:
    """True when a pane's foreground command is a program, not a shell at its prompt nor an env's activation."""
    return bool(command) and command not in SHELLS and command not in ACTIVATING


def only_idle(commands: Iterable[str]) -> bool:
    """True when every pane's foreground command is a shell at its prompt (also for none at all)."""
    return all(command in SHELLS for command in commands)


# -- argv -----------------------------------------------------------------------------------------

def has_session(session: str) -> list[str]:
    return ["tmux", "has-session", "-t", session_target(session)]


def new_session(session: str, window: str = FIRST_WINDOW, environment: Mapping[str, str] | None = None) -> list[str]:
    """A detached session, with variables in the environment of every window it will have."""
    argv = ["tmux", "new-session", "-d", "-s", session, "-n", window]
    for name, value in (environment or {}).items():
        argv += ["-e", "%s=%s" % (name, value)]
    return argv


def kill_session(session: str) -> list[str]:
    return ["tmux", "kill-session", "-t", session_target(session)]


def new_window(session: str, window: str, environment: Mapping[str, str] | None = None) -> list[str]:
    """A detached window at the session's next free index, with variables in its environment."""
    argv = ["tmux", "new-window", "-d", "-t", session_target(session) + ":", "-n", window]
    for name, value in (environment or {}).items():
        argv += ["-e", "%s=%s" % (name, value)]
    return argv


def kill_window(session: str, window: str) -> list[str]:
    return ["tmux", "kill-window", "-t", window_target(session, window)]


def send_keys(session: str, window: str, *lines: str) -> list[str]:
    """Type lines into the window's shell, each followed by Enter (one tmux process for them all)."""
    return ["tmux", "send-keys", "-t", window_target(session, window), *(key for line in lines for key in (line, "Enter"))]


def set_window_option(session: str, window: str, option: str, value: str) -> list[str]:
    return ["tmux", "set-option", "-w", "-t", window_target(session, window), option, value]


def attach(session: str) -> list[str]:
    return ["tmux", "attach", "-t", session_target(session)]


# -- what the helper's ``up`` verb is given, and what ``--explain`` prints of it ---------------------

def session_plan(session: str, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The session as the helper's ``up`` verb ensures it: ``has`` asked first, ``new`` when it is missing."""
    return {"name": session, "has": has_session(session), "new": new_session(session, environment=environment)}


def ensure_session_line(session: str, environment: Mapping[str, str] | None = None) -> str:
    """One shell line: create the session unless it exists (pasteable, idempotent)."""
    return "%s 2>/dev/null || %s" % (shlex.join(has_session(session)),
                                     shlex.join(new_session(session, environment=environment)))


def window_plan(session: str, window: str, lines: list[str], environment: Mapping[str, str] | None = None,
                keep: str = "never", mark: str | None = None) -> dict[str, Any]:
    """A window as the helper's ``up`` verb opens it: ``kill`` (run when the window is there and not kept:
    ``keep`` "never", "busy" (a program runs in it) or "marker" (its marker is ``mark``)), then ``argv``
    in order: the new window with its variables, portal's marker, the lines typed."""
    argv = [new_window(session, window, environment)]
    if mark is not None:
        argv.append(set_window_option(session, window, MARKER, mark))
    if lines:
        argv.append(send_keys(session, window, *lines))
    return {"name": window, "keep": keep, "marker": mark, "kill": kill_window(session, window), "argv": argv}


def explain_window(plan: Mapping[str, Any]) -> list[str]:
    """The shell lines of a :func:`window_plan`, as the helper runs them (the old window goes first); the lines
    typed show one ``send-keys`` each (the helper types them all in one)."""
    shown = []
    for argv in plan["argv"]:
        if argv[1] == "send-keys":
            shown += [shlex.join([*argv[:4], line, "Enter"]) for line in argv[4::2]]
        else:
            shown.append(shlex.join(argv))
    return ["%s 2>/dev/null || true" % shlex.join(plan["kill"]), *shown]

"""Verbs about the host itself: ping, probe (who am I, tools, listeners), and a held lock."""

from __future__ import annotations

import functools
import os
import platform
import re
import pwd
import shutil
import subprocess
import sys
from typing import Any

from . import hostpaths, managers
from .common import listeners, locked


def ping(_payload: dict[str, Any]) -> str:
    return "pong"


def tool_version(argv: list[str]) -> str | None:
    path = shutil.which(argv[0])
    if not path:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or "unknown"


def meminfo_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: ``set -g default-shell PATH`` (or set-option) in a tmux configuration file
_DEFAULT_SHELL = re.compile(r"^\s*set(?:-option)?\s+(?:-\w*g\w*\s+)+default-shell\s+['\"]?([^'\"\s#]+)", re.M)


@functools.lru_cache(maxsize=4)
def window_shell(uid: int | None = None) -> str:
    """The shell tmux runs in a new window: the running server's default-shell, else the one a tmux.conf
    sets, else $SHELL (tmux's own default, which sshd sets to the login shell), else the passwd entry's."""
    uid = os.getuid() if uid is None else uid
    socket = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", "tmux-%d" % uid, "default")
    if os.path.exists(socket):
        try:
            out = subprocess.run(["tmux", "show-options", "-gv", "default-shell"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, universal_newlines=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    for conf in ("~/.tmux.conf", "~/.config/tmux/tmux.conf"):
        try:
            with open(os.path.expanduser(conf), errors="replace") as fh:
                found: list[str] = _DEFAULT_SHELL.findall(fh.read(1 << 16))
        except OSError:
            continue
        if found:
            return os.path.expanduser(found[-1])
    shell = os.environ.get("SHELL")
    if shell and os.access(shell, os.X_OK):
        return shell
    try:
        return pwd.getpwuid(uid).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


#: zsh's startup files in ZDOTDIR (else ~): with none of them, an interactive zsh opens its first-run menu
ZSH_FILES = (".zshenv", ".zprofile", ".zshrc", ".zlogin")


def zsh_dotdir(shell: str | None) -> str | None:
    """For a zsh user with no startup files at all: a ZDOTDIR for portal's windows (~/.portal/zsh, an .zshrc
    that only says why), so zsh's first-run menu does not take the lines portal types; else None. Such a user's
    zsh reads nothing anyway, so their windows run the same shell."""
    if os.path.basename(shell or "") != "zsh" or os.environ.get("ZDOTDIR"):
        return None
    home = os.path.expanduser("~")
    if any(os.path.lexists(os.path.join(home, name)) for name in ZSH_FILES):
        return None
    folder = os.path.join(hostpaths.portal_dir(home), "zsh")
    rc = os.path.join(folder, ".zshrc")
    if not os.path.isfile(rc):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with open(rc, "w") as fh:
            fh.write("# portal: you have no zsh startup files, so portal's tmux windows read this empty one\n"
                     "# instead (ZDOTDIR): zsh's first-run menu would take the lines portal types.\n"
                     "# Make your own ~/.zshrc and portal's next session uses it.\n")
    return folder


def probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Who the user is here, which tools exist, and (on request) who listens where."""
    uid = os.getuid()
    result: dict[str, Any] = {
        "uid": uid,
        "user": pwd.getpwuid(uid).pw_name,
        "home": os.path.expanduser("~"),
        "hostname": platform.node(),
        "python": sys.version.split()[0],
        "python_path": sys.executable,  # the Python running this helper (check names it)
        "tmux": tool_version(["tmux", "-V"]),
        "manager": managers.find(None),
        "shell": window_shell(uid),
        "zdotdir": zsh_dotdir(window_shell(uid)),
        "cpus": os.cpu_count(),
        "memory": meminfo_bytes(),
    }
    if payload.get("listeners"):
        result["listeners"] = listeners()
    return result


def lock(payload: dict[str, Any]) -> str:
    """Take this server's lock NAME, say 'locked', hold it until stdin closes (the laptop went away)."""
    with locked(payload.get("name", "lock"), float(payload.get("timeout", 120))):
        sys.stdout.write("locked\n")
        sys.stdout.flush()
        sys.stdin.read()
    return "released"


VERBS = {"ping": ping, "probe": probe, "lock": lock}

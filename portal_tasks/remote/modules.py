"""Host side: environment modules (Lmod, Environment Modules) loaded before the env is looked at.

Many HPC servers have a usable Python only after ``module load``. A non-interactive ssh command has no
``module`` (it is defined by the system's login files), so it is loaded the way a login does it, without
the user's own rc files: ``/etc/profile`` (which sources ``/etc/profile.d/*.sh``, where Lmod and Environment
Modules define ``module``), then ``module load NAMES``. The environment that leaves is this helper's from then
on: the manager, the env's python and its probe see what a window sees after the same ``module load``.
Module names come as arguments, never as shell code.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Callable, Iterable

from .common import Failure

#: Run by /bin/sh (argv: the module names): load them as a login shell would, then print the environment.
LOAD = ('. /etc/profile >/dev/null 2>&1 </dev/null; '
        'command -v module >/dev/null 2>&1 || { echo "no module command after /etc/profile" >&2; exit 97; }; '
        'module load "$@" >&2 || exit 98; exec env -0')
#: Variables the load may not change for this helper (they are the helper's own, or the session's).
KEEP = ("PWD", "OLDPWD", "SHLVL", "_", "HOME", "USER", "LOGNAME", "SHELL")


def message(stderr: str) -> str:
    """The module system's own words, as one line: its first line that says something."""
    for line in stderr.splitlines():
        text = " ".join(line.split())
        if text and not set(text) <= set("=-*+ "):
            return text
    return "no message"


def load(names: Iterable[Any] | None, runner: Callable[..., Any] = subprocess.run) -> dict[str, str] | None:
    """The environment after ``module load NAMES`` (a dict), or a Failure naming the module and the reason."""
    given = [str(n) for n in names or []]
    if not given:
        return None
    try:
        out = runner(["/bin/sh", "-c", LOAD, "portal-modules", *given], stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failure("module load %s did not finish (%s)." % (" ".join(given), exc), "EnvError",
                      "Try `module load %s` in a login shell on the host." % " ".join(given))
    stderr = out.stderr.decode(errors="replace")
    if out.returncode == 97:
        raise Failure("modules %s asked for, but this server has no `module` command (no Lmod or Environment "
                      "Modules in /etc/profile)." % " ".join(given), "EnvError",
                      "Remove modules for this host from portal.yaml, or ask the admins which module system it has.")
    if out.returncode != 0:
        raise Failure("module load %s failed: %s" % (" ".join(given), message(stderr)), "EnvError",
                      "See `module avail` on the host for the names it has, and fix modules in portal.yaml or --module.")
    environ: dict[str, str] = {}
    for item in out.stdout.decode(errors="replace").split("\0"):
        name, sep, value = item.partition("=")
        if sep and name and name not in KEEP:
            environ[name] = value
    return environ


def apply(names: Iterable[Any] | None) -> dict[str, str] | None:
    """Load ``names`` into this helper's own environment (its subprocesses see them); nothing without names."""
    environ = load(names)
    if environ:
        os.environ.update(environ)
    return environ

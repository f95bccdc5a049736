"""Environment modules on the test hosts: Debian's Lmod, with modulefiles an admin would have put there.

Debian's `lmod` package reads its MODULEPATH from /etc/lmod/modulespath (in /etc/profile.d/lmod.sh, so
in login shells: `bash -lc`, `ssh -t`), whose only directories are /etc/lmod/modules (empty) and Lmod's own.
The netns server binds the run's modulefiles directory over /etc/lmod/modules inside matagorda's and
matagorda2's mount namespaces (HOST_SETUP in hosts.py), so every user of those hosts finds them, system-wide,
and nothing of this machine changes. `server.lmod` (an `Lmod`, or None where Lmod is not installed; the
`portal_lmod` fixture skips then):

    python_module   "portal-python/3.11" (the version of the test envs' Python): prepends the bin of test env
                    `a` (dask, bokeh, IPython, JupyterLab) to PATH; `python_bin` is that directory
    missing_module  "portal-nosuch/1.0": no such module (Lmod: "The following module(s) are unknown")
    broken_module   "portal-broken/1.0": exists, and fails when loaded (LmodError with BROKEN_MESSAGE)
    hosts           the ssh aliases with the modules (matagorda, matagorda2)

    ssh matagorda 'bash -lc "module load portal-python/3.11 && command -v python"'   # -> <env a>/bin/python
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MODULES_DIR = "/etc/lmod/modules"  # on Debian's default MODULEPATH; empty as the package ships it
LMOD_PROFILE = "/etc/profile.d/lmod.sh"
MISSING = "portal-nosuch/1.0"
BROKEN = "portal-broken/1.0"
BROKEN_MESSAGE = "portal-broken/1.0 is broken on purpose: its install directory is gone"
HOSTS = ("matagorda", "matagorda2")


@dataclass(frozen=True)
class Lmod:
    """The modules of the run's hosts (see the module docstring)."""

    modules: Path  # the modulefiles as this process reaches them; the hosts see them as MODULES_DIR
    python_module: str
    python_bin: Path
    missing_module: str = MISSING
    broken_module: str = BROKEN
    hosts: tuple[str, ...] = HOSTS


def unavailable() -> str | None:
    """Why the hosts can have no Lmod here, or None."""
    if not Path(LMOD_PROFILE).exists() or not Path(MODULES_DIR).is_dir():
        return f"Lmod is not installed here (no {LMOD_PROFILE} or {MODULES_DIR}; apt-get install lmod)"
    return None


def python_version(venv: Path) -> str:
    """"3.11" for a venv of Python 3.11 (from its pyvenv.cfg)."""
    m = re.search(r"^version\s*=\s*(\d+\.\d+)", (venv / "pyvenv.cfg").read_text(), re.MULTILINE)
    return m.group(1) if m else "3"


def write_modules(d: Path, venv: Path) -> Lmod:
    """The modulefiles in d (made here): python_module putting venv's bin first on PATH, and broken_module."""
    module = f"portal-python/{python_version(venv)}"
    files = {
        f"{module}.lua": (f'whatis("Python {python_version(venv)} with dask, bokeh, IPython and JupyterLab '
                          f'(portal\'s test env a)")\nprepend_path("PATH", "{venv / "bin"}")\n'),
        f"{BROKEN}.lua": f'LmodError("{BROKEN_MESSAGE}")\n',
    }
    for name, text in files.items():
        path = d / name
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    os.chmod(d, 0o755)
    return Lmod(modules=d, python_module=module, python_bin=venv / "bin")

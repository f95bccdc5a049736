"""The netns server's users beyond alice, bob and notmux: made on first use, as Debian makes accounts.

`server.user(ROLE)` (or the pytest fixture of the same name) creates the user the first time (about a
tenth of a second; carol about 1.5 s, and the machine's conda install once, seconds), so a server start
costs nothing for them. Each has Debian's skeleton files only (~/.bashrc, ~/.profile, ~/.bash_logout from
/etc/skel; no ~/.zshrc, no fish or tcsh config), and `ssh matagorda CMD` runs CMD in their login shell,
as sshd does. Where a role cannot be made here (shell not installed, no Python 3.6), `server.user(ROLE)`
raises TestServerUnavailable saying why, and the fixture skips with that line.

    carol   bash; conda the way people have it (conda.py): `conda init bash` in Debian's ~/.bashrc, envs
            `a` (~/.conda/envs/a, in ~/.conda/environments.txt) and `b` (~/scratch/condaenvs/b, found only
            through envs_dirs of ~/.condarc); `server.conda()` is the install's prefix
    zed     login shell zsh (/usr/bin/zsh), no ~/.zshrc (a first interactive zsh shows its newuser menu)
    fay     login shell fish (/usr/bin/fish)
    ted     login shell tcsh (/usr/bin/tcsh)
    oldpy   bash; `python3` in their non-interactive PATH is Python 3.6 (oldpython.py: first line of ~/.bashrc)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portal_tasks.testing import conda, oldpython
from portal_tasks.testing.errors import TestServerUnavailable


@dataclass(frozen=True)
class Home:
    """A new user's account, for a role's setup."""

    name: str
    uid: int
    gid: int
    home: Path
    envs: dict[str, Path]  # the test envs (venvs) by name


@dataclass(frozen=True)
class Role:
    shell: str
    #: run once the home (keys, skeleton files) exists and belongs to the user
    prepare: Callable[[Home], None] | None = None

    def unavailable(self) -> str | None:
        if not os.access(self.shell, os.X_OK):
            return f"{self.shell} is not installed here (apt-get install {Path(self.shell).name})"
        return None


def _conda_user(h: Home) -> None:
    conda.setup_conda_user(conda.ensure_conda(), h.uid, h.gid, h.home, h.envs["a"])


def _old_python_user(h: Home) -> None:
    oldpython.ensure_old_python()
    rc = h.home / ".bashrc"  # kept as the user's: written in place
    rc.write_text(oldpython.PATH_LINE + rc.read_text())


LAZY_ROLES: dict[str, Role] = {
    "carol": Role("/bin/bash", _conda_user),
    "zed": Role("/usr/bin/zsh"),
    "fay": Role("/usr/bin/fish"),
    "ted": Role("/usr/bin/tcsh"),
    "oldpy": Role("/bin/bash", _old_python_user),
}


def role(name: str) -> Role:
    try:
        return LAZY_ROLES[name]
    except KeyError:
        raise TestServerUnavailable(f"no role {name!r} (lazy roles: {', '.join(LAZY_ROLES)})") from None

"""A Python 3.6 that every test user can run, like the `python3` of RHEL 8 and its rebuilds.

    ensure_old_python() -> Path
        /opt/portal-testing/python3.6: a copy of this machine's pyenv 3.6 (made once per machine, under a
        lock), relocated so it runs from there for any user (its RUNPATH is made relative). Its bin/ holds
        only python3 and python3.6 (both 3.6). Raises TestServerUnavailable, saying why, where this
        machine has no Python 3.6 (no pyenv with a 3.6.x; or set PORTAL_TEST_PYTHON36 to a 3.6 prefix).
    PATH_LINE
        The line put at the TOP of the `oldpy` user's ~/.bashrc (bash reads ~/.bashrc for an ssh command
        before Debian's "not interactive: return" guard): their non-interactive PATH has 3.6's python3 first.

On the netns server the user is role `oldpy` (`server.user("oldpy")`, made on first use; the `oldpy`
fixture): `ssh matagorda python3 --version` says Python 3.6.x.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing.cached import ROOT, built_once
from portal_tasks.testing.errors import TestServerError, TestServerUnavailable

DEST = ROOT / "python3.6"
PATH_LINE = f"PATH={DEST}/bin:$PATH; export PATH  # this server's python3 is 3.6\n"
KEEP_IN_BIN = ("python3", "python3.6")
SKIP = shutil.ignore_patterns("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "*.a")


def _pyenv_roots() -> list[Path]:
    roots = [Path(p) for p in (os.environ.get("PYENV_ROOT"),) if p]
    res = run(["pyenv", "root"], timeout=10)
    if res.ok and res.stdout.strip():
        roots.append(Path(res.stdout.strip()))
    roots.append(Path("/root/.pyenv"))
    return roots


def find_python36() -> Path | None:
    """The prefix of a Python 3.6 on this machine (PORTAL_TEST_PYTHON36, else pyenv's newest 3.6.x)."""
    given = os.environ.get("PORTAL_TEST_PYTHON36")
    if given:
        return Path(given) if (Path(given) / "bin" / "python3.6").exists() else None
    for root in _pyenv_roots():
        found = sorted((root / "versions").glob("3.6.*"), key=lambda p: [int(x) for x in p.name.split(".")
                                                                          if x.isdigit()])
        found = [p for p in found if (p / "bin" / "python3.6").exists()]
        if found:
            return found[-1]
    return None


def ensure_old_python(dest: Path = DEST) -> Path:
    """dest (the relocated copy), made on first use; raises TestServerUnavailable where no 3.6 exists."""
    if not (dest / ".portal-complete").exists():
        source = find_python36()
        if source is None:
            raise TestServerUnavailable("no Python 3.6 on this machine (no pyenv 3.6.x, and PORTAL_TEST_PYTHON36 "
                                        "names no prefix with bin/python3.6): a server whose python3 is 3.6 "
                                        "needs one")
        built_once(dest, lambda d: _copy(source, d))
    return dest


def _copy(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, symlinks=True, ignore=SKIP)
    for entry in (dest / "bin").iterdir():
        if entry.name not in KEEP_IN_BIN:
            entry.unlink()
    old = str(source.resolve() / "lib")
    for root, _, files in os.walk(dest):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink() and (name.startswith("python3") or ".so" in name):
                relocate_runpath(path, old, "$ORIGIN/" + os.path.relpath(dest / "lib", path.parent))
    res = run([str(dest / "bin" / "python3"), "-c", "import sys, ssl, json; print(sys.version)"], timeout=30)
    if not res.ok or not res.stdout.startswith("3.6"):
        raise TestServerError(f"the copy of Python 3.6 at {dest} does not run: {res.tail()}")


def relocate_runpath(path: Path, old: str, new: str) -> bool:
    """Replace the RUNPATH string `old` of ELF file path by `new` (no longer than it), in place; True if found."""
    data = path.read_bytes()
    if not data.startswith(b"\x7fELF"):
        return False
    needle = b"\0" + old.encode() + b"\0"
    if needle not in data:
        return False
    if len(new) > len(old):
        raise TestServerError(f"cannot relocate {path}: {new!r} is longer than {old!r}")
    replacement = b"\0" + new.encode().ljust(len(old), b"\0") + b"\0"
    path.write_bytes(data.replace(needle, replacement))
    return True


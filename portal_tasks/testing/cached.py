"""Things the test server builds once per machine under /opt/portal-testing (conda, an old Python), under a lock.

    built_once(dest, build) -> dest

`build(dest)` runs only when dest has no complete mark; parallel runs wait on one lock (dest's parent
`.DEST.lock`) for the one builder; a half-built dest (a killed run) is removed and built again."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

ROOT = Path(os.environ.get("PORTAL_TEST_CACHE_ROOT", "/opt/portal-testing"))
COMPLETE_MARK = ".portal-complete"


def is_built(dest: Path) -> bool:
    return (dest / COMPLETE_MARK).exists()


def built_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """dest, built by build(dest) unless already complete; readable by every user afterwards."""
    if is_built(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for d in (ROOT, *[p for p in dest.parents if ROOT in p.parents]):
        if d.exists():
            d.chmod(0o755)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs wait for one builder
        if is_built(dest):
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        build(dest)
        for root, dirs, files in os.walk(dest):  # a+rX, as `chmod -R a+rX`
            for name in dirs:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | 0o555)
            for name in files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    mode = os.stat(p).st_mode
                    os.chmod(p, mode | 0o444 | (0o111 if mode & 0o100 else 0))
        dest.chmod(0o755)
        (dest / COMPLETE_MARK).write_text("built by portal's test server\n")
    return dest

"""What test servers on one machine share, and the lock they take turns on it with.

Several servers run at once: pytest-xdist's workers (one server each), a developer's second run, a
`own_netns_server` of a module. Each names what it makes after its pytest pid and a token, so names do
not collide; the machine's address space (10.231.X nets) and the sweep of dead runs' leftovers are
one per machine, so a server picks nets and sweeps only while it holds `machine_lock()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

PREFIX = "portal-t-"  # every namespace and run dir a netns server makes starts with it
BASE_ROOT = Path(os.environ.get("PORTAL_TEST_BASE", "/home"))  # run dirs (homes, laptops) go under it
RUNTIME_ROOT = Path("/run")  # and short dirs for unix sockets under this
#: not under PREFIX: the sweep of leftovers must never take it for a dead run's dir
LOCK = RUNTIME_ROOT / "portal-testing.lock"

_held: dict[Path, int] = {}  # lock file -> how deep this process holds it
_guard = threading.RLock()


@contextlib.contextmanager
def machine_lock(path: Path = LOCK) -> Iterator[None]:
    """Hold the machine's test-server lock while the block runs: waits for another process holding it (a killed
    holder's lock goes with its process); within this process it nests (a test holding it may sweep)."""
    with _guard:
        if _held.get(path):
            _held[path] += 1
            try:
                yield
            finally:
                _held[path] -= 1
            return
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            _held[path] = 1
            try:
                yield
            finally:
                _held[path] = 0
                fcntl.flock(f, fcntl.LOCK_UN)

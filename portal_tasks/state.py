"""Laptop-side state: which local port forwards which service of which host (so bookmarks keep working)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from .remote.layout import write_atomic


def cache_dir() -> Path:
    path = Path(platformdirs.user_cache_dir("portal"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _host_file(host: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", host)
    return cache_dir() / f"forwards-{safe}.json"


def load_forwards(host: str) -> dict[str, dict[str, Any]]:
    """{service: {"local_port": L, "remote": "127.0.0.1:P" | "/path.sock", "url": "..."}}."""
    try:
        data = json.loads(_host_file(host).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_forwards(host: str, forwards: dict[str, dict[str, Any]]) -> None:
    write_atomic(str(_host_file(host)), json.dumps(forwards, indent=1, sort_keys=True).encode())


@contextlib.contextmanager
def laptop_lock(host: str) -> Iterator[None]:
    """Serialise forward bookkeeping of concurrent portal runs for one host."""
    fd = os.open(_host_file(host).with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

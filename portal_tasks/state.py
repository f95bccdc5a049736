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
    path = _host_file(host)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(forwards, fh, indent=1, sort_keys=True)
    tmp.replace(path)


@contextlib.contextmanager
def laptop_lock(host: str) -> Iterator[None]:
    """Serialise forward bookkeeping of concurrent portal runs for one host."""
    fd = os.open(_host_file(host).with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

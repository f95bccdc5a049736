"""Laptop-side state: which hosts portal has been used with, and which local port forwards which service
of which host (so bookmarks keep working)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from .remote.files import write_atomic


def cache_dir() -> Path:
    path = Path(platformdirs.user_cache_dir("portal"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


FORWARDS_PREFIX = "forwards-"
HOSTS_FILE = "hosts.json"


def _host_file(host: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", host)
    return cache_dir() / f"{FORWARDS_PREFIX}{safe}.json"


def load_hosts() -> dict[str, dict[str, Any]]:
    """{host: {"ssh_config": path or None, "used": unix time}} of every host `up` or `forward` ran for.

    Hosts that only have a forwards file (recorded before hosts were) count too, without details.
    """
    try:
        data = json.loads((cache_dir() / HOSTS_FILE).read_text())
    except (OSError, ValueError):
        data = {}
    hosts = {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
    for path in cache_dir().glob(f"{FORWARDS_PREFIX}*.json"):
        hosts.setdefault(path.stem[len(FORWARDS_PREFIX):], {})
    return dict(sorted(hosts.items()))


def record_host(host: str, ssh_config: str | None) -> None:
    """Remember that portal was used with host (and the ssh config it was reached with)."""
    with _lock(cache_dir() / "hosts.lock"):
        hosts = {k: v for k, v in load_hosts().items() if v}
        hosts[host] = {"ssh_config": ssh_config, "used": int(time.time())}
        write_atomic(str(cache_dir() / HOSTS_FILE), json.dumps(hosts, indent=1, sort_keys=True).encode())


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
    with _lock(_host_file(host).with_suffix(".lock")):
        yield


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


HELPERS_FILE = "helpers.json"


def helper_known(host: str) -> str | None:
    """The digest of the helper portal last ran on ``host`` from this laptop (None: none known)."""
    try:
        found = json.loads((cache_dir() / HELPERS_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = found.get(host) if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


def remember_helper(host: str, digest: str) -> None:
    """Note that ``host`` runs this portal's helper (so later calls send no archive)."""
    if helper_known(host) == digest:
        return
    path = cache_dir() / HELPERS_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        found = {}
    found = found if isinstance(found, dict) else {}
    found[host] = digest
    write_atomic(str(path), json.dumps(found, indent=1, sort_keys=True).encode())

"""Names, places and file rules the laptop and the host-side helper share (standard library only, Python 3.8+).

The laptop imports this module from the package; the helper carries it in its zipapp.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from typing import Any

#: The most workers one env's cluster has on one server: each takes a worker, a nanny and an HTTP port of the slot.
MAX_WORKERS = 8
#: Ports per env inside a user's block.
SLOT_SIZE = 30
#: Offsets inside an env's slot: single ports, then [first, last] ranges for workers, nannies and the
#: workers' own HTTP servers (/health, /metrics; one ``dask worker`` process per worker, so each gets its own).
LAYOUT: dict[str, Any] = {
    "scheduler_port": 0,
    "dashboard_port": 1,
    "jupyter_port": 2,
    "worker_ports": [4, 4 + MAX_WORKERS - 1],
    "nanny_ports": [12, 12 + MAX_WORKERS - 1],
    "http_ports": [20, 20 + MAX_WORKERS - 1],
}
#: The highest TCP port.
LAST_PORT = 65535
#: Single ports and [first, last] ranges of an env's slot.
SINGLES = ("scheduler_port", "dashboard_port", "jupyter_port")
RANGES = ("worker_ports", "nanny_ports", "http_ports")
#: The ranges an env planned by an earlier portal has (20-port slots, no room for the workers' HTTP
#: servers): such a record still works for what runs on it, and is planned again when its cluster starts.
OLD_RANGES = ("worker_ports", "nanny_ports")

#: portal's directory in the user's home on the host (0700). ``bin/`` (helpers) and ``tls/`` are
#: shared by every server that mounts the home; what describes running things is per server.
PORTAL_DIR = ".portal"
#: Under PORTAL_DIR: one directory per server (machine), see :func:`server_dir`.
HOSTS_DIR = "hosts"
#: Environment variable that marks a cluster's processes: ``PORTAL_CLUSTER=KEY@MACHINE``.
CLUSTER_MARK = "PORTAL_CLUSTER"

#: The shared claims directory when neither the admin nor the user names another.
DEFAULT_CLAIMS_DIR = "/tmp/portal-ports"
#: The admin's host-wide settings for portal (flat ``key: value`` lines), read by the helper.
HOST_CONFIG = "/etc/portal/portal.yaml"
#: Settings an admin may set in :data:`HOST_CONFIG`: the claims directory, and the server's share caps
#: (memory as a size or a share of the host, cores as a count; ``fair_users``: how many users a default
#: budget is an equal share for).
SHARE_SETTINGS = ("memory_total", "memory_per_user", "cores_total", "cores_per_user", "fair_users")
HOST_SETTINGS = ("claims_dir",) + SHARE_SETTINGS

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_amount(text: str) -> tuple[str, float] | None:
    """``("share", 0.25)`` for ``25%``, ``("bytes", n)`` for a size (16GiB, 512MB, 2e9 bytes), else None."""
    pct = _PCT.match(text)
    if pct:
        return "share", float(pct.group(1)) / 100
    size = _SIZE.match(text)
    if size and size.group(2).lower() in _UNITS:
        return "bytes", float(size.group(1)) * _UNITS[size.group(2).lower()]
    return None


def format_bytes(n: float) -> str:
    """``4.5 GiB``: a size as people read it."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")


# -- the port plan: a user's block of ports, an env's slot in it ---------------------------------

def block_index(uid: int, slots: int) -> int:
    """The user's first-choice block."""
    return uid % slots


def slots_per_block(block_size: int) -> int:
    """How many envs fit in a block."""
    return max(1, block_size // SLOT_SIZE)


def block_range(base: int, block_size: int, slots: int, index: int) -> dict[str, int]:
    """Block ``index`` (modulo ``slots``) of the plan: {index, start, end}, ends included."""
    index %= slots
    start = base + index * block_size
    return {"index": index, "start": start, "end": start + block_size - 1}


def slot_ports(block_start: int, slot: int) -> dict[str, Any]:
    """The first-choice ports of env slot ``slot`` in the block starting at ``block_start``."""
    base = block_start + slot * SLOT_SIZE
    ports: dict[str, Any] = {name: base + LAYOUT[name] for name in SINGLES}
    for name in RANGES:
        ports[name] = [base + LAYOUT[name][0], base + LAYOUT[name][1]]
    return ports


def recorded_ports(rec: dict[str, Any]) -> set[int]:
    """Every port an env's record (this layout or an earlier one) holds: its singles and ranges."""
    used = {rec[name] for name in SINGLES if isinstance(rec.get(name), int)}
    for name in RANGES:
        lo, hi = rec.get(name) or [0, -1]
        used.update(range(lo, hi + 1))
    return used


def is_current(rec: dict[str, Any]) -> bool:
    """True for an env record of this layout (one with room for its workers' HTTP ports)."""
    return all(isinstance(rec.get(name), list) and len(rec[name]) == 2 for name in RANGES)


def free_slots(block_start: int, per_block: int, envs: dict[str, dict[str, Any]]) -> list[int]:
    """Slots of the block no env holds: not the ``slot`` of a record of this layout, and none of
    the ports of a record an earlier portal planned (its slots were of another size)."""
    taken = {rec.get("slot") for rec in envs.values() if is_current(rec)}
    old: set[int] = set()
    for rec in envs.values():
        if not is_current(rec):
            old |= recorded_ports(rec)
    return [s for s in range(per_block) if s not in taken
            and not old & recorded_ports(slot_ports(block_start, s))]


def per_worker(ports: dict[str, Any], index: int) -> dict[str, Any]:
    """Worker ``index``'s own ports, for its one ``dask worker`` process.

    Worker and nanny: ``[own, last]`` of their ranges (Dask binds the first free of them, so one
    taken port moves it up inside the slot); HTTP: one port (``ports["http"][index]`` when the helper
    chose them around ports others hold, else the range's ``index``-th), since Dask's HTTP server takes no
    range and falls back to a random port outside the block when its port is taken. A record an
    earlier portal planned has no HTTP range: 0, a port the kernel picks.
    """
    w, n = ports["worker_ports"], ports["nanny_ports"]
    h, http = ports.get("http_ports") or [0, -1], ports.get("http") or []
    if index < len(http):
        port = http[index]
    else:
        port = h[0] + index if h[0] + index <= h[1] else 0
    return {"worker_port": [w[0] + index, w[1]], "nanny_port": [n[0] + index, n[1]], "http_port": port}


def proxy_safe(version: "str | None") -> bool:
    """True for a jupyter-server-proxy version (text) without CVE-2024-28179 (websockets proxied without
    Jupyter's login; fixed in 4.1.1, and 3.2.3 in the 3.x line); False for one with it, or for none.
    (Also run inside JupyterLab by portal's config for it: standard library only, annotations quoted.)"""
    if not version:
        return False
    parts = tuple(int(x) for x in re.findall(r"[0-9]+", version.split("+")[0])[:3])
    parts += (0,) * (3 - len(parts))
    return parts >= (4, 1, 1) or (3, 2, 3) <= parts < (4, 0, 0)


def worker_pid_file(workers_pid_file: str, index: int) -> str:
    """Worker ``index``'s pid file beside ``workers_pid_file``: ``KEY.workers.pid`` -> ``KEY.workers-INDEX.pid``."""
    base = workers_pid_file[:-4] if workers_pid_file.endswith(".pid") else workers_pid_file
    return "%s-%d.pid" % (base, index)


def next_free(preferred: int, start: int, end: int, taken: Iterable[int]) -> int | None:
    """``preferred`` if free, else the next port of start..end not in ``taken`` (wrapping), else None."""
    used = set(taken)
    span = end - start + 1
    for step in range(span):
        port = start + (preferred - start + step) % span
        if port not in used:
            return port
    return None


def parse_host_config(text: str) -> dict[str, str]:
    """Top-level ``key: value`` lines (``#`` comments, quotes around a value); indented and unknown keys are left out."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line or line.startswith("#") or line[0].isspace():
            continue
        match = _LINE.match(line)
        if not match or match.group(1) not in HOST_SETTINGS:
            continue
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            found[match.group(1)] = value
    return found


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): a reader sees the old file or the new one, never a part.

    A temporary file beside it, flushed to disk, renamed over it.
    """
    tmp = "%s.%d.%s.tmp" % (path, os.getpid(), os.urandom(4).hex())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on disk (where the file system allows it)
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- places on the host -------------------------------------------------------------------------

#: Shells at their prompt: a tmux pane whose foreground command is one of these is idle.
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "fish", "ksh", "mksh", "tcsh", "csh", "ash", "busybox", "login"})


#: What runs in a window while it activates an env (the manager's hook and activate): not yet its program.
ACTIVATING = frozenset({"conda", "mamba", "micromamba"})


def runs_program(command: str) -> bool:
    """True when a pane's foreground command is a program, not a shell at its prompt nor an env's activation."""
    return bool(command) and command not in SHELLS and command not in ACTIVATING


def only_idle(commands: Iterable[str]) -> bool:
    """True when every pane's foreground command is a shell at its prompt (also for none at all)."""
    return all(command in SHELLS for command in commands)


# -- portal's tmux session and windows ----------------------------------------------------------

#: portal's step windows are ``PREFIX-KEY``; ``down`` stops them in this order.
STEP_WINDOWS = ("ipython", "jupyter", "env", "cluster")


def session_target(session: str) -> str:
    """An exact tmux target: a bare ``-t portal`` would also match ``portal2`` (tmux falls back to prefixes)."""
    return "=" + session


def window_target(session: str, window: str) -> str:
    return "=%s:=%s" % (session, window)


def kill_window(session: str, window: str) -> list[str]:
    return ["tmux", "kill-window", "-t", window_target(session, window)]


def kill_session(session: str) -> list[str]:
    return ["tmux", "kill-session", "-t", session_target(session)]


def step_prefixes(keep_cluster: bool) -> list[str]:
    """The step windows ``down`` closes: all of :data:`STEP_WINDOWS`, the cluster's kept with ``keep_cluster``."""
    return [p for p in STEP_WINDOWS if not (keep_cluster and p == "cluster")]


def step_windows(names: Iterable[str], key: str | None, keep_cluster: bool) -> list[str]:
    """portal's step windows among ``names`` (of env ``key``, or of every env for None), in their order."""
    prefixes = step_prefixes(keep_cluster)
    return [n for n in names if any(n == "%s-%s" % (p, key) if key else n.startswith(p + "-") for p in prefixes)]


def machine(hostname: str) -> str:
    """The server's name as a directory name: its hostname, characters outside [A-Za-z0-9._-] as ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", hostname.strip()).lstrip(".")
    return name or "unnamed"


def portal_dir(home: str) -> str:
    """``~/.portal`` on the host (the helper and the TLS material live here, shared by all servers)."""
    return "%s/%s" % (home.rstrip("/"), PORTAL_DIR)


def tls_dir(home: str) -> str:
    return portal_dir(home) + "/tls"


def server_dir(home: str, hostname: str) -> str:
    """Where one server keeps what runs on it (ports, clusters, Jupyter, locks, scratch).

    Homes are often shared by several servers (NFS): each writes only its own directory.
    """
    return "%s/%s/%s" % (portal_dir(home), HOSTS_DIR, machine(hostname))


def ports_file(server: str) -> str:
    return server + "/ports.json"


def cluster_record(server: str, key: str) -> str:
    return "%s/clusters/%s.json" % (server, key)


def node_key(key: str, origin: str) -> str:
    """The name of a cluster's workers on another server (whose scheduler runs on ``origin``)."""
    return "%s.from-%s" % (key, machine(origin))


def node_paths(server: str, nkey: str) -> dict[str, str]:
    """Files of a cluster's workers on another server, in that server's directory."""
    return {"workers_pid_file": "%s/nodes/%s.workers.pid" % (server, nkey), "scratch": "%s/scratch/%s" % (server, nkey),
            "preload": dask_preload(server)}


#: The file name of portal's Dask preload (remote/owner_only.py) on the host: a module name for Python.
DASK_PRELOAD = "portal_owner_only.py"


def dask_preload(server: str) -> str:
    """Where the helper puts portal's Dask preload on a server (its own directory: Dask puts it on sys.path
    while importing it), given to ``dask scheduler`` and ``dask worker`` as ``--preload``."""
    return "%s/dask/%s" % (server, DASK_PRELOAD)


def cluster_paths(server: str, key: str) -> dict[str, str]:
    """Files of the env's cluster in the server's directory (given to dask on its command line)."""
    return {
        "scheduler_file": "%s/clusters/%s.scheduler.json" % (server, key),
        "scheduler_pid_file": "%s/clusters/%s.scheduler.pid" % (server, key),
        "workers_pid_file": "%s/clusters/%s.workers.pid" % (server, key),
        "scratch": "%s/scratch/%s" % (server, key),
        "preload": dask_preload(server),
    }


def jupyter_dir(server: str, key: str) -> str:
    """The env's Jupyter directory (0700): token, state, unix socket."""
    return "%s/jupyter/%s" % (server, key)


def cluster_mark(key: str, hostname: str) -> str:
    """The value of :data:`CLUSTER_MARK` for the env's cluster on this server.

    With the machine in it, a server never takes another one's processes for its own (where
    processes of several hosts are visible together, as in containers sharing a pid namespace).
    """
    return "%s@%s" % (key, machine(hostname))

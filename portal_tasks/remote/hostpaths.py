"""Where portal keeps things on the host: ``~/.portal``, a server's own directory, the files of a
cluster, of its workers on another server and of a Jupyter server (standard library only, Python 3.8+;
shipped in the helper's zipapp, imported by the laptop).
"""

from __future__ import annotations

import re

#: portal's directory in the user's home on the host (0700). ``bin/`` (helpers) and ``tls/`` are
#: shared by every server that mounts the home; what describes running things is per server.
PORTAL_DIR = ".portal"
#: Where the helper lives, under the home (``~`` is expanded by the host's shell).
HELPER_DIR = PORTAL_DIR + "/bin"
#: Under PORTAL_DIR: one directory per server (machine), see :func:`server_dir`.
HOSTS_DIR = "hosts"
#: Environment variable that marks a cluster's processes: ``PORTAL_CLUSTER=KEY@MACHINE``.
CLUSTER_MARK = "PORTAL_CLUSTER"
#: Environment variable of a ``dask worker --nworkers N`` (on another server) and of the host's ``dask spec``: its
#: workers' HTTP ports, ``P0,P1,...``; portal's preload (owner_only.HTTP_PORTS) gives each nanny's worker its
#: own, and starts the workers' forkserver in that process.
WORKER_HTTP_PORTS = "PORTAL_WORKER_HTTP"
#: Environment variable of the cluster's ``dask spec``: the file portal's preload (owner_only.PID_FILE) writes the
#: process's pid to, as ``dask scheduler --pid-file`` does.
CLUSTER_PID_FILE = "PORTAL_PID_FILE"
#: The file name of portal's Dask preload (remote/owner_only.py) on the host: a module name for Python.
DASK_PRELOAD = "portal_owner_only.py"


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


def dask_preload(server: str) -> str:
    """Where the helper puts portal's Dask preload on a server (its own directory: Dask puts it on sys.path
    while importing it), in the host's ``dask spec`` (each server's ``preload``) and ``--preload`` of ``dask
    worker`` on other servers."""
    return "%s/dask/%s" % (server, DASK_PRELOAD)


def node_paths(server: str, nkey: str) -> dict[str, str]:
    """Files of a cluster's workers on another server, in that server's directory."""
    return {"workers_pid_file": "%s/nodes/%s.workers.pid" % (server, nkey), "scratch": "%s/scratch/%s" % (server, nkey),
            "preload": dask_preload(server)}


def cluster_paths(server: str, key: str) -> dict[str, str]:
    """Files of the env's cluster in the server's directory (given to dask on its command line)."""
    return {
        "scheduler_file": "%s/clusters/%s.scheduler.json" % (server, key),
        "scheduler_pid_file": "%s/clusters/%s.scheduler.pid" % (server, key),
        "workers_pid_file": "%s/clusters/%s.workers.pid" % (server, key),
        "scratch": "%s/scratch/%s" % (server, key),
        "preload": dask_preload(server),
    }


def worker_pid_file(workers_pid_file: str, index: int) -> str:
    """Worker ``index``'s pid file beside ``workers_pid_file``: ``KEY.workers.pid`` -> ``KEY.workers-INDEX.pid``."""
    base = workers_pid_file[:-4] if workers_pid_file.endswith(".pid") else workers_pid_file
    return "%s-%d.pid" % (base, index)


def jupyter_dir(server: str, key: str) -> str:
    """The env's Jupyter directory (0700): token, state, unix socket."""
    return "%s/jupyter/%s" % (server, key)


def cluster_mark(key: str, hostname: str) -> str:
    """The value of :data:`CLUSTER_MARK` for the env's cluster on this server.

    With the machine in it, a server never takes another one's processes for its own (where
    processes of several hosts are visible together, as in containers sharing a pid namespace).
    """
    return "%s@%s" % (key, machine(hostname))

"""Dask command lines (pure): scheduler and worker argv, the lines typed into the cluster window, client variables.

Every listener binds 127.0.0.1 and speaks TLS with the user's own certificate; with workers on other
servers, the scheduler and workers listen on the address those servers reach (still TLS only).
Each worker is a ``dask worker`` process of its own, so each one's worker, nanny and HTTP ports are
its own ports of the env's slot (``--nworkers N`` would give all N HTTP servers one address).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ClusterError
from .plan import EnvPorts
from .remote import hostpaths, slots
from .remote.hostpaths import CLUSTER_MARK
from .tls import TlsPaths

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything the scheduler and worker command lines are made of."""

    key: str
    #: value of PORTAL_CLUSTER for its processes (KEY@MACHINE: hostpaths.cluster_mark), so stop/cleanup find them
    mark: str
    ports: EnvPorts
    tls: TlsPaths
    paths: dict[str, str]
    workers: int
    threads: int
    memory_limit: int  # bytes per worker
    #: where the scheduler and workers listen: loopback, or the host's address on scheduler_interface
    listen: str = LOOPBACK

    @property
    def address(self) -> str:
        return f"tls://{self.listen}:{self.ports.scheduler_port}"


def require_reachable(host: str, state: Mapping[str, Any], spec_text: str, who: str, again: str) -> None:
    """ClusterError when the env's cluster (``state``) listens on loopback only, so ``who`` (other servers,
    batch jobs) cannot reach it; ``again``: what to `up` with after `down`."""
    if (state.get("scheduler_host") or LOOPBACK) == LOOPBACK:
        raise ClusterError(f"your cluster of env {spec_text} listens on loopback only, so {who} cannot reach it.",
                           host=host, hint=f"`portal down --env {spec_text}`, then up again with {again}.")


def _tls_args(tls: TlsPaths) -> list[str]:
    return ["--tls-ca-file", tls.ca, "--tls-cert", tls.cert, "--tls-key", tls.key]


#: Ends the preload's text in --explain's here-document (never a line of the preload itself).
PRELOAD_END = "PORTAL_PRELOAD_END"


def preload_install_lines(path: str, source: str) -> list[str]:
    """The lines that put portal's preload at ``path`` by hand (0600 in a 0700 directory), as the helper does."""
    folder = path.rsplit("/", 1)[0]
    return [f"mkdir -p -m 700 {shlex.quote(folder)} && (umask 077; cat > {shlex.quote(path)}) <<'{PRELOAD_END}'",
            *source.rstrip("\n").split("\n"), PRELOAD_END]


def _preload_args(preload: str | None) -> list[str]:
    """portal's preload (remote/owner_only.py): the process's HTTP servers answer the user alone."""
    return ["--preload", preload] if preload else []


def scheduler_argv(spec: ClusterSpec) -> list[str]:
    return [
        "dask", "scheduler", "--protocol", "tls", "--host", spec.listen, "--port", str(spec.ports.scheduler_port),
        "--dashboard-address", f"{LOOPBACK}:{spec.ports.dashboard_port}", *_tls_args(spec.tls),
        "--scheduler-file", spec.paths["scheduler_file"], "--pid-file", spec.paths["scheduler_pid_file"],
        *_preload_args(spec.paths.get("preload")),
    ]


def _worker_argv(scheduler: list[str], listen: str, ports: dict[str, Any], index: int, threads: int, memory_limit: int, scratch: str, tls: TlsPaths, pid_file: str, preload: str | None = None) -> list[str]:
    """One worker's ``dask worker``: its own worker, nanny and HTTP ports (slots.per_worker)."""
    own = slots.per_worker(ports, index)
    w, n = own["worker_port"], own["nanny_port"]
    return [
        "dask", "worker", *scheduler, "--protocol", "tls", "--host", listen,
        "--worker-port", f"{w[0]}:{w[1]}", "--nanny-port", f"{n[0]}:{n[1]}", "--no-dashboard",
        "--dashboard-address", f"{LOOPBACK}:{own['http_port']}",  # its small HTTP server (/health); else on 0.0.0.0
        "--nthreads", str(threads), "--memory-limit", str(memory_limit),
        "--local-directory", scratch, *_tls_args(tls), "--pid-file", hostpaths.worker_pid_file(pid_file, index),
        *_preload_args(preload),
    ]


def worker_argv(spec: ClusterSpec, index: int = 0) -> list[str]:
    """Worker ``index`` of the env's cluster (0 <= index < spec.workers)."""
    return _worker_argv(["--scheduler-file", spec.paths["scheduler_file"]], spec.listen, spec.ports.as_dict(), index,
                        spec.threads, spec.memory_limit, spec.paths["scratch"], spec.tls,
                        spec.paths["workers_pid_file"], spec.paths.get("preload"))


def workers_argv(spec: ClusterSpec) -> list[list[str]]:
    """Every worker's ``dask worker``, one process each."""
    return [worker_argv(spec, i) for i in range(spec.workers)]


#: In the environment of every process the cluster window starts: only TLS, whatever the user's Dask config.
ENCRYPTION = "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True"


def _started(mark: str, argvs: list[list[str]]) -> list[str]:
    """Lines that start ``argvs`` marked, each in the background but the last (the window shows its log).
    ``env NAME=VALUE`` sets their variables the same way in every shell (bash, zsh, fish, tcsh)."""
    return [shlex.join(["env", f"{CLUSTER_MARK}={mark}", ENCRYPTION, *argv]) + (" &" if i < len(argvs) - 1 else "")
            for i, argv in enumerate(argvs)]


def window_lines(spec: ClusterSpec, activation: list[str]) -> list[str]:
    """The lines typed into the cluster window's shell (also what --explain prints): valid in any shell."""
    return [
        *activation,
        f"mkdir -p -m 700 {shlex.quote(spec.paths['scheduler_file'].rsplit('/', 1)[0])} {shlex.quote(spec.paths['scratch'])}",
        f"rm -f {shlex.quote(spec.paths['scheduler_file'])}",
        *_started(spec.mark, [scheduler_argv(spec), *workers_argv(spec)]),
    ]


def client_environment(scheduler_port: int, dashboard_port: int, tls: TlsPaths,
                       scheduler_host: str = LOOPBACK) -> dict[str, str]:
    """Variables that make a plain ``Client()`` connect to the user's cluster."""
    return {
        "DASK_SCHEDULER_ADDRESS": f"tls://{scheduler_host}:{scheduler_port}",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": tls.ca,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": tls.cert,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": tls.key,
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        DASHBOARD_LINK: f"http://localhost:{dashboard_port}/status",
    }


DASHBOARD_LINK = "DASK_DISTRIBUTED__DASHBOARD__LINK"


def through_jupyter(variables: dict[str, str]) -> dict[str, str]:
    """The variables for kernels of a JupyterLab with jupyter-server-proxy: the dashboard link becomes
    Jupyter's own ``/proxy/PORT/status`` (a path on the page's origin), so the Jupyter forward alone serves it."""
    found = re.fullmatch(r"http://localhost:(\d+)(/.*)", variables.get(DASHBOARD_LINK, ""))
    if not found:
        return dict(variables)
    return {**variables, DASHBOARD_LINK: f"/proxy/{found.group(1)}{found.group(2)}"}


def record(spec: ClusterSpec, env: str, budget: int) -> dict[str, Any]:
    """What the host's state file says about the cluster besides pids (written once it is up)."""
    return {"key": spec.key, "env": env, "workers": spec.workers, "threads": spec.threads,
            "memory_limit": spec.memory_limit, "memory_budget": budget, "paths": spec.paths, "tls_dir": spec.tls.dir,
            "scheduler_host": spec.listen}


@dataclass(frozen=True)
class NodeSpec:
    """Workers of a cluster on another server: they dial the scheduler and listen on the node's own address."""

    mark: str  # value of PORTAL_CLUSTER for these processes on the node: hostpaths.cluster_mark(KEY, NODE)
    scheduler: str  # tls://HOST:PORT
    listen: str  # the node's address that the scheduler's host reaches
    worker_ports: tuple[int, int]
    nanny_ports: tuple[int, int]
    tls: TlsPaths
    paths: dict[str, str]  # workers_pid_file, scratch (in the node's server directory)
    workers: int
    threads: int
    memory_limit: int
    #: the workers' HTTP ports: the range of the node's slot, and the helper's choice around ports others hold
    http_ports: tuple[int, int] = (0, -1)
    http: tuple[int, ...] = ()


def node_worker_argv(spec: NodeSpec, index: int = 0) -> list[str]:
    """Worker ``index`` on the node: its own ports of the user's block there."""
    ports = {"worker_ports": list(spec.worker_ports), "nanny_ports": list(spec.nanny_ports),
             "http_ports": list(spec.http_ports), "http": list(spec.http)}
    return _worker_argv([spec.scheduler], spec.listen, ports, index, spec.threads, spec.memory_limit,
                        spec.paths["scratch"], spec.tls, spec.paths["workers_pid_file"], spec.paths.get("preload"))


def node_window_lines(spec: NodeSpec, activation: list[str]) -> list[str]:
    """The lines typed into the workers window on the node (also what --explain prints): valid in any shell."""
    return [
        *activation,
        f"mkdir -p -m 700 {shlex.quote(spec.paths['workers_pid_file'].rsplit('/', 1)[0])} {shlex.quote(spec.paths['scratch'])}",
        *_started(spec.mark, [node_worker_argv(spec, i) for i in range(spec.workers)]),
    ]


#: Run by the env's python at a worker job's start on the compute node (argv: scheduler host, first and last
#: port of the range, the job's number): "ADDRESS PORT", this node's address on the way to the scheduler (no
#: packet is sent) and a free port of the range for the worker's HTTP server (Dask's own HTTP server takes no
#: range), looked for downwards from the job's own place in it, so jobs starting side by side differ.
JOB_NET_PROBE = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((sys.argv[1], 9)); here = s.getsockname()[0]
lo, hi, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
size = hi - lo + 1
for i in range(size):
    port = hi - (n + i) % size
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close()
    print(here, port); break
else:
    print(here, 0)"""
#: stand for the env's python and the job's number in job_prologue lines (the env program fills them in)
PYTHON_MARK = "{python}"
NUMBER_MARK = "{number}"


def job_worker_args(worker_ports: tuple[int, int], nanny_ports: tuple[int, int], listen: bool = True,
                    preload: str | None = None) -> list[str]:
    """A worker job's ``dask worker`` arguments besides dask-jobqueue's: the env's block ports, the HTTP server
    on loopback (``$PORTAL_HTTP``) and, unless the job settings name an interface, ``--host $PORTAL_LISTEN``
    (both set by :func:`job_prologue`; dask-jobqueue joins these into the script unquoted), and portal's
    preload (its HTTP server answers the user alone)."""
    w, n = worker_ports, nanny_ports
    args = ["--worker-port", f"{w[0]}:{w[1]}", "--nanny-port", f"{n[0]}:{n[1]}",
            "--dashboard-address", f"{LOOPBACK}:$PORTAL_HTTP", *_preload_args(shlex.quote(preload) if preload else None)]
    return args + (["--host", "$PORTAL_LISTEN"] if listen else [])


def job_prologue(scheduler: str | None, http_ports: tuple[int, int]) -> list[str]:
    """Lines a worker job runs before ``dask worker``: TLS required, and PORTAL_LISTEN / PORTAL_HTTP (a free
    port of the env's workers' HTTP range)."""
    host = (scheduler or "").split("://", 1)[-1].rsplit(":", 1)[0] or "SCHEDULER_HOST"
    probe = shlex.join(["-c", JOB_NET_PROBE, host, str(http_ports[0]), str(http_ports[1])]) + f" {NUMBER_MARK}"
    return [
        "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True",
        f"PORTAL_NET=$({PYTHON_MARK} {probe})",
        'PORTAL_LISTEN="${PORTAL_NET% *}"; PORTAL_HTTP="${PORTAL_NET#* }"',
    ]

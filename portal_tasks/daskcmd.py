"""Dask command lines (pure): scheduler and worker argv, the lines typed into the cluster window, client variables.

Every listener binds 127.0.0.1 and speaks TLS with the user's own certificate; with workers on other
servers, the scheduler and workers listen on the address those servers reach (still TLS only).
On the host the scheduler and the nannies of the env's workers run in one ``dask spec`` (one interpreter that
imports Dask once; each worker a process of its own under its nanny, forked from a forkserver), each worker's
HTTP server on its own port of the slot. Workers on other servers are one ``dask worker --nworkers N`` each,
where portal's preload gives each worker its own HTTP port (Dask would give them all one address).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ClusterError
from .plan import EnvPorts
from .remote import slots
from .remote.hostpaths import CLUSTER_MARK, CLUSTER_PID_FILE, WORKER_HTTP_PORTS
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


def _preload_args(preload: str | None, nanny: bool = False) -> list[str]:
    """portal's preload (remote/owner_only.py): the process's HTTP servers answer the user alone; with
    ``nanny``, also each nanny's (its worker's HTTP port)."""
    if not preload:
        return []
    return ["--preload", preload, *(["--preload-nanny", preload] if nanny else [])]


def _tls_config(tls: TlsPaths) -> dict[str, str]:
    """Dask's TLS settings of a scheduler and its workers in one process (``dask spec`` takes no TLS flags):
    the user's CA, certificate and key, as ``--tls-ca-file``, ``--tls-cert`` and ``--tls-key`` give them."""
    return {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": tls.ca,
            "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": tls.cert, "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": tls.key,
            "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT": tls.cert, "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY": tls.key}


def worker_name(mark: str, index: int, workers: int) -> str:
    """Worker ``index``'s name, as ``dask worker --name MARK --nworkers N`` names them: ``MARK-I``, one alone ``MARK``."""
    return mark if workers == 1 else f"{mark}-{index}"


def servers(spec: ClusterSpec) -> dict[str, Any]:
    """What ``dask spec`` runs in one process: the scheduler and each worker's nanny (each nanny still starts
    its worker as a process of its own, and restarts it past its memory limit). The scheduler's port is
    fixed, so the nannies dial its address; each worker and nanny takes its own port of the slot's ranges
    (the next of the range when that one is taken) and its worker's HTTP server its own port."""
    preload = [spec.paths["preload"]] if spec.paths.get("preload") else []
    ports = spec.ports.as_dict()
    found: dict[str, Any] = {"scheduler": {"cls": "distributed.Scheduler", "opts": {
        "protocol": "tls", "host": spec.listen, "port": spec.ports.scheduler_port, "dashboard": True,
        "dashboard_address": f"{LOOPBACK}:{spec.ports.dashboard_port}", "scheduler_file": spec.paths["scheduler_file"],
        **({"preload": preload} if preload else {})}}}
    for i in range(spec.workers):
        own = slots.per_worker(ports, i)
        name = worker_name(spec.mark, i, spec.workers)
        found[name] = {"cls": "distributed.Nanny", "opts": {
            "scheduler_ip": spec.address, "protocol": "tls", "host": spec.listen, "name": name,
            "worker_port": "%d:%d" % tuple(own["worker_port"]), "port": "%d:%d" % tuple(own["nanny_port"]),
            "nthreads": spec.threads, "memory_limit": spec.memory_limit, "local_directory": spec.paths["scratch"],
            "dashboard": False, "dashboard_address": f"{LOOPBACK}:{own['http_port']}",
            **({"preload": preload} if preload else {})}}
    return found


def cluster_argv(spec: ClusterSpec) -> list[str]:
    """The env's cluster on the host: scheduler and nannies in one ``dask spec`` (one interpreter that imports
    Dask once, where ``dask scheduler`` and ``dask worker`` take two)."""
    return ["dask", "spec", "--spec", json.dumps(servers(spec), separators=(",", ":"))]


def cluster_environment(spec: ClusterSpec) -> dict[str, str]:
    """The variables of the cluster's ``dask spec``: TLS (:func:`_tls_config`), the file portal's preload writes
    the process's pid to (as ``--pid-file`` would), and with workers their HTTP ports (the preload then starts
    their forkserver at once)."""
    workers = _workers_environment(spec.ports.as_dict(), spec.workers) if spec.workers else {}
    return {**_tls_config(spec.tls), CLUSTER_PID_FILE: spec.paths["scheduler_pid_file"], **workers}


def _workers_argv(scheduler: list[str], listen: str, ports: dict[str, Any], workers: int, name: str, threads: int,
                  memory_limit: int, scratch: str, tls: TlsPaths, pid_file: str, preload: str | None) -> list[str]:
    """``workers`` workers in one ``dask worker --nworkers N`` named ``name-I``: its nannies take the worker and nanny
    ports of the slot's ranges (Dask deals them out in turn), each worker its HTTP port (:func:`_workers_environment`)."""
    w, n = ports["worker_ports"], ports["nanny_ports"]
    return [
        "dask", "worker", *scheduler, "--protocol", "tls", "--host", listen, "--nworkers", str(workers), "--name", name,
        "--worker-port", f"{w[0]}:{w[1]}", "--nanny-port", f"{n[0]}:{n[1]}", "--no-dashboard",
        # the first worker's HTTP server (/health); else on 0.0.0.0. The preload gives each worker its own.
        "--dashboard-address", f"{LOOPBACK}:{slots.per_worker(ports, 0)['http_port']}",
        "--nthreads", str(threads), "--memory-limit", str(memory_limit),
        "--local-directory", scratch, *_tls_args(tls), "--pid-file", pid_file, *_preload_args(preload, nanny=True),
    ]


def _workers_environment(ports: dict[str, Any], workers: int) -> dict[str, str]:
    """The variables of the workers' ``dask worker``: each worker's HTTP port, for portal's nanny preload."""
    return {WORKER_HTTP_PORTS: ",".join(str(slots.per_worker(ports, i)["http_port"]) for i in range(workers))}


#: In the environment of every process the cluster window starts: only TLS, whatever the user's Dask config.
ENCRYPTION = "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True"
#: Also there: a cluster that waits most of the day ticks less (docs/DECISIONS.md, issue 22). Dask's event-loop
#: tick every 20 ms in each server, its system monitor every 500 ms and each worker's profiler every 10 ms cost an
#: idle scheduler with one worker 61 CPU-ms a second (twenty colleagues' idle clusters: 1.2 cores); with these 17.
QUIET = ("DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=500ms", "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL=1s",
         "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL=100ms")
#: And there, with two workers or more: a nanny forks its worker from a server process that imported Dask once
#: (Python's forkserver, a method Dask offers) instead of spawning a new interpreter that imports it all again:
#: two workers cost 0.66 -> 0.44 CPU-s and the cluster is ready 0.3 s sooner. One worker costs the same CPU
#: either way, and spawned it needs no forkserver beside it (a resident process fewer; docs/DECISIONS.md).
FORKED = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=forkserver"


def _started(mark: str, variables: dict[str, str], argv: list[str], workers: int) -> str:
    """The line that starts ``argv`` marked, with portal's Dask settings and ``variables``, its log shown in the
    window; its workers forked from a forkserver when there are two or more. ``env NAME=VALUE`` sets variables
    the same way in every shell (bash, zsh, fish, tcsh)."""
    return shlex.join(["env", f"{CLUSTER_MARK}={mark}", ENCRYPTION, *QUIET, *([FORKED] if workers >= 2 else []),
                       *(f"{k}={v}" for k, v in variables.items()), *argv])


def window_lines(spec: ClusterSpec, activation: list[str]) -> list[str]:
    """The lines typed into the cluster window's shell (also what --explain prints): valid in any shell. The
    cluster's one process shows its log; with no workers on the host (``--workers 0``: batch jobs or other
    servers bring them) it runs the scheduler alone."""
    return [
        *activation,
        f"mkdir -p -m 700 {shlex.quote(spec.paths['scheduler_file'].rsplit('/', 1)[0])} {shlex.quote(spec.paths['scratch'])}",
        f"rm -f {shlex.quote(spec.paths['scheduler_file'])}",
        _started(spec.mark, cluster_environment(spec), cluster_argv(spec), spec.workers),
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


def _node_ports(spec: NodeSpec) -> dict[str, Any]:
    return {"worker_ports": list(spec.worker_ports), "nanny_ports": list(spec.nanny_ports),
            "http_ports": list(spec.http_ports), "http": list(spec.http)}


def node_workers_argv(spec: NodeSpec) -> list[str]:
    """The workers on the node, all in one ``dask worker``: their own ports of the user's block there."""
    return _workers_argv([spec.scheduler], spec.listen, _node_ports(spec), spec.workers, spec.mark, spec.threads,
                         spec.memory_limit, spec.paths["scratch"], spec.tls, spec.paths["workers_pid_file"],
                         spec.paths.get("preload"))


def node_window_lines(spec: NodeSpec, activation: list[str]) -> list[str]:
    """The lines typed into the workers window on the node (also what --explain prints): valid in any shell."""
    return [
        *activation,
        f"mkdir -p -m 700 {shlex.quote(spec.paths['workers_pid_file'].rsplit('/', 1)[0])} {shlex.quote(spec.paths['scratch'])}",
        _started(spec.mark, _workers_environment(_node_ports(spec), spec.workers), node_workers_argv(spec),
                 spec.workers),
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

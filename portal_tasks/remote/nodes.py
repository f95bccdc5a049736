"""Host-side pieces of workers on other servers (``up --workers-on``).

On the scheduler's host: the address of ``scheduler_interface`` (the scheduler listens there, TLS
only), and the TLS files for a node whose home is not shared. On a node: ports from the user's block
there (a slot of its own, ``KEY.from-ORIGIN``), a fair share of the node, the address the node
reaches the scheduler from, the bounded wait for the workers, and their stop. Their processes carry
``PORTAL_CLUSTER=KEY.from-ORIGIN@NODE``.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from typing import TYPE_CHECKING, Any

from . import cluster, files, hostpaths, ports, share, slots
from .common import Failure, install_preload, listeners, private_dirs, read_json, server_path, state_path, write_json
from .interfaces import route_source
from .tls import TLS_FILES, tls_dir, tls_status

if TYPE_CHECKING:
    from .common import Listener


def node_key(key: str, origin: str) -> str:
    return hostpaths.node_key(key, origin)


def record_path(nkey: str) -> str:
    return server_path("nodes", f"{nkey}.json")


def node_paths(nkey: str) -> dict[str, str]:
    return hostpaths.node_paths(server_path(), nkey)


def _healthy(record: Any, found: list[Listener]) -> bool:
    if not isinstance(record, dict):
        return False
    pids = cluster.workers_pids(record)
    if not pids or not all(cluster.own(pid) for pid in pids):
        return False
    return bool(cluster.own_listeners(found, *record.get("worker_ports", [0, -1])))


def prepare(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``nodes-prepare`` (on a node): reuse workers that run for the same scheduler, else stop stale ones,
    plan ports, register a share; returns what the worker command line needs."""
    nkey = node_key(payload["key"], payload["origin"])
    kind = cluster.env_kind(payload["env"])
    record = read_json(record_path(nkey), None)
    if _healthy(record, listeners()) and record.get("scheduler") == payload["scheduler"]:
        return {"reused": True, "record": record}
    survivors = cluster.terminate(cluster.marked_pids(nkey))
    if survivors:
        raise Failure(f"stale workers {survivors} of env {payload['env']} did not end.", "ClusterError",
                      hint=f"Look at them with `ps -fp {','.join(map(str, survivors))}`.")
    share.release(payload["plan"], nkey)
    host = payload["scheduler"].split("://", 1)[-1].rsplit(":", 1)[0]
    listen = route_source(host)
    planned = ports.assign({"plan": payload["plan"], "key": nkey, "env": payload["env"], "check": [], "replan": True})
    asked = payload.get("share") or {}
    budget = share.register(payload["plan"], nkey, asked.get("memory"), int(asked.get("cores", 0)),
                            int(asked.get("workers", 1)))
    paths = node_paths(nkey)
    for path in [paths["workers_pid_file"]] + cluster.worker_pid_files(paths):
        if os.path.isfile(path):
            os.unlink(path)
    state_path("nodes", "x")
    install_preload(paths["preload"])
    tls = tls_status({})
    planned_ports = dict(planned["ports"], http=ports.choose_http(planned["ports"], listeners()))
    return {"reused": False, "ports": planned_ports, "notes": planned["notes"] + budget.pop("notes"),
            "share": budget, "listen": listen, "env_kind": kind, "paths": paths,
            "mark": hostpaths.cluster_mark(nkey, platform.node()), "tls_cert": tls.get("cert"), "tls_dir": tls["dir"]}


def wait(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``nodes-wait`` (on a node): bounded wait until each worker, its nanny and its HTTP server listen
    (one moved outside the block by Dask counts, with a note); records them."""
    nkey = node_key(payload["key"], payload["origin"])
    rec, n = payload["ports"], int(payload["workers"])
    block = ports.recorded_block()
    http = [slots.per_worker(rec, i)["http_port"] for i in range(n)]
    pid_file = node_paths(nkey)["workers_pid_file"]
    deadline = time.monotonic() + float(payload.get("seconds", 60))
    while True:
        pids = [cluster.read_pid(pid_file)]  # one `dask worker --nworkers N` for all
        if pids[0] and not cluster.own(pids[0]):
            raise Failure("the workers' `dask worker` exited right after starting.", "ClusterError")
        found = listeners()
        got = len(cluster.own_listeners(found, *rec["worker_ports"]))
        served = sum(1 for e in found if e["uid"] == os.getuid() and e["port"] in http)
        strays = cluster.outside_block(nkey, block, found)
        if all(pids) and got >= n and len(cluster.own_listeners(found, *rec["nanny_ports"])) >= n \
                and served + len(strays) >= n:
            break
        if time.monotonic() > deadline:
            raise Failure(f"the workers did not come up within {payload.get('seconds', 60)}s ({got} of {n} listening, "
                          f"{served + len(strays)} of their HTTP servers).", "ClusterError")
        time.sleep(0.1)
    found = listeners()
    note = cluster.moved_http_note(payload["key"], http, cluster.outside_block(nkey, block, found), [], found, block)
    record: dict[str, Any] = {"key": payload["key"], "origin": payload["origin"], "scheduler": payload["scheduler"],
              "workers_pid": pids[0], "workers_pids": pids, "workers": n, "worker_ports": rec["worker_ports"],
              "nanny_ports": rec["nanny_ports"], "http_ports": rec.get("http_ports"), "http": http, "block": block,
              "memory_limit": payload.get("memory_limit"), "hostname": platform.node(), "started": time.time()}
    write_json(state_path("nodes", f"{nkey}.json"), record)
    share.bind(payload["plan"], nkey, pids)
    return dict(record, notes=[note] if note else [])


def stop(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``nodes-stop`` (on a node): end the user's workers of that cluster here and forget them."""
    nkey = node_key(payload["key"], payload["origin"])
    pids = cluster.marked_pids(nkey)
    survivors = cluster.terminate(pids)
    if not survivors:
        share.release(payload["plan"], nkey)
        paths = node_paths(nkey)
        for path in [record_path(nkey), paths["workers_pid_file"]] + cluster.worker_pid_files(paths):
            if os.path.isfile(path):
                os.unlink(path)
        shutil.rmtree(server_path("nodes", nkey + ".tls"), ignore_errors=True)
    return {"stopped": pids, "survivors": survivors}


def tls_export(_payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Verb ``tls-export`` (on the scheduler's host): the user's TLS files, for a node that does not share
    them. They travel in the reply over the user's ssh connection, never in an argv."""
    found: dict[str, str] = {}
    for name in TLS_FILES:
        with open(os.path.join(tls_dir(), name)) as fh:
            found[name] = fh.read()
    return {"files": found}


def tls_for_workers(payload: dict[str, Any]) -> dict[str, str]:
    """Verb ``nodes-tls`` (on a node) {key, origin, files}: the scheduler host's TLS set for these workers
    only, in a 0700 directory of files 0600 beside their record; the node's own set is left alone."""
    directory = server_path("nodes", node_key(payload["key"], payload["origin"]) + ".tls")
    private_dirs(directory)
    os.chmod(directory, 0o700)
    for name in TLS_FILES:
        files.write_atomic(os.path.join(directory, name), payload["files"][name].encode())
    return {"dir": directory}


VERBS = {"nodes-prepare": prepare, "nodes-wait": wait, "nodes-stop": stop, "tls-export": tls_export,
         "nodes-tls": tls_for_workers}

"""Workers of the user's cluster on other servers (`up --workers-on node1,node2`).

Each node is reached through its own link (the same ssh config); in the user's tmux session there a
window ``workers-KEY`` runs ``dask worker`` that dials the scheduler over TLS, on ports of the user's
block on that node, with a fair share of that node's memory. ``down`` stops them there too.
"""

from __future__ import annotations

from typing import Any

from .. import daskcmd, plan, tls
from ..errors import ClusterError
from ..remote import hostpaths, tmux
from ..replies import ClusterState, WorkersOn
from ..request import ClusterOptions
from ..target import Explained, Target
from ..tls import TlsPaths
from . import cluster

WAIT_SECONDS = 90


def window_name(key: str) -> str:
    return f"workers-{key}"


def _window_payload(session: str, name: str, lines: list[str]) -> dict[str, Any]:
    """The ``up`` verb's payload on a node: the session, and the workers window (a running one replaced)."""
    return {"session": tmux.session_plan(session), "locks": [],
            "windows": [tmux.window_plan(session, name, lines)]}


def _origin(target: Target) -> str:
    return str(target.facts()["hostname"])


def start(target: Target, state: ClusterState, spec_text: str, options: ClusterOptions) -> list[dict[str, Any]]:
    """Start (or keep) the workers on each of ``options.workers_on``; their records."""
    hosts = options.workers_on
    if not hosts:
        return []
    daskcmd.require_reachable(target.host, state, spec_text, ", ".join(hosts), "--workers-on")
    cert = target.link.helper("tls-status", {}).get("cert")  # the scheduler host's set: asked once for all nodes
    return [_start_on(target, target.other(host), state, spec_text, options.for_nodes(), cert) for host in hosts]


def _start_on(target: Target, node: Target, state: ClusterState, spec_text: str,
              options: ClusterOptions, cert: str | None) -> dict[str, Any]:
    key, origin = state["key"], _origin(target)
    facts = node.facts()
    payload = {"key": key, "origin": origin, "env": spec_text, "scheduler": state["address"],
               "plan": plan.plan_payload(node.settings, facts["uid"]), "share": cluster.share_request(node, options)}
    with node.link.lock(f"nodes-{key}"):
        prep = node.link.helper("nodes-prepare", payload)
        for note in prep.get("notes", []):
            target.say(f"{node.host}: {note}")
        if prep["reused"]:
            target.say(f"{node.host}: keeping your {prep['record']['workers']} workers for {state['address']}.")
            return dict(prep["record"])
        tls_dir = prep["tls_dir"]
        if prep.get("tls_cert") != cert:
            # a home this node does not share: the scheduler host's set for these workers only (0600, over stdin)
            files = target.link.helper("tls-export", {})["files"]
            tls_dir = node.link.helper("nodes-tls", {"key": key, "origin": origin, "files": files})["dir"]
        limit = plan.split_memory(int(prep["share"]["memory"]), options.workers)
        spec = daskcmd.NodeSpec(mark=prep["mark"], scheduler=state["address"], listen=prep["listen"],
                                worker_ports=tuple(prep["ports"]["worker_ports"]),
                                nanny_ports=tuple(prep["ports"]["nanny_ports"]),
                                http_ports=tuple(prep["ports"].get("http_ports") or (0, -1)),
                                http=tuple(prep["ports"].get("http") or ()),
                                tls=TlsPaths(tls_dir), paths=prep["paths"], workers=options.workers,
                                threads=options.threads, memory_limit=limit)
        lines = daskcmd.node_window_lines(spec, cluster.activation(node, spec_text, prep.get("env_kind")))
        node.link.helper_stream("up", _window_payload(node.settings.session, window_name(key), lines),
                                lambda event: None, timeout=60)
        record = node.link.helper("nodes-wait", {"key": key, "origin": origin, "ports": prep["ports"],
                                                 "workers": spec.workers, "seconds": WAIT_SECONDS,
                                                 "scheduler": state["address"], "memory_limit": limit,
                                                 "plan": payload["plan"]}, timeout=WAIT_SECONDS + 30)
    for note in record.get("notes", []):
        target.say(f"{node.host}: {note}")
    target.say(f"{node.host}: {spec.workers} workers x {spec.threads} threads, {plan.format_bytes(limit)} each, "
               f"joined your cluster {state['address']} (listening on {prep['listen']}).")
    return dict(record)


def stop(target: Target, entry: WorkersOn) -> list[str]:
    """End the workers of a cluster (as ``down`` names it) on every server it has them on."""
    stopped = []
    for host in entry.get("workers_on") or []:
        node = target.other(host)
        payload = {"key": entry["env_key"], "origin": _origin(target),
                   "plan": plan.plan_payload(node.settings, node.facts()["uid"])}
        with node.link.lock(f"nodes-{entry['env_key']}"):
            result = node.link.helper("nodes-stop", payload)
            node.link.run(tmux.kill_window(node.settings.session, window_name(entry["env_key"])),
                          timeout=15)  # a window gone already is as good
        if result["survivors"]:
            raise ClusterError(f"workers {result['survivors']} of env {entry['env']} did not end.", host=node.host,
                               hint="Look at them with ps, and kill them by pid.")
        stopped.append(f"workers {entry['env']} on {host}")
    return stopped


def explain(target: Target, spec_text: str, options: ClusterOptions) -> Explained:
    """What a person types on each of ``options.workers_on`` (read-only questions only): the workers window
    dialing the scheduler on scheduler_interface, on that node's block ports, each node in its own heredoc."""
    hosts, options = options.workers_on, options.for_nodes()
    if not hosts:
        return Explained()
    key = plan.env_key(spec_text)
    listen = target.link.helper("interface-address", {"name": target.settings.scheduler_interface})["address"]
    address = f"tls://{listen}:{cluster.planned_ports(target, key)['scheduler_port']}"
    local = []
    for host in hosts:
        node = target.other(host)
        facts = node.facts()
        nkey = hostpaths.node_key(key, _origin(target))
        ports = cluster.planned_ports(node, nkey)
        if not ports:
            raise ClusterError(f"your port block has no free slot for the workers of env {spec_text}.", host=host)
        asked = cluster.share_request(node, options)["memory"]
        budget = asked if asked is not None else cluster.share_report(node, nkey)["default_memory"]
        spec = daskcmd.NodeSpec(
            mark=hostpaths.cluster_mark(nkey, str(facts["hostname"])), scheduler=address,
            listen=node.link.helper("route-source", {"address": listen})["address"],
            worker_ports=tuple(ports["worker_ports"]), nanny_ports=tuple(ports["nanny_ports"]),
            http_ports=tuple(ports.get("http_ports") or (0, -1)),
            tls=tls.paths(str(facts["home"])), paths=hostpaths.node_paths(node.server_dir(), nkey),
            workers=options.workers, threads=options.threads,
            memory_limit=plan.split_memory(int(budget), options.workers))
        session = node.settings.session
        lines = [*cluster.preload_lines(spec.paths), tmux.ensure_session_line(session),
                 *tmux.explain_window(tmux.window_plan(
                     session, window_name(key), daskcmd.node_window_lines(spec, cluster.activation(node, spec_text))))]
        local.append(f"# workers on {host} (its home must hold your ~/.portal/tls, as a shared home does)")
        local.append(node.render(Explained(remote=lines)))
    return Explained(local=local)

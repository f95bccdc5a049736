"""`status`: what runs for this user on the host, and what is exposed (read-only)."""

from __future__ import annotations

from typing import Any

from .. import plan, state
from ..plan import format_bytes
from ..services import probe_url
from ..parts import cluster
from ..target import Target
from . import forward as forward_step
from .ports import OWNER

EXPOSURE = ("Dashboards and workers' HTTP servers answer you alone (portal's owner check), scheduler and workers "
            "your TLS certificate, Jupyter its token; `portal ports` says who can reach each listener. Forwards "
            "listen on your laptop's 127.0.0.1, where other users of the laptop can reach them.")


def forwards(target: Target) -> list[dict[str, Any]]:
    rows = []
    for name, entry in sorted(state.load_forwards(target.host).items()):
        url = str(entry.get("url", ""))
        rows.append({"service": name, "local_port": entry.get("local_port"), "remote": entry.get("remote"),
                     "url": url, "answers": bool(url) and forward_step.answers(probe_url(name, url), timeout=2.0)})
    return rows


def run(target: Target) -> dict[str, Any]:
    """Everything from one ``snapshot`` call (sessions, clusters, Jupyter, ports, share), then the forwards."""
    from . import ports
    from ..parts import cluster

    planned = dict(plan.plan_payload(target.settings, 0), first=None)  # the host knows its uid: its own block
    snap = target.link.helper("snapshot", {"session": target.settings.session, "env": None, "plan": planned,
                                           "key": None, "sessions": True})
    target.cache.facts = snap["facts"]
    facts = snap["facts"]
    return {
        "host": target.host,
        "user": facts["user"],
        "uid": facts["uid"],
        "sessions": [dict(s, portal=s["name"] == target.settings.session) for s in snap.get("sessions") or []],
        "clusters": [cluster.describe_entry(c) for c in snap["clusters"]],
        "jupyter": list(snap["jupyters"] or []),
        "forwards": forwards(target),
        "ports": ports.from_report(target, snap["ports"]),
        "share": snap["share"],
        "exposure": EXPOSURE.format(host=target.host),
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['host']}: user {report['user']} (uid {report['uid']})", *service_lines(report)]
    from .ports import claim_state
    p, block = report["ports"], report["ports"].get("block", {})
    lines.append(f"  ports: block {block.get('start')}-{block.get('end')} ({claim_state(block)}), "
                 f"{p.get('listening')} listening now ({p.get('listening_in_block')} in the block)")
    for s in [*p.get("sockets", []), *p.get("unix", [])]:
        if s.get("who", OWNER) != OWNER:
            where = s.get("path") or f"{s['addr']}:{s['port']}"
            lines.append(f"  reachable by {s['who']}: {where} ({s['command'] or '?'}): {s['by']}")
    lines += share_lines(report["share"])
    lines.append(f"  note: {report['exposure']}")
    return "\n".join(lines)


def share_lines(share: dict[str, Any]) -> list[str]:
    """The server's share table: caps, each user's memory and cores, what is free."""
    caps = share["caps"]
    cores = f", {caps['cores_total']} cores" if caps.get("cores_total") else ""
    seen = "" if share["trusted"] else " (others' shares read from their running workers)"
    lines = [(f"  server share: portal clusters may use {format_bytes(caps['memory_total'])}{cores} together "
              f"({format_bytes(caps['memory_per_user'])} per user); {format_bytes(share['free_memory'])} free{seen}")]
    for row in share["users"]:
        lines.append(f"    {row['user']:<12} {format_bytes(row['memory']):>10}  {row['cores']:>3} cores  "
                     f"{row['clusters']} cluster(s)")
    return lines


def service_lines(report: dict[str, Any]) -> list[str]:
    """The indented lines for a report's sessions, clusters, Jupyter servers and forwards."""
    lines = []
    for session in report["sessions"]:
        windows = ", ".join(f"{w['name']} ({w['command']})" for w in session["windows"])
        lines.append(f"  tmux session {session['name']}: {windows}")
    if not report["sessions"]:
        lines.append("  no tmux session")
    for c in report["clusters"]:
        health = "healthy" if c.get("healthy") else "NOT healthy"
        workers = cluster.alone_text(c) or (f"workers {c.get('workers_running')}/{c.get('workers')} "
                                            f"memory {format_bytes(c.get('memory_budget') or 0)}")
        lines.append(f"  cluster {c['env']}: {c.get('address')} dashboard :{c.get('dashboard_port')} {workers} "
                     f"pid {c.get('pid')} {health}"
                     + (f" + workers on {', '.join(c['workers_on'])}" if c.get("workers_on") else ""))
        for job in c.get("jobs") or []:
            why = f" ({job['reason']})" if job.get("reason") else ""
            joined = ", ".join(job["workers"]) or "no workers joined"
            lines.append(f"    job {job['id']} {job['name']}: {job['state']}{why}, {joined}")
        if c.get("dashboard_problem"):
            lines.append(f"    dashboard: {c['dashboard_problem']}")
        if c.get("dashboard_unowned"):
            lines.append(f"    dashboard not forwarded: {c['dashboard_unowned']}")
        if c.get("outside_block"):
            lines.append(f"    listening outside your port block: {', '.join(c['outside_block'])} "
                         f"(`portal down --env {c['env']}` and up again moves them in)")
    for j in report["jupyter"]:
        where = j.get("socket") or f"127.0.0.1:{j.get('port')}"
        lines.append(f"  jupyter {j['env']}: {where} {'healthy' if j.get('healthy') else 'NOT healthy'}")
        if j.get("problem"):
            lines.append(f"    not forwarded: {j['problem']}")
    for f in report["forwards"]:
        said = {True: "answers", False: "does NOT answer", None: "not checked in time"}[f["answers"]]
        lines.append(f"  forward {f['service']}: {f['url']} -> {f['remote']} {said}")
    return lines

"""What the page shows, built from `status --all` reports (pure: no I/O).

One row per service a browser wants (a cluster's dashboard, a Jupyter server), joining what runs on
the host with the laptop's forward of it, and one health word per row the page colours.
"""

from __future__ import annotations

from typing import Any

from ..parts import cluster
from ..plan import format_bytes
from ..services import service_name

OK, BAD, UNKNOWN = "ok", "bad", "unknown"


def _forward_state(forward: dict[str, Any] | None) -> str:
    if forward is None:
        return "none"
    return {True: "answers", False: "down", None: "unknown"}[forward.get("answers")]


def row(kind: str, env: str, name: str, running: bool, detail: str, forward: dict[str, Any] | None,
        host: str, problem: str | None = None) -> dict[str, Any]:
    """One service as the page shows it: health, what to say about it, and its link (when forwarded)."""
    state = _forward_state(forward)
    if problem:
        health, says = BAD, problem
    elif not running:
        health, says = BAD, f"not running on {host}"
    elif state == "answers":
        health, says = OK, "healthy"
    elif state == "unknown":
        health, says = UNKNOWN, "forward not checked in time"
    elif state == "down":
        health, says = BAD, "forward does not answer: re-forward"
    else:
        health, says = BAD, "not forwarded: re-forward"
    return {"kind": kind, "env": env, "name": name, "running": running, "detail": detail, "forward": state,
            "url": forward.get("url") if forward and running else None, "health": health, "says": says}


def services(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one reachable host: dashboards, then Jupyter servers, then forwards of services now gone."""
    host = report["host"]
    forwards = {f["service"]: f for f in report["forwards"]}
    rows = []
    for c in report["clusters"]:
        name = service_name("dashboard", c["env_key"])
        workers = cluster.alone_text(c) or (f"{c.get('workers_running')}/{c.get('workers')} workers, "
                                            f"{format_bytes(c.get('memory_budget') or 0)}")
        detail = f"{workers}, scheduler {c.get('address')}"
        rows.append(row("dashboard", c["env"], name, bool(c.get("healthy")), detail, forwards.pop(name, None), host,
                        c.get("dashboard_unowned") or c.get("dashboard_problem")))
    for j in report["jupyter"]:
        name = service_name("jupyter", j["env_key"])
        where = j.get("socket") or f"127.0.0.1:{j.get('port')}"
        rows.append(row("jupyter", j["env"], name, bool(j.get("healthy")), f"JupyterLab on {where}",
                        forwards.pop(name, None), host, j.get("problem")))
    for name, fwd in forwards.items():
        kind, _, key = name.partition("-")
        rows.append(row(kind, key, name, False, "forwarded, but no longer recorded on the host", fwd, host))
    return rows


def host_view(report: dict[str, Any]) -> dict[str, Any]:
    if not report["reachable"]:
        return {"host": report["host"], "reachable": False, "error": report["error"], "services": [], "envs": []}
    envs = sorted({c["env"] for c in report["clusters"]} | {j["env"] for j in report["jupyter"]})
    return {"host": report["host"], "reachable": True, "error": None, "user": report.get("user"),
            "services": services(report), "envs": envs}


def view(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's JSON: every host with its services and the envs its "stop" action may name."""
    return {"hosts": [host_view(r) for r in reports]}

"""`ports`: the user's port plan on a host (block, per-env ports) and the listening ports they hold now."""

from __future__ import annotations

from typing import Any

from .. import plan
from ..target import Explained, Target

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
#: who can reach a listener of the user (the helper's words, remote/reach.py)
OWNER = "owner only"


def reach_words(listener: dict[str, Any]) -> str:
    """Who can reach a listener the helper described, and by what, for a line (nothing for an older helper's)."""
    return f"  -- {listener['who']} ({listener['by']})" if listener.get("who") else ""


def run(target: Target) -> dict[str, Any]:
    """The plan and what is in use (read-only; the block is claimed by the first `cluster`/`jupyter`)."""
    facts = target.facts()
    return from_report(target, target.link.helper("ports-report", {"plan": plan.plan_payload(target.settings,
                                                                                             facts["uid"])}))


def from_report(target: Target, raw: dict[str, Any]) -> dict[str, Any]:
    """:func:`run`'s report from a ``ports-report`` answer (also the snapshot's ``ports``)."""
    facts = target.facts()
    block = raw["block"]
    sockets = raw["listening"]
    envs = {
        key: {"env": rec.get("env", key), "slot": rec.get("slot"), "scheduler_port": rec["scheduler_port"],
              "dashboard_port": rec["dashboard_port"], "jupyter_port": rec["jupyter_port"],
              "worker_ports": rec["worker_ports"], "nanny_ports": rec["nanny_ports"],
              "http_ports": rec.get("http_ports")}  # None: planned by an earlier portal, planned again at its start
        for key, rec in sorted(raw["envs"].items())
    }
    return {
        "host": target.host, "user": facts["user"], "uid": raw["uid"],
        "block": {"index": block["index"], "start": block["start"], "end": block["end"], "claimed": raw["claimed"],
                  "claim": raw.get("claim"), "claimed_by": raw.get("claimed_by")},
        "envs": envs,
        "listening": len(sockets),
        "listening_in_block": sum(1 for s in sockets if block["start"] <= s["port"] <= block["end"]),
        "listening_not_loopback": sum(1 for s in sockets if s["addr"] not in LOOPBACK),
        "sockets": sockets,  # each with who can reach it ("who") and what keeps others out ("by")
        "unix": list(raw.get("unix") or []),
        "not_owner_only": sum(1 for s in [*sockets, *(raw.get("unix") or [])] if s.get("who", OWNER) != OWNER),
    }


def render(report: dict[str, Any]) -> str:
    """The human form of :func:`run`'s report."""
    b = report["block"]
    state = claim_state(b)
    lines = [f"{report['host']}: {report['user']} (uid {report['uid']}) port block {b['index']}: "
             f"{b['start']}-{b['end']} ({state})"]
    for key, e in report["envs"].items():
        lines.append(f"  env {e['env']}: scheduler {e['scheduler_port']}, dashboard {e['dashboard_port']}, "
                     f"jupyter {e['jupyter_port']}, workers {e['worker_ports'][0]}-{e['worker_ports'][1]}, "
                     f"nannies {e['nanny_ports'][0]}-{e['nanny_ports'][1]}, "
                     + (f"workers' HTTP {e['http_ports'][0]}-{e['http_ports'][1]}" if e.get("http_ports") else
                        "workers' HTTP outside the block (planned by an earlier portal; moves in at the next start)"))
    if not report["envs"]:
        lines.append("  no env has ports yet (`portal cluster --env E` plans them)")
    lines.append(f"  listening now: {report['listening']} port(s), {report['listening_in_block']} in your block, "
                 f"{report['listening_not_loopback']} not on loopback")
    for s in report["sockets"]:
        lines.append(f"    {s['addr']}:{s['port']}  pid {s['pid'] or '?'}  {s['command']}{reach_words(s)}")
    for u in report.get("unix") or []:
        lines.append(f"    {u['path']}  pid {u['pid'] or '?'}  {u['command']}{reach_words(u)}")
    return "\n".join(lines)


def claim_state(block: dict[str, Any]) -> str:
    """Whose the block is and where its claim lives, in words."""
    where = block.get("claim")
    if block.get("claimed"):
        return f"claimed: {where}"
    if block.get("claimed_by"):
        return f"claimed by {block['claimed_by']}: {where}; your next `up` moves you to a free block"
    if where:
        return f"not claimed yet, its claim would be {where}"
    return "not claimed: no claims directory portal can trust, ports are chosen by who holds them"


def check_lines(target: Target) -> list[tuple[bool | None, str]]:
    """For `check`: the block, and whether the user holds sockets outside it or off loopback."""
    report = run(target)
    b = report["block"]
    lines: list[tuple[bool | None, str]] = [(True, f"{target.host}: port block {b['start']}-{b['end']}"
                                                   f" ({claim_state(b)})")]
    if report["listening_not_loopback"]:
        lines.append((None, f"{target.host}: {report['listening_not_loopback']} of your listening ports are not on "
                            "127.0.0.1 (other users can reach them)"))
    return lines


def explain(target: Target) -> Explained:
    return Explained(remote=["ss -Htlnp    # your listening sockets (uid shown with -e)"])

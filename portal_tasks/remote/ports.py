"""Host-side port plan: claim the user's block in a shared sticky dir, give each env a slot, check owners.

The laptop sends the plan's numbers (``plan.plan_payload`` there); this side knows who holds
which port. ``~/.portal/ports.json`` remembers the block and each env's ports (under the lock ``ports``).
"""

import os
import stat

from .common import Failure, listeners, locked, read_json, state_path, write_json

CLAIM_DIR = "/tmp/portal-ports"
SINGLES = ("scheduler_port", "dashboard_port", "jupyter_port")
RANGES = ("worker_ports", "nanny_ports")


def claim_dir(path=CLAIM_DIR):
    """The shared claims directory (mode 1777, like /tmp), made on first use."""
    try:
        os.mkdir(path, 0o1777)
        os.chmod(path, 0o1777)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or not st.st_mode & stat.S_ISVTX:
        raise Failure("%s is not a sticky shared directory (mode %o)." % (path, stat.S_IMODE(st.st_mode)),
                      "PortError", hint="Ask the admins to remove it, or set PORTAL port_base for this host.")
    return path


def claim(index, path=CLAIM_DIR):
    """Claim block ``index`` (O_EXCL file owned by this user); True when it is ours."""
    name = os.path.join(claim_dir(path), "block-%d" % index)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        st = os.lstat(name)
        return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
    with os.fdopen(fd, "w") as fh:
        fh.write("%d\n" % os.getuid())
    return True


def _block(plan, index):
    start = plan["base"] + (index % plan["slots"]) * plan["block_size"]
    return {"index": index % plan["slots"], "start": start, "end": start + plan["block_size"] - 1}


def _recorded_block(data, plan):
    rec = data.get("block")
    if not rec:
        return None
    if rec != _block(plan, rec.get("index", -1)):  # base or block size changed: plan again
        data["envs"] = {}
        return None
    return rec


def ensure_block(data, plan, notes, claims=CLAIM_DIR):
    """The user's block: the recorded one if still ours, else the first free from the uid's first choice."""
    rec = _recorded_block(data, plan)
    if rec and claim(rec["index"], claims):
        return rec
    for step in range(plan["slots"]):
        index = (plan["first"] + step) % plan["slots"]
        if claim(index, claims):
            block = _block(plan, index)
            if index != plan["first"]:
                notes.append("port block %d is claimed by another user; you have block %d (ports %d-%d)."
                             % (plan["first"], index, block["start"], block["end"]))
            if rec and rec["index"] != index:
                data["envs"] = {}
            data["block"] = block
            return block
    raise Failure("every port block from %d is claimed by other users." % plan["base"], "PortError",
                  hint="Ask the admins to clear %s, or set port_base/slots for this host in portal.yaml." % claims)


def slot_ports(block, plan, slot):
    base = block["start"] + slot * plan["slot_size"]
    layout = plan["layout"]
    ports = {name: base + layout[name] for name in SINGLES}
    for name in RANGES:
        ports[name] = [base + layout[name][0], base + layout[name][1]]
    return ports


def used_ports(envs, skip=None):
    """Every port recorded for the user's envs (except env ``skip``)."""
    used = set()
    for key, rec in envs.items():
        if key == skip:
            continue
        used.update(rec.get(name) for name in SINGLES)
        for name in RANGES:
            lo, hi = rec.get(name, [0, -1])
            used.update(range(lo, hi + 1))
    return used


def ensure_env(data, plan, key, env, block):
    """The env's recorded ports, or a new slot (the first slot no env of the user has)."""
    envs = data.setdefault("envs", {})
    if key in envs:
        return envs[key]
    taken = {rec.get("slot") for rec in envs.values()}
    free = [s for s in range(plan["slots_per_block"]) if s not in taken]
    if not free:
        raise Failure("your port block %d-%d is full (envs: %s)." % (block["start"], block["end"], ", ".join(sorted(envs))),
                      "PortError", hint="Remove an env you no longer use from ~/.portal/ports.json, or raise block_size.")
    rec = dict(slot_ports(block, plan, free[0]), env=env, slot=free[0])
    envs[key] = rec
    return rec


def holders(port, found):
    return [entry for entry in found if entry["port"] == port]


def next_free(preferred, block, taken):
    span = block["end"] - block["start"] + 1
    for step in range(span):
        port = block["start"] + (preferred - block["start"] + step) % span
        if port not in taken:
            return port
    return None


def _describe(entry):
    if entry["uid"] != os.getuid():
        return "another user (uid %d)" % entry["uid"]
    return "another program of yours (%s)" % (" ".join(entry["cmdline"][:3]) or "pid %s" % entry["pid"])


def check_ports(data, rec, key, block, services, own_pids, notes):
    """Move each planned port of ``services`` held by anything but ``own_pids`` to the next free port."""
    found = listeners()
    own = set(own_pids or ())
    for name in services:
        port = rec[name]
        others = [e for e in holders(port, found) if not (e["uid"] == os.getuid() and e["pid"] in own)]
        if not others:
            continue
        taken = used_ports(data["envs"]) | {e["port"] for e in found}
        new = next_free(port, block, taken)
        if new is None:
            raise Failure("port %d (%s of env %s) is held by %s and your block has no free port."
                          % (port, name, rec.get("env"), _describe(others[0])), "PortError",
                          hint="Stop what holds it, or raise block_size in portal.yaml.")
        rec[name] = new
        notes.append("port %d (planned %s for env %s) is held by %s; using %d instead."
                     % (port, name.replace("_port", ""), rec.get("env"), _describe(others[0]), new))
    for name in RANGES:
        lo, hi = rec[name]
        squat = [e for e in found if lo <= e["port"] <= hi and e["uid"] != os.getuid()]
        if squat:
            notes.append("%d port(s) of your %s %d-%d are held by other users; Dask skips them."
                         % (len(squat), name.replace("_", " "), lo, hi))


def assign(payload):
    """Verb ``ports-assign``: block + env slot, owners checked for ``check``; returns ports and notes."""
    plan = payload["plan"]
    notes = []
    with locked("ports"):
        path = state_path("ports.json")
        data = read_json(path, {}) or {}
        block = ensure_block(data, plan, notes)
        rec = ensure_env(data, plan, payload["key"], payload["env"], block)
        check_ports(data, rec, payload["key"], block, payload.get("check", ()), payload.get("own_pids"), notes)
        write_json(path, data)
    return {"block": block, "ports": rec, "notes": notes}


def report(payload):
    """Verb ``ports-report`` (read-only): the recorded plan and the listening sockets the user holds."""
    plan = payload["plan"]
    data = read_json(os.path.join(os.path.expanduser("~/.portal"), "ports.json"), {}) or {}
    block = _recorded_block(data, plan)
    envs = data.get("envs", {}) if block else {}
    uid = os.getuid()
    mine = [e for e in listeners() if e["uid"] == uid]
    result = {
        "uid": uid,
        "block": block or _block(plan, plan["first"]),
        "claimed": bool(block),
        "envs": envs,
        "listening": [{"addr": e["addr"], "port": e["port"], "pid": e["pid"],
                       "command": " ".join(e["cmdline"][:4])} for e in sorted(mine, key=lambda e: e["port"])],
    }
    if payload.get("key") and payload["key"] not in envs:
        taken = {rec.get("slot") for rec in envs.values()}
        free = [s for s in range(plan["slots_per_block"]) if s not in taken]
        result["would_be"] = slot_ports(result["block"], plan, free[0]) if free else None
    return result


VERBS = {"ports-assign": assign, "ports-report": report}

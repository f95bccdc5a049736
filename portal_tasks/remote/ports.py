"""Host-side port plan: claim the user's block in a shared sticky dir, give each env a slot, check owners.

The laptop sends the plan's numbers (``plan.plan_payload`` there); this side knows who holds
which port. ``ports.json`` in this server's state directory remembers the block and each env's ports
(under the lock ``ports``).
"""

import os
import stat

from .common import Failure, listeners, locked, read_state, server_path, state_path, user_name, write_json
from .layout import (
    DEFAULT_CLAIMS_DIR,
    HOST_CONFIG,
    OLD_RANGES,
    RANGES,
    SINGLES,
    SLOT_SIZE,
    block_range,
    free_slots,
    is_current,
    next_free,
    parse_host_config,
    recorded_ports,
    slot_ports,
)

ADMIN_HINT = "an admin can name a root-owned sticky directory as claims_dir in %s, see portal's README" % HOST_CONFIG


def host_config(path=HOST_CONFIG):
    """The admin's settings for portal on this host ({} without the file)."""
    try:
        with open(path) as fh:
            return parse_host_config(fh.read())
    except (OSError, UnicodeDecodeError):
        return {}


def claims_path(plan, config=HOST_CONFIG):
    """The claims directory: the user's claims_dir for this host, else the admin's, else the default."""
    return plan.get("claims_dir") or host_config(config).get("claims_dir") or DEFAULT_CLAIMS_DIR


def open_claims(path):
    """``(fd, None)`` for a claims directory portal can trust, else ``(None, what is wrong with it)``.

    Trusted: a real directory (not a symlink), sticky, owned by root or by this user (made here
    on first use, mode 1777), writable. A co-user's directory could drop or fake anyone's claims.
    """
    made = False
    try:
        os.mkdir(path, 0o1777)
        made = True
    except FileExistsError:
        pass
    except OSError as exc:
        return None, "cannot be made (%s)" % exc.strerror
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        try:
            st = os.lstat(path)
        except OSError:
            return None, "cannot be opened (%s)" % exc.strerror
        if stat.S_ISLNK(st.st_mode):
            return None, "is a symbolic link"
        if not stat.S_ISDIR(st.st_mode):
            return None, "is not a directory"
        return None, "cannot be opened (%s)" % exc.strerror
    st = os.fstat(fd)
    if made and st.st_uid == os.getuid():
        os.fchmod(fd, 0o1777)  # the umask took bits off mkdir's mode
        st = os.fstat(fd)
    problem = None
    if st.st_uid not in (0, os.getuid()):
        problem = "belongs to %s, not to root or you" % user_name(st.st_uid)
    elif not st.st_mode & stat.S_ISVTX:
        problem = "is not sticky (mode %o)" % stat.S_IMODE(st.st_mode)
    elif not os.access(path, os.W_OK | os.X_OK, follow_symlinks=False):
        problem = "is not writable for you (mode %o)" % stat.S_IMODE(st.st_mode)
    if problem:
        os.close(fd)
        return None, problem
    return fd, None


def claim(index, claims_fd):
    """Claim block ``index`` in the open claims directory (an O_EXCL file owned by this user); True when it is ours."""
    name = "block-%d" % index
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=claims_fd)
    except FileExistsError:
        st = os.stat(name, dir_fd=claims_fd, follow_symlinks=False)
        return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
    try:
        os.write(fd, b"%d\n" % os.getuid())
    finally:
        os.close(fd)
    return True


def _block(plan, index):
    return block_range(plan["base"], plan["block_size"], plan["slots"], index)


def _recorded_block(data, plan):
    rec = data.get("block")
    if not rec:
        return None
    if rec != _block(plan, rec.get("index", -1)):  # base or block size changed: plan again
        data["envs"] = {}
        return None
    return rec


def ensure_block(data, plan, notes, claims=None):
    """The user's block: the recorded one if still ours, else the first free from the uid's first choice.

    Without a claims directory portal can trust, the recorded block (else the uid's first choice)
    is used unclaimed: the owner checks of :func:`check_ports` then keep co-users' ports out.
    """
    rec = _recorded_block(data, plan)
    claims = claims or claims_path(plan)
    claims_fd, problem = open_claims(claims)
    if claims_fd is None:
        return _unclaimed(data, plan, rec, notes, "claims directory %s %s" % (claims, problem))
    try:
        if rec and claim(rec["index"], claims_fd):
            return rec
        for step in range(plan["slots"]):
            index = (plan["first"] + step) % plan["slots"]
            if claim(index, claims_fd):
                block = _block(plan, index)
                if index != plan["first"]:
                    notes.append("port block %d is claimed by another user; you have block %d (ports %d-%d)."
                                 % (plan["first"], index, block["start"], block["end"]))
                if rec and rec["index"] != index:
                    data["envs"] = {}
                data["block"] = block
                return block
    except OSError as exc:
        return _unclaimed(data, plan, rec, notes, "cannot claim a block in %s (%s)" % (claims, exc.strerror))
    finally:
        os.close(claims_fd)
    raise Failure("every port block from %d is claimed by other users." % plan["base"], "PortError",
                  hint="Ask the admins to clear %s, or set port_base/slots for this host in portal.yaml." % claims)


def _unclaimed(data, plan, rec, notes, why):
    block = rec or _block(plan, plan["first"])
    notes.append("%s; choosing ports %d-%d by who holds them. To share claims again, %s."
                 % (why, block["start"], block["end"], ADMIN_HINT))
    data["block"] = block
    return block


def used_ports(envs, skip=None):
    """Every port recorded for the user's envs (except env ``skip``)."""
    used = set()
    for key, rec in envs.items():
        if key != skip:
            used |= recorded_ports(rec)
    return used


def ensure_env(data, plan, key, env, block, replan=False, notes=None):
    """The env's recorded ports, or a new slot (the first slot no env of the user holds).

    A record an earlier portal planned (20-port slots, no room for the workers' HTTP servers) is
    kept as it is, unless ``replan`` (its cluster is about to start, nothing of it runs): then the
    env moves to a slot of this layout, and a note says so. Where no such slot is free (other envs'
    old records hold the ports), it keeps its record, and its workers' HTTP servers the kernel's ports.
    """
    envs = data.setdefault("envs", {})
    old = envs.get(key)
    if old is not None and (is_current(old) or not replan):
        return old
    others = {k: rec for k, rec in envs.items() if k != key}
    free = free_slots(block["start"], plan["slots_per_block"], others)
    if not free and old is not None:
        if notes is not None:
            notes.append("env %s keeps the ports an earlier portal planned: your block %d-%d has no free slot of %d "
                         "ports, so its workers' HTTP servers take ports outside the block. To move it in, remove "
                         "envs you no longer use from %s." % (env, block["start"], block["end"], SLOT_SIZE,
                                                               server_path("ports.json")))
        return old
    if not free:
        raise Failure("your port block %d-%d is full (envs: %s)." % (block["start"], block["end"], ", ".join(sorted(envs))),
                      "PortError", hint="Remove an env you no longer use from %s, or raise block_size." % server_path("ports.json"))
    rec = dict(slot_ports(block["start"], free[0]), env=env, slot=free[0])
    if old is not None and notes is not None:
        notes.append("env %s had ports an earlier portal planned, without room for its workers' HTTP servers; "
                     "it now has slot %d: scheduler %d, dashboard %d, jupyter %d, workers %d-%d, nannies %d-%d, "
                     "workers' HTTP %d-%d." % (env, free[0], rec["scheduler_port"], rec["dashboard_port"],
                                               rec["jupyter_port"], *rec["worker_ports"], *rec["nanny_ports"],
                                               *rec["http_ports"]))
    envs[key] = rec
    return rec


def choose_http(rec, found):
    """The workers' HTTP ports, worker i's the i-th: the ports of the env's HTTP range that nothing
    listens on now (Dask's HTTP server takes one port, and goes outside the block when it is taken).
    With fewer free ports than workers, the last workers get the range's own ports and Dask's fallback
    (the start's wait says so)."""
    lo, hi = rec.get("http_ports") or [0, -1]
    held = {e["port"] for e in found}
    return [port for port in range(lo, hi + 1) if port not in held]


def holders(port, found):
    return [entry for entry in found if entry["port"] == port]


def _describe(entry):
    if entry["uid"] != os.getuid():
        return "another user, " + user_name(entry["uid"])
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
        new = next_free(port, block["start"], block["end"], taken)
        if new is None:
            raise Failure("port %d (%s of env %s) is held by %s and your block has no free port."
                          % (port, name, rec.get("env"), _describe(others[0])), "PortError",
                          hint="Stop what holds it, or raise block_size in portal.yaml.")
        rec[name] = new
        notes.append("port %d (planned %s for env %s) is held by %s; using %d instead."
                     % (port, name.replace("_port", ""), rec.get("env"), _describe(others[0]), new))
    for name in RANGES:
        lo, hi = rec.get(name) or [0, -1]
        squat = [e for e in found if lo <= e["port"] <= hi and e["uid"] != os.getuid()]
        if squat:
            notes.append("%d port(s) of your %s %d-%d are held by other users; %s skips them."
                         % (len(squat), name.replace("_", " ").replace("http", "workers' HTTP"), lo, hi,
                            "portal" if name == "http_ports" else "Dask"))


def _plan_problem(data):
    block = data.get("block")
    if block is not None and not (isinstance(block, dict) and all(isinstance(block.get(k), int)
                                                                  for k in ("index", "start", "end"))):
        return "has a block that is not {index, start, end}"
    envs = data.get("envs", {})
    if not isinstance(envs, dict) or not all(isinstance(rec, dict) for rec in envs.values()):
        return "has envs that are not a mapping of env to ports"
    for key, rec in envs.items():  # http_ports: only in records of this layout (layout.is_current)
        if not all(isinstance(rec.get(name), int) for name in SINGLES) or not all(
                isinstance(rec.get(name), list) and len(rec[name]) == 2 for name in OLD_RANGES):
            return "has env %s without its ports" % key
        if "http_ports" in rec and not is_current(rec):
            return "has env %s with damaged http_ports" % key
    return None


def load_plan(path):
    """The recorded plan ({} when none). A damaged file is one line and re-plans nothing: the ports
    in it may be in use by running services, so the user decides."""
    data, problem = read_state(path, _plan_problem)
    if problem:
        raise Failure("your port plan %s %s." % (path, problem), "StateError",
                      hint="Move it away (mv %s %s.bad) and run again: running clusters keep their ports, "
                           "new ones are planned around them." % (path, path))
    return data or {}


def assign(payload):
    """``ports-assign`` (a step of `up`): block + env slot, owners checked for ``check``; returns ports and notes."""
    plan = payload["plan"]
    notes = []
    with locked("ports"):
        path = state_path("ports.json")
        data = load_plan(path)
        block = ensure_block(data, plan, notes)
        rec = ensure_env(data, plan, payload["key"], payload["env"], block, payload.get("replan", False), notes)
        check_ports(data, rec, payload["key"], block, payload.get("check", ()), payload.get("own_pids"), notes)
        write_json(path, data)
    return {"block": block, "ports": rec, "notes": notes}


def report(payload):
    """Verb ``ports-report`` (read-only): the recorded plan and the listening sockets the user holds."""
    plan = payload["plan"]
    data = load_plan(server_path("ports.json"))
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
    key = payload.get("key")
    if key and (key not in envs or not is_current(envs[key])):  # new, or planned again when its cluster starts
        free = free_slots(result["block"]["start"], plan["slots_per_block"],
                          {k: rec for k, rec in envs.items() if k != key})
        result["would_be"] = slot_ports(result["block"]["start"], free[0]) if free else None
    return result


def recorded_block():
    """The block this server's port plan records ({start, end, index}), or None."""
    data, _ = read_state(server_path("ports.json"))
    block = (data or {}).get("block")
    return block if isinstance(block, dict) and isinstance(block.get("start"), int) else None


VERBS = {"ports-report": report}  # assign runs inside `up`

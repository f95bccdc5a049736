"""Host-side port plan: claim the user's block in a shared sticky dir, give each env a slot, check owners.

The laptop sends the plan's numbers (``plan.plan_payload`` there); this side knows who holds
which port. ``ports.json`` in this server's state directory remembers the block and each env's ports
(under the lock ``ports``). A block's claim is a file its user made O_EXCL: ``block-INDEX`` in the
claims directory an admin (or the user) named, else ``portal-block-START-END`` in /var/tmp (or /tmp),
root-owned sticky directories every server has, where nobody can remove another user's file.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any, Iterable

from . import reach
from .common import Failure, listeners, locked, read_state, server_path, state_path, user_name, write_json
from .hostconfig import DEFAULT_CLAIMS_DIR, HOST_CONFIG, parse_host_config
from .slots import (
    OLD_RANGES, RANGES, SINGLES, SLOT_SIZE, block_range, free_slots, is_current, next_free, recorded_ports, slot_ports,
    span,
)

if TYPE_CHECKING:
    from .common import Listener

ADMIN_HINT = "an admin can name a root-owned sticky directory as claims_dir in %s, see portal's README" % HOST_CONFIG
#: Where port blocks are claimed when nobody names a claims directory: the first of these that root owns
#: and that is sticky, a claim being a file ``portal-block-START-END`` in it (:func:`claim_name`), made
#: O_EXCL by its user. Nobody else can remove or replace it there, so it is trusted by its owner alone.
#: /var/tmp first: it outlives a reboot (a tmpfs /tmp does not), and tmp cleaners age it slowest.
CLAIM_PLACES = ("/var/tmp", "/tmp")
CLAIM_PREFIX = "portal-block-"
MINE = "mine"


def host_config(path: str = HOST_CONFIG) -> dict[str, str]:
    """The admin's settings for portal on this host ({} without the file)."""
    try:
        with open(path) as fh:
            return parse_host_config(fh.read())
    except (OSError, UnicodeDecodeError):
        return {}


def configured_claims(plan: dict[str, Any], config: str = HOST_CONFIG) -> str | None:
    """The claims directory someone named: the user's claims_dir for this host, else the admin's, else None."""
    return plan.get("claims_dir") or host_config(config).get("claims_dir") or None


def claims_path(plan: dict[str, Any], config: str = HOST_CONFIG) -> str:
    """The directory of the memory-share registrations: the named claims directory, else the default."""
    return configured_claims(plan, config) or DEFAULT_CLAIMS_DIR


def claim_name(start: int, end: int) -> str:
    """A claim's file name in a shared place: plans that differ in base or block size name different
    ports, so they never mix, and the same ports always have the same name."""
    return "%s%d-%d" % (CLAIM_PREFIX, start, end)


def open_claims(path: str, make: bool = True) -> tuple[int | None, str | None]:
    """``(fd, None)`` for a claims directory portal can trust, else ``(None, what is wrong with it)``.

    Trusted: a real directory (not a symlink), sticky, owned by root or by this user (made here
    on first use, mode 1777, unless not ``make``), writable. A co-user's directory could drop or
    fake anyone's claims.
    """
    made = False
    if make:
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


def open_place(places: Iterable[str] = CLAIM_PLACES) -> tuple[int | None, str | None]:
    """``(fd, path)`` of the first of ``places`` that root owns and that is sticky and writable (a
    directory every server has: nobody but root can take it away, nobody can remove another's file
    in it), else ``(None, None)``."""
    for path in places:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        st = os.fstat(fd)
        if st.st_uid == 0 and st.st_mode & stat.S_ISVTX and os.access(path, os.W_OK | os.X_OK):
            return fd, path
        os.close(fd)
    return None, None


class Claims:
    """An open, trusted directory of block claims and how a block's claim is named in it."""

    def __init__(self, fd: int, path: str, shared: bool) -> None:
        self.fd, self.path, self.shared = fd, path, shared  # shared: a place like /var/tmp, not a claims_dir

    def name(self, plan: dict[str, Any], index: int) -> str:
        if self.shared:
            block = _block(plan, index)
            return claim_name(block["start"], block["end"])
        return "block-%d" % index

    def owner(self, name: str) -> int | str | None:
        """``MINE`` for the user's claim (a regular file of theirs), None when nobody claims it, else the
        uid of what is there (a co-user's file, or anything that is not a regular file)."""
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
            return MINE
        return st.st_uid

    def create(self, name: str) -> bool:
        """Claim ``name`` (O_EXCL, never through a link); False when something is already there."""
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self.fd)
        except FileExistsError:
            return False
        try:
            os.write(fd, b"%d\n" % os.getuid())
        finally:
            os.close(fd)
        return True

    def refresh(self, name: str) -> None:
        """Touch the user's claim, so tmp cleaners (which age files by their times) keep it."""
        os.utime(name, dir_fd=self.fd, follow_symlinks=False)

    def close(self) -> None:
        os.close(self.fd)


def open_where(plan: dict[str, Any], claims: str | None = None, places: Iterable[str] = CLAIM_PLACES,
               make: bool = True) -> tuple[Claims | None, str | None]:
    """``(Claims or None, problem)``: the named claims directory when portal can trust it, else the
    first trusted shared place (``problem`` then says what is wrong with the named one), else None."""
    named = claims or configured_claims(plan)
    problem = None
    if named:
        fd, why = open_claims(named, make)
        if fd is not None:
            return Claims(fd, named, False), None
        problem = "claims directory %s %s" % (named, why)
    fd, place = open_place(places)
    if fd is not None and place is not None:  # open_place gives both or neither
        return Claims(fd, place, True), problem
    return None, problem or ("no directory of %s is owned by root and sticky for block claims" % ", ".join(places))


def _block(plan: dict[str, Any], index: int) -> dict[str, int]:
    return block_range(plan["base"], plan["block_size"], plan["slots"], index)


def _recorded_block(data: dict[str, Any], plan: dict[str, Any]) -> dict[str, int] | None:
    rec: dict[str, int] | None = data.get("block")
    if not rec:
        return None
    if rec != _block(plan, rec.get("index", -1)):  # base or block size changed: plan again
        data["envs"] = {}
        return None
    return rec


def ensure_block(data: dict[str, Any], plan: dict[str, Any], notes: list[str], claims: str | None = None,
                 places: Iterable[str] = CLAIM_PLACES) -> dict[str, int]:
    """The user's block: the recorded one while its claim is (or can be made) theirs, else a block
    they claim already, else the first free one from the uid's first choice, claimed.

    Claims live in the named claims directory when portal can trust it, else as files
    ``portal-block-START-END`` in the first root-owned sticky place (/var/tmp, /tmp). With
    neither, the recorded block (else the uid's first choice) is used unclaimed: the owner
    checks of :func:`check_ports` then keep co-users' ports out.
    """
    rec = _recorded_block(data, plan)
    where, problem = open_where(plan, claims, places)
    if where is None:  # open_where then always says why
        return _unclaimed(data, plan, rec, notes, problem or "")
    if problem:
        notes.append("%s, so portal does not trust it; your port block is claimed in %s instead." % (problem, where.path))
    try:
        return _claim_block(data, plan, notes, rec, where)
    except OSError as exc:
        return _unclaimed(data, plan, rec, notes, "cannot claim a block in %s (%s)" % (where.path, exc.strerror))
    finally:
        where.close()


def _claim_block(data: dict[str, Any], plan: dict[str, Any], notes: list[str], rec: dict[str, int] | None,
                 where: Claims) -> dict[str, int]:
    lost = None
    if rec:
        name = where.name(plan, rec["index"])
        if where.create(name) or where.owner(name) == MINE:
            where.refresh(name)
            return rec
        lost = rec
    held: dict[int, int | str | None]
    free: list[int]
    held, free = {}, []
    for step in range(plan["slots"]):
        index = (plan["first"] + step) % plan["slots"]
        owner = where.owner(where.name(plan, index))
        if owner == MINE:
            where.refresh(where.name(plan, index))
            return _take(data, plan, notes, lost, index)
        if owner is None:
            free.append(index)
        else:
            held[index] = owner
    for index in free:
        if where.create(where.name(plan, index)):
            return _take(data, plan, notes, lost, index)
        held[index] = where.owner(where.name(plan, index))  # a co-user claimed it meanwhile
    raise _none_left(plan, held, where)


def _take(data: dict[str, Any], plan: dict[str, Any], notes: list[str], lost: dict[str, int] | None,
          index: int) -> dict[str, int]:
    block = _block(plan, index)
    if lost:
        notes.append("your port block %d (ports %d-%d) is claimed by another user now; you have block %d "
                     "(ports %d-%d), and your envs get new ports there." % (lost["index"], lost["start"], lost["end"],
                                                                           index, block["start"], block["end"]))
    elif index != plan["first"]:
        notes.append("port block %d is claimed by another user; you have block %d (ports %d-%d)."
                     % (plan["first"], index, block["start"], block["end"]))
    if data.get("block") and data["block"] != block:
        data["envs"] = {}
    data["block"] = block
    return block


def _none_left(plan: dict[str, Any], held: dict[int, int | str | None], where: Claims) -> Failure:
    """The one line for a plan whose blocks all belong to others: how many, whose most, what to change."""
    counts: dict[Any, int] = {}
    for uid in held.values():
        counts[uid] = counts.get(uid, 0) + 1
    most = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]
    whose = ", ".join("%d by %s" % (n, user_name(uid)) for uid, n in most)
    message = ("all %d port blocks from %d (%d ports each) are claimed by other users in %s (%s%s)."
               % (plan["slots"], plan["base"], plan["block_size"], where.path, whose,
                  ", ..." if len(counts) > 3 else ""))
    if where.shared:
        hint = ("Set port_base (or slots) for this host in portal.yaml to ports nobody claims, or %s."
                % ADMIN_HINT.replace("an admin can name", "ask an admin to name"))
    else:
        hint = "Ask the admins to clear %s, or set port_base/slots for this host in portal.yaml." % where.path
    return Failure(message, "PortError", hint=hint)


def _unclaimed(data: dict[str, Any], plan: dict[str, Any], rec: dict[str, int] | None, notes: list[str],
               why: str) -> dict[str, int]:
    block = rec or _block(plan, plan["first"])
    notes.append("%s; choosing ports %d-%d by who holds them. To share claims again, %s."
                 % (why, block["start"], block["end"], ADMIN_HINT))
    data["block"] = block
    return block


def used_ports(envs: dict[str, dict[str, Any]], skip: str | None = None) -> set[int]:
    """Every port recorded for the user's envs (except env ``skip``)."""
    used: set[int] = set()
    for key, rec in envs.items():
        if key != skip:
            used |= recorded_ports(rec)
    return used


def ensure_env(data: dict[str, Any], plan: dict[str, Any], key: str, env: str, block: dict[str, int],
               replan: bool = False, notes: list[str] | None = None) -> dict[str, Any]:
    """The env's recorded ports, or a new slot (the first slot no env of the user holds).

    A record an earlier portal planned (20-port slots, no room for the workers' HTTP servers) is
    kept as it is, unless ``replan`` (its cluster is about to start, nothing of it runs): then the
    env moves to a slot of this layout, and a note says so. Where no such slot is free (other envs'
    old records hold the ports), it keeps its record, and its workers' HTTP servers the kernel's ports.
    """
    envs: dict[str, dict[str, Any]] = data.setdefault("envs", {})
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


def choose_http(rec: dict[str, Any], found: list[Listener]) -> list[int]:
    """The workers' HTTP ports, worker i's the i-th: the ports of the env's HTTP range that nothing
    listens on now (Dask's HTTP server takes one port, and goes outside the block when it is taken).
    With fewer free ports than workers, the last workers get the range's own ports and Dask's fallback
    (the start's wait says so)."""
    held = {e["port"] for e in found}
    return [port for port in span(rec.get("http_ports")) if port not in held]


def holders(port: int, found: list[Listener]) -> list[Listener]:
    return [entry for entry in found if entry["port"] == port]


def _describe(entry: Listener) -> str:
    if entry["uid"] != os.getuid():
        return "another user, " + user_name(entry["uid"])
    return "another program of yours (%s)" % (" ".join(entry["cmdline"][:3]) or "pid %s" % entry["pid"])


def check_ports(data: dict[str, Any], rec: dict[str, Any], key: str, block: dict[str, int], services: Iterable[str],
                own_pids: Iterable[int] | None, notes: list[str]) -> None:
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


def _plan_problem(data: dict[str, Any]) -> str | None:
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


def load_plan(path: str) -> dict[str, Any]:
    """The recorded plan ({} when none). A damaged file is one line and re-plans nothing: the ports
    in it may be in use by running services, so the user decides."""
    data, problem = read_state(path, _plan_problem)
    if problem:
        raise Failure("your port plan %s %s." % (path, problem), "StateError",
                      hint="Move it away (mv %s %s.bad) and run again: running clusters keep their ports, "
                           "new ones are planned around them." % (path, path))
    return data or {}


def assign(payload: dict[str, Any]) -> dict[str, Any]:
    """For the ``up`` verb (its cluster and JupyterLab parts) and ``nodes-prepare``: block + env slot, owners checked for ``check``; returns ports and notes."""
    plan = payload["plan"]
    notes: list[str] = []
    with locked("ports"):
        path = state_path("ports.json")
        data = load_plan(path)
        block = ensure_block(data, plan, notes)
        rec = ensure_env(data, plan, payload["key"], payload["env"], block, payload.get("replan", False), notes)
        check_ports(data, rec, payload["key"], block, payload.get("check", ()), payload.get("own_pids"), notes)
        write_json(path, data)
    return {"block": block, "ports": rec, "notes": notes}


def report(payload: dict[str, Any]) -> dict[str, Any]:
    """Verb ``ports-report``: the recorded plan, where the block's claim lives, and the listening sockets
    the user holds. It claims nothing; the user's own claim is touched (kept from tmp cleaners)."""
    plan = payload["plan"]
    data = load_plan(server_path("ports.json"))
    block = _recorded_block(data, plan)
    envs = data.get("envs", {}) if block else {}
    uid = os.getuid()
    mine = [e for e in listeners() if e["uid"] == uid]
    shown = block or _block(plan, plan["first"])
    result: dict[str, Any] = {
        "uid": uid,
        "block": shown,
        "envs": envs,
        "listening": reach.describe(mine),  # each with who can reach it, and by what
        "unix": reach.unix_listeners(),
    }
    result.update(claim_of(plan, shown["index"]))
    key = payload.get("key")
    if key and (key not in envs or not is_current(envs[key])):  # new, or planned again when its cluster starts
        free = free_slots(result["block"]["start"], plan["slots_per_block"],
                          {k: rec for k, rec in envs.items() if k != key})
        result["would_be"] = slot_ports(result["block"]["start"], free[0]) if free else None
    return result


def claim_of(plan: dict[str, Any], index: int, claims: str | None = None,
             places: Iterable[str] = CLAIM_PLACES) -> dict[str, Any]:
    """Where block ``index``'s claim lives (``claim``: its path, None when nothing can be trusted),
    whether it is the user's (``claimed``; then it is touched) or whose it is (``claimed_by``)."""
    where, _ = open_where(plan, claims, places, make=False)
    if where is None:
        return {"claim": None, "claimed": False, "claimed_by": None}
    try:
        name = where.name(plan, index)
        owner = where.owner(name)
        if owner == MINE:
            where.refresh(name)
        return {"claim": os.path.join(where.path, name), "claimed": owner == MINE,
                "claimed_by": user_name(owner) if isinstance(owner, int) else None}  # None: nobody's or MINE
    except OSError:
        return {"claim": None, "claimed": False, "claimed_by": None}
    finally:
        where.close()


def recorded_block() -> dict[str, Any] | None:
    """The block this server's port plan records ({start, end, index}), or None."""
    data, _ = read_state(server_path("ports.json"))
    block = (data or {}).get("block")
    return block if isinstance(block, dict) and isinstance(block.get("start"), int) else None


VERBS = {"ports-report": report}  # assign runs inside `up` and `nodes-prepare`

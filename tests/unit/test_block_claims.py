"""Port blocks claimed with no admin: files ``portal-block-START-END`` in a root-owned sticky place.

The place stands in for /var/tmp: a fresh directory root owns, mode 1777, which every simulated user
reaches (a child of /tmp, not pytest's 0700 tmp_path). Co-users are other uids: root forks, and the
child drops to the uid (``setresuid``) before it runs the real ``ensure_block``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from portal_tasks import config, plan
from portal_tasks.remote import ports

ROOT = os.getuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="claims of other uids and a root-owned place need root")


@pytest.fixture
def place() -> Iterator[str]:
    """A root-owned sticky directory every uid can reach, like /var/tmp."""
    path = tempfile.mkdtemp(prefix="portal-claims-test-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's /etc/portal/portal.yaml names no claims directory here."""
    monkeypatch.setattr(ports, "host_config", lambda path=None: {})


def payload(uid: int, **settings: Any) -> dict[str, Any]:
    return plan.plan_payload(config.resolve(None, "h", **settings) if settings else config.resolve(None, "h"), uid)


def start_as(uid: int, fn: Any) -> tuple[int, int]:
    """Fork a child that runs ``fn()`` as uid; (its pid, the pipe its JSON result comes on)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                out = fn()
            except ports.Failure as exc:
                out = {"error": exc.message, "kind": exc.kind, "hint": exc.hint}
            os.write(write, json.dumps(out).encode())  # a few hundred bytes: the pipe holds it
        except BaseException:  # noqa: BLE001 - reported through the exit code
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def result_of(uid: int, pid: int, read: int) -> Any:
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child as uid {uid} failed"
    return json.loads(b"".join(chunks))


def as_uid(uid: int, fn: Any) -> Any:
    """``fn()`` run by uid in a forked child; its JSON-able result, or ``{"error": message, "hint": ...}``."""
    return result_of(uid, *start_as(uid, fn))


def choose(uid: int, place: str, record: dict[str, Any] | None = None, **settings: Any) -> Any:
    """What uid's `up` does to the port plan: ensure_block against the place (its notes, data and block)."""
    return as_uid(uid, choosing(uid, place, record, **settings))


def choosing(uid: int, place: str, record: dict[str, Any] | None = None, **settings: Any) -> Any:
    def run() -> dict[str, Any]:
        data: dict[str, Any] = {"block": record, "envs": {"a": {"slot": 0}}} if record else {}
        notes: list[str] = []
        block = ports.ensure_block(data, payload(uid, **settings), notes, places=(place,))
        return {"block": block, "notes": notes, "envs": data.get("envs")}
    return run


def owner(place: str, name: str) -> int:
    return os.lstat(os.path.join(place, name)).st_uid


@needs_root
def test_colliding_uids_get_distinct_blocks_that_stay_theirs(place):
    a, b = 50003, 50103  # default 100 slots: the same first choice, block 3
    first = choose(a, place)
    assert first["block"] == {"index": 3, "start": 20300, "end": 20399} and not first["notes"], first
    assert owner(place, "portal-block-20300-20399") == a
    second = choose(b, place)
    assert second["block"]["index"] == 4 and "port block 3 is claimed by another user" in second["notes"][0]
    assert owner(place, "portal-block-20400-20499") == b
    again = choose(a, place, first["block"])  # `up` after `down`: the recorded block, still a's
    assert again["block"] == first["block"] and not again["notes"] and again["envs"] == {"a": {"slot": 0}}
    assert sorted(os.listdir(place)) == ["portal-block-20300-20399", "portal-block-20400-20499"]


@needs_root
def test_each_up_touches_the_claim_so_tmp_cleaners_keep_it(place):
    first = choose(50003, place)
    claim = os.path.join(place, "portal-block-20300-20399")
    os.utime(claim, (1_000_000, 1_000_000), follow_symlinks=False)  # as a cleaner sees a 50-year-old file
    choose(50003, place, first["block"])
    assert os.lstat(claim).st_mtime > 1_000_000 and os.lstat(claim).st_atime > 1_000_000
    os.utime(claim, (1_000_000, 1_000_000), follow_symlinks=False)
    assert as_uid(50003, lambda: ports.claim_of(payload(50003), 3, places=(place,))) == {
        "claim": claim, "claimed": True, "claimed_by": None}  # `status`/`ports` (the snapshot) touch it too
    assert os.lstat(claim).st_mtime > 1_000_000


@needs_root
def test_a_block_recorded_before_is_kept_when_its_claim_can_be_made(place):
    old = {"index": 7, "start": 20700, "end": 20799}  # recorded by a portal that claimed in /tmp/portal-ports
    got = choose(50003, place, old)
    assert got["block"] == old and not got["notes"] and got["envs"] == {"a": {"slot": 0}}
    assert owner(place, "portal-block-20700-20799") == 50003


@needs_root
def test_a_recorded_block_another_user_claimed_meanwhile_moves_the_user_with_one_note(place):
    old = {"index": 3, "start": 20300, "end": 20399}
    choose(50103, place)  # after a reboot emptied the place, b came first
    got = choose(50003, place, old)
    assert got["block"]["index"] == 4 and got["envs"] == {}, got
    assert len(got["notes"]) == 1 and "your port block 3 (ports 20300-20399) is claimed by another user now" in \
        got["notes"][0]


@needs_root
def test_a_user_whose_record_is_lost_gets_back_the_block_they_claim(place):
    choose(50003, place)
    moved = choose(50103, place)["block"]
    os.unlink(os.path.join(place, "portal-block-20300-20399"))  # a's claim went (a cleaner), block 3 is free
    assert choose(50103, place)["block"] == moved  # b's own claim at block 4, not the free first choice
    assert sorted(os.listdir(place)) == ["portal-block-20400-20499"]


@needs_root
@pytest.mark.parametrize("kind", ["file of a co-user", "symlink", "directory", "fifo"])
def test_whatever_a_co_user_put_at_a_claim_name_is_theirs_and_never_followed(place, kind):
    name = os.path.join(place, "portal-block-20300-20399")
    target = os.path.join(place, "victim")
    if kind == "file of a co-user":
        with open(name, "w") as fh:
            fh.write("50003\n")  # content claiming to be a's: the owner counts, never the content
    elif kind == "symlink":
        os.symlink(target, name)
    elif kind == "directory":
        os.mkdir(name)
    else:
        os.mkfifo(name)
    os.lchown(name, 50999, 50999)
    got = choose(50003, place)
    assert got["block"]["index"] == 4 and "port block 3 is claimed by another user" in got["notes"][0]
    assert not os.path.lexists(target)
    report = as_uid(50003, lambda: ports.claim_of(payload(50003), 3, places=(place,)))
    assert report == {"claim": name, "claimed": False, "claimed_by": "uid 50999"}


@needs_root
@pytest.mark.parametrize("mode, uid", [(0o777, 0), (0o1777, 50999)])
def test_a_place_root_does_not_own_sticky_is_not_used(place, mode, uid):
    os.chmod(place, mode)
    os.chown(place, uid, uid)
    got = choose(50003, place)
    assert got["block"]["index"] == 3 and not os.listdir(place)
    assert len(got["notes"]) == 1 and "by who holds them" in got["notes"][0] and place in got["notes"][0]


@needs_root
def test_a_claims_dir_an_admin_names_still_wins(place, monkeypatch):
    admin = tempfile.mkdtemp(prefix="portal-admin-claims-test-", dir="/tmp")
    try:
        os.chmod(admin, 0o1777)
        monkeypatch.setattr(ports, "host_config", lambda path=None: {"claims_dir": admin})
        got = choose(50003, place)
        assert got["block"]["index"] == 3 and not got["notes"] and not os.listdir(place)
        assert owner(admin, "block-3") == 50003
    finally:
        shutil.rmtree(admin, ignore_errors=True)


@needs_root
def test_a_claims_dir_a_co_user_made_sends_the_claim_to_the_place_with_one_note(place):
    theirs = os.path.join(place, "portal-ports")  # the legacy default, made first by a co-user
    os.mkdir(theirs)
    os.chmod(theirs, 0o1777)
    os.chown(theirs, 50999, 50999)

    def run() -> dict[str, Any]:
        notes: list[str] = []
        block = ports.ensure_block({}, dict(payload(50003), claims_dir=theirs), notes, places=(place,))
        return {"block": block, "notes": notes}
    got = as_uid(50003, run)
    assert got["block"]["index"] == 3 and len(got["notes"]) == 1, got
    assert theirs in got["notes"][0] and "belongs to uid 50999" in got["notes"][0] and place in got["notes"][0]
    assert not os.listdir(theirs) and owner(place, "portal-block-20300-20399") == 50003


def test_a_legacy_claims_dir_is_not_where_blocks_are_claimed(place):
    """Nobody named a claims directory: /tmp/portal-ports (made by whichever user came first) plays no part."""
    where, problem = ports.open_where(payload(1234), places=(place,))
    assert where is not None and problem is None and where.path == place and where.shared
    assert where.name(payload(1234), 34) == "portal-block-23400-23499"
    where.close()


# -- 300 LDAP-like users ---------------------------------------------------------------------------------


def ldap_uids(n: int = 300, seed: int = 19) -> list[int]:
    """n distinct uids from 50000 up, spread as a directory service hands them out (gaps, collisions mod slots)."""
    return random.Random(seed).sample(range(50000, 50000 + 20 * n), n)


def everyone_chooses(uids: list[int], place: str, at_once: int = 50, **settings: Any) -> dict[int, Any]:
    """Each user's `up` (ensure_block as that uid), in a shuffled order, ``at_once`` users at a time
    (racing for the same free blocks: O_EXCL decides)."""
    order = list(uids)
    random.Random(7).shuffle(order)
    got = {}
    for i in range(0, len(order), at_once):
        running = [(uid, *start_as(uid, choosing(uid, place, **settings))) for uid in order[i:i + at_once]]
        got.update({uid: result_of(uid, pid, read) for uid, pid, read in running})
    return got


@needs_root
def test_300_ldap_users_get_300_distinct_blocks_that_stay(place):
    uids = ldap_uids()
    slots = 300
    assert len({uid % slots for uid in uids}) < len(uids)  # the uids do collide
    got = everyone_chooses(uids, place, slots=slots)
    blocks = {uid: r["block"] for uid, r in got.items()}
    assert len({b["index"] for b in blocks.values()}) == 300
    assert all(b["index"] == uid % slots for uid, b in blocks.items() if not got[uid]["notes"])
    assert {name: owner(place, name) for name in os.listdir(place)} == {
        f"portal-block-{b['start']}-{b['end']}": uid for uid, b in blocks.items()}
    for uid in uids[::10]:  # a later `up` of some: the same block, nothing said
        again = choose(uid, place, blocks[uid], slots=slots)
        assert again["block"] == blocks[uid] and not again["notes"]


@needs_root
def test_fewer_blocks_than_users_is_one_clear_line(place):
    uids = ldap_uids()
    got = everyone_chooses(uids, place, slots=250)
    ok = [r for r in got.values() if "block" in r]
    refused = [r for r in got.values() if "error" in r]
    assert len(ok) == 250 and len({r["block"]["index"] for r in ok}) == 250 and len(refused) == 50
    for r in refused:
        line = r["error"] + " " + r["hint"]
        assert r["kind"] == "PortError" and "\n" not in line
        assert r["error"].startswith(f"all 250 port blocks from 20000 (100 ports each) are claimed by other users in "
                                     f"{place} (")
        assert "port_base" in r["hint"] and "slots" in r["hint"] and "claims_dir" in r["hint"]


def test_ports_and_check_say_where_the_claim_lives():
    from portal_tasks.commands import ports as ports_step

    block = {"index": 3, "start": 20300, "end": 20399, "claim": "/var/tmp/portal-block-20300-20399"}
    said = {
        "mine": ports_step.claim_state(dict(block, claimed=True, claimed_by=None)),
        "theirs": ports_step.claim_state(dict(block, claimed=False, claimed_by="bob (uid 50103)")),
        "free": ports_step.claim_state(dict(block, claimed=False, claimed_by=None)),
        "nowhere": ports_step.claim_state(dict(block, claim=None, claimed=False, claimed_by=None)),
    }
    assert said["mine"] == "claimed: /var/tmp/portal-block-20300-20399"
    assert said["theirs"].startswith("claimed by bob (uid 50103): /var/tmp/portal-block-20300-20399")
    assert said["free"] == "not claimed yet, its claim would be /var/tmp/portal-block-20300-20399"
    assert "by who holds them" in said["nowhere"]

"""Nothing on the developer's machine changes a test's outcome: each test host has its own /tmp and claims.

The machine's real /tmp is the laptop's; claims there (real portal users, runs of other branches)
must not move a test user off their first-choice port block on a test host.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal_tasks import plan
from portal_tasks.config import resolve
from portal_tasks.remote.layout import DEFAULT_CLAIMS_DIR
from portal_tasks.testing.flows import up
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e

NOBODY = pwd.getpwnam("nobody").pw_uid


def _netns(server: TestServer) -> None:
    if server.backend != "netns" or server.admin_run is None or server.host_path is None:
        pytest.skip(f"the {server.backend} test server has no hosts of its own on this machine")


def first_choices(server: TestServer) -> dict[str, int]:
    """The first-choice block index of every test user (default port plan)."""
    slots = resolve(None).slots
    return {role: plan.block_index(user.uid, slots) for role, user in server.users.items()}


def _listing(path: Path) -> dict[str, tuple[int, int]] | None:
    """What a claims directory holds (name -> owner, mode), None when there is none."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_dir():
        return {"": (path.lstat().st_uid, path.lstat().st_mode)}
    return {p.name: (p.lstat().st_uid, p.lstat().st_mode) for p in path.iterdir()}


@contextlib.contextmanager
def claimed_on_this_machine(indexes: set[int], claims: Path = Path(DEFAULT_CLAIMS_DIR)) -> Iterator[None]:
    """Claim the blocks in this machine's real claims dir as another user (nobody), the way a real
    portal user's claim looks; whatever was there stays, and what this made goes afterwards."""
    made_dir = False
    if not os.path.lexists(claims):
        os.mkdir(claims, 0o1777)
        os.chmod(claims, 0o1777)
        made_dir = True
    try:
        dir_fd = os.open(claims, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        pytest.skip(f"cannot pre-claim blocks in this machine's {claims} ({exc.strerror}): it is not a directory")
    made: list[str] = []
    try:
        for index in sorted(indexes):
            name = f"block-{index}"
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
            except FileExistsError:
                continue  # someone on this machine holds it already: as good for the proof
            made.append(name)
            try:
                os.write(fd, b"%d\n" % NOBODY)
                os.fchown(fd, NOBODY, NOBODY)
            finally:
                os.close(fd)
        yield
    finally:
        for name in made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        os.close(dir_fd)
        if made_dir:
            with contextlib.suppress(OSError):  # not empty: someone claimed a block meanwhile; theirs stays
                os.rmdir(claims)


def ports_report(run_portal, user: TestUser, host: str) -> dict:  # type: ignore[no-untyped-def]
    res = run_portal(user, "ports", "--host", host, "--json")
    assert res.rc == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


def test_blocks_claimed_in_the_machines_tmp_leave_the_user_their_first_choice(portal_server, alice, run_portal):
    _netns(portal_server)
    host, real = portal_server.host, Path(DEFAULT_CLAIMS_DIR)
    first = first_choices(portal_server)
    before = _listing(real)
    with claimed_on_this_machine(set(first.values())):
        for index in first.values():  # on this machine, every test user's first choice is another's
            assert (real / f"block-{index}").lstat().st_uid != alice.uid
        seen = alice.ssh(host, f"ls -A {DEFAULT_CLAIMS_DIR} 2>/dev/null || true")
        assert seen.ok and not seen.stdout.split(), f"the host sees this machine's claims: {seen.stdout}"
        res = up(run_portal, alice, host, str(portal_server.envs["a"]))
        out = res.stdout + res.stderr
        assert "claimed by another user" not in out and "choosing ports" not in out, out
        block = ports_report(run_portal, alice, host)["block"]
        assert block["index"] == first["alice"] and block["claimed"], block
        start = resolve(None).port_base + first["alice"] * resolve(None).block_size
        assert block["start"] == start, block
        # the claim is in the host's own claims dir, alice's; the machine's claim is untouched
        claim = portal_server.host_path(f"{DEFAULT_CLAIMS_DIR}/block-{first['alice']}", host)
        assert claim.lstat().st_uid == alice.uid
        assert (real / f"block-{first['alice']}").lstat().st_uid != alice.uid
    assert _listing(real) == before, "the machine's claims directory was not left as it was"


def test_a_block_claimed_on_the_host_itself_moves_the_user(portal_server, alice, bob, run_portal):
    """The counter-proof on the second host: a claim in the host's own claims dir does move the user."""
    _netns(portal_server)
    host = portal_server.second_host
    assert host is not None
    index = first_choices(portal_server)["bob"]
    made = portal_server.admin_run(["install", "-d", "-m", "1777", DEFAULT_CLAIMS_DIR], host=host, timeout=15)
    assert made.ok, made
    claim = f"{DEFAULT_CLAIMS_DIR}/block-{index}"
    taken = portal_server.admin_run(["sh", "-c", f"echo {alice.uid} > {shlex.quote(claim)}"], host=host, user=alice,
                                    timeout=15)
    assert taken.ok, taken
    try:
        res = up(run_portal, bob, host, str(portal_server.envs["a"]))
        assert f"port block {index} is claimed by another user" in res.stdout + res.stderr, res.stdout + res.stderr
        block = ports_report(run_portal, bob, host)["block"]
        assert block["index"] != index and block["claimed"], block
        assert not portal_server.host_path(claim).exists(), "matagorda sees matagorda2's claims"
    finally:
        portal_server.admin_run(["rm", "-rf", DEFAULT_CLAIMS_DIR], host=host, timeout=15)

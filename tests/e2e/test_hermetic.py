"""Nothing on the developer's machine changes a test's outcome: each test host has its own /tmp, /var/tmp and claims.

The machine's real /var/tmp is the laptop's; claims there (real portal users, runs of other branches)
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
from portal_tasks.remote.ports import CLAIM_PLACES, CLAIM_PREFIX, claim_name
from portal_tasks.testing.flows import up
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e

PLACE = CLAIM_PLACES[0]  # where claims go with no claims_dir: /var/tmp, each test host's own

NOBODY = pwd.getpwnam("nobody").pw_uid


def _netns(server: TestServer) -> None:
    if server.backend != "netns" or server.admin_run is None or server.host_path is None:
        pytest.skip(f"the {server.backend} test server has no hosts of its own on this machine")


def first_choices(server: TestServer) -> dict[str, int]:
    """The first-choice block index of every test user (default port plan)."""
    slots = resolve(None).slots
    return {role: plan.block_index(user.uid, slots) for role, user in server.users.items()}


def _claims(place: Path) -> dict[str, tuple[int, int]]:
    """The block claims a place holds (name -> owner, mode)."""
    return {p.name: (p.lstat().st_uid, p.lstat().st_mode) for p in place.iterdir() if p.name.startswith(CLAIM_PREFIX)}


@contextlib.contextmanager
def claimed_on_this_machine(blocks: set[tuple[int, int]], place: Path = Path(PLACE)) -> Iterator[None]:
    """Claim the blocks (start, end) in this machine's real place (/var/tmp) as another user (nobody),
    the way a real portal user's claim looks; whatever was there stays, and what this made goes afterwards."""
    dir_fd = os.open(place, os.O_RDONLY | os.O_DIRECTORY)
    made: list[str] = []
    try:
        for start, end in sorted(blocks):
            name = claim_name(start, end)
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


def block_of(index: int) -> tuple[int, int]:
    """(start, end) of block ``index`` of the default port plan."""
    settings = resolve(None)
    start = settings.port_base + index * settings.block_size
    return start, start + settings.block_size - 1


def ports_report(run_portal, user: TestUser, host: str) -> dict:  # type: ignore[no-untyped-def]
    res = run_portal(user, "ports", "--host", host, "--json")
    assert res.rc == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


def test_blocks_claimed_in_the_machines_tmp_leave_the_user_their_first_choice(portal_server, alice, run_portal):
    _netns(portal_server)
    host, real = portal_server.host, Path(PLACE)
    first = first_choices(portal_server)
    mine = claim_name(*block_of(first["alice"]))
    before = _claims(real)
    with claimed_on_this_machine({block_of(index) for index in first.values()}):
        for index in first.values():  # on this machine, every test user's first choice is another's
            assert (real / claim_name(*block_of(index))).lstat().st_uid != alice.uid
        seen = alice.ssh(host, f"ls -A {PLACE}")
        assert seen.ok and not [n for n in seen.stdout.split() if n.startswith(CLAIM_PREFIX)], \
            f"the host sees this machine's claims: {seen.stdout}"
        res = up(run_portal, alice, host, str(portal_server.envs["a"]))
        out = res.stdout + res.stderr
        assert "claimed by another user" not in out and "choosing ports" not in out, out
        block = ports_report(run_portal, alice, host)["block"]
        assert block["index"] == first["alice"] and block["claimed"], block
        assert (block["start"], block["end"]) == block_of(first["alice"]), block
        # the claim is in the host's own /var/tmp, alice's; the machine's claim is untouched
        assert block["claim"] == f"{PLACE}/{mine}", block
        assert portal_server.host_path(block["claim"], host).lstat().st_uid == alice.uid
        assert (real / mine).lstat().st_uid != alice.uid
    assert _claims(real) == before, "the machine's claims were not left as they were"


def test_a_block_claimed_on_the_host_itself_moves_the_user(portal_server, alice, bob, run_portal):
    """The counter-proof on the second host: a claim in the host's own /var/tmp does move the user."""
    _netns(portal_server)
    host = portal_server.second_host
    assert host is not None
    index = first_choices(portal_server)["bob"]
    claim = f"{PLACE}/{claim_name(*block_of(index))}"
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
        portal_server.admin_run(["rm", "-f", claim], host=host, timeout=15)

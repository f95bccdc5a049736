"""Port block claims with no admin: colliding uids keep distinct blocks; a claims directory a co-user
made first is trusted by nobody, costs no one their block, and none of the co-user's ports are used."""

from __future__ import annotations

import contextlib
import json
import pwd
import shlex
import uuid
from collections.abc import Callable, Iterator

import pytest

from portal_tasks import plan
from portal_tasks.config import resolve
from portal_tasks.remote.hostconfig import DEFAULT_CLAIMS_DIR
from portal_tasks.remote.ports import CLAIM_PLACES, claim_name
from portal_tasks.runner import Result
from portal_tasks.testing import users as users_mod
from portal_tasks.testing.flows import http_get, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import http_squatter, listening_sockets

pytestmark = pytest.mark.e2e

PLACE = CLAIM_PLACES[0]  # /var/tmp: root-owned and sticky on every test host

#: How bob leaves a claims directory before alice's first `up` (DIR: its path), and what alice is told.
HOSTILE = {
    "co-user 1755": ("mkdir -m 1755 DIR", "belongs to"),
    "co-user 1777": ("mkdir -m 1777 DIR", "belongs to"),
    "regular file": ("echo mine > DIR", "is not a directory"),
    "symlink": ("mkdir -m 1777 DIR.real && ln -s DIR.real DIR", "is a symbolic link"),
}
#: Where bob's directory is: the path older portals claimed in by default (now used by nobody for blocks),
#: or a claims_dir alice names in her portal.yaml.
CASES = [("legacy default", "co-user 1777"), ("legacy default", "symlink")] + [("named", kind) for kind in HOSTILE]


def ports_report(run_portal: Callable[..., Result], user: TestUser, host: str) -> dict:  # type: ignore[type-arg]
    res = run_portal(user, "ports", "--host", host, "--json")
    assert res.rc == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


@pytest.fixture
def claims(request: pytest.FixtureRequest, portal_server: TestServer, bob: TestUser) -> Iterator[str]:
    """Where bob makes the directory first: the legacy /tmp/portal-ports (only where the host has its own
    /tmp: nobody else's runs see it), or a fresh path (removed afterwards)."""
    where = request.param
    own_tmp = portal_server.host_path is not None and portal_server.admin_run is not None
    if where == "legacy default" and not own_tmp:
        pytest.skip("this test server's /tmp is shared with real users: bob may not make /tmp/portal-ports there")
    path = DEFAULT_CLAIMS_DIR if where == "legacy default" else f"/tmp/pt-claims-{uuid.uuid4().hex[:10]}"
    if own_tmp:  # made by an earlier test's user: bob comes first here
        assert portal_server.admin_run(["rm", "-rf", path, path + ".real"], host=portal_server.host).ok
    try:
        yield path
    finally:
        bob.ssh(portal_server.host, f"rm -rf {shlex.quote(path)} {shlex.quote(path + '.real')}")


@pytest.mark.parametrize("claims, kind", CASES, indirect=["claims"], ids=[f"{w}-{k}" for w, k in CASES])
def test_a_claims_dir_a_co_user_made_costs_no_block_and_no_port_of_theirs(portal_server, alice, bob, run_portal,
                                                                         claims, kind):
    host = portal_server.host
    env = str(portal_server.envs["a"])
    make, why = HOSTILE[kind]
    made = bob.ssh(host, make.replace("DIR", shlex.quote(claims)))
    assert made.ok, made.stderr
    named = claims != DEFAULT_CLAIMS_DIR
    if named:
        (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    claims_dir: {claims}\n")
    try:
        first = ports_report(run_portal, alice, host)["block"]["start"]
        grabbed = first + plan.LAYOUT["dashboard_port"]
        with http_squatter(portal_server, bob, grabbed):
            res = up(run_portal, alice, host, env)
            out = res.stdout + res.stderr
            assert "Traceback" not in out and "PermissionError" not in out, out
            said = [line for line in res.stderr.splitlines() if claims in line]
            if named:
                assert len(said) == 1 and why in said[0] and f"claimed in {PLACE} instead" in said[0], res.stderr
                print(f"{kind}: {said[0]}")
            else:
                assert not said, said  # the legacy directory plays no part: nothing to say about it
            mine = {s.port for s in listening_sockets(portal_server, alice)}
            assert grabbed not in mine and mine, (grabbed, sorted(mine))
            urls = urls_in(res)
            assert urls, res.stdout
            for url in urls:
                code, body = http_get(url)
                assert code == 200 and "bob's page" not in body, (url, body[:200])
        block = ports_report(run_portal, alice, host)["block"]
        assert block["claimed"] and block["start"] == first, block
        assert block["claim"] == f"{PLACE}/{claim_name(block['start'], block['end'])}", block
        owner = alice.ssh(host, f"stat -c %u {shlex.quote(block['claim'])}")
        assert owner.ok and int(owner.stdout) == alice.uid, owner
    finally:
        (alice.laptop / "portal.yaml").unlink(missing_ok=True)
    left = alice.ssh(host, f"find {shlex.quote(claims)} {shlex.quote(claims + '.real')} -user {alice.uid} 2>/dev/null")
    assert not left.stdout.strip(), f"alice wrote into bob's claims directory: {left.stdout}"


# -- colliding uids, no claims directory anywhere ---------------------------------------------------------


@contextlib.contextmanager
def uid_changed(server: TestServer, user: TestUser, uid: int) -> Iterator[None]:
    """``user`` has ``uid`` on the hosts meanwhile (``usermod -u``: the home follows); afterwards what ran
    and what was left in shared places under that uid goes, and the user has their own uid back."""
    assert server.admin_run is not None and server.host_path is not None
    changed = server.admin_run(["usermod", "-u", str(uid), user.name], timeout=60)
    assert changed.ok, changed
    try:
        yield
    finally:
        gid = pwd.getpwnam(user.name).pw_gid
        users_mod.kill_uid(uid, gid)
        users_mod.remove_files_of_uid(uid)
        for host in filter(None, (server.host, server.second_host)):
            users_mod.remove_files_of_uid(uid, (str(server.host_path("/tmp", host)),
                                                str(server.host_path("/var/tmp", host))))
        back = server.admin_run(["usermod", "-u", str(user.uid), user.name], timeout=60)
        assert back.ok, back


def colliding_uid(uid: int, slots: int) -> int:
    """The first uid above ``uid`` with the same first-choice block that no user has."""
    for candidate in range(uid + slots, uid + 50 * slots, slots):
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            return candidate
    pytest.skip(f"no free uid with uid {uid}'s first-choice block")


def scheduler(run_portal: Callable[..., Result], user: TestUser, host: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    report = status(run_portal, user, host)
    assert len(report["clusters"]) == 1, report["clusters"]
    return report["clusters"][0]["address"], report["ports"]["block"]


def test_colliding_uids_with_no_claims_dir_keep_distinct_blocks_across_down_and_up(portal_server, alice, bob,
                                                                                    run_portal):
    if portal_server.backend != "netns" or portal_server.admin_run is None or portal_server.host_path is None:
        pytest.skip(f"the {portal_server.backend} test server cannot give a user another uid")
    host, env = portal_server.host, str(portal_server.envs["a"])
    slots = resolve(None).slots
    assert not portal_server.host_path("/etc/portal/portal.yaml").exists()  # no admin, no claims_dir
    up(run_portal, alice, host, env)
    address, block = scheduler(run_portal, alice, host)
    assert block["claimed"] and block["claim"].startswith(f"{PLACE}/"), block
    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0, down.stdout + down.stderr
    with uid_changed(portal_server, bob, colliding_uid(alice.uid, slots)):
        res = up(run_portal, bob, host, env)  # bob's first choice is alice's block, which she keeps
        assert f"port block {block['index']} is claimed by another user" in res.stderr, res.stderr
        bob_address, bob_block = scheduler(run_portal, bob, host)
        assert bob_block["index"] != block["index"] and bob_block["claimed"], bob_block
        assert bob_block["end"] < block["start"] or block["end"] < bob_block["start"]
        again = up(run_portal, alice, host, env)
        assert "claimed by another user" not in again.stdout + again.stderr, again.stderr
        assert scheduler(run_portal, alice, host) == (address, block)  # the same URLs as before
        assert bob_address != address
        stopped = run_portal(bob, "down", "--host", host)
        assert stopped.rc == 0, stopped.stdout + stopped.stderr

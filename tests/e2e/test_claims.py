"""A claims directory a co-user made first: `up` still works, says so in one line, and uses none of their ports."""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator

import pytest

from portal_tasks import plan
from portal_tasks.remote.layout import DEFAULT_CLAIMS_DIR
from portal_tasks.testing.flows import http_get, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import http_squatter, listening_sockets

pytestmark = pytest.mark.e2e

#: How bob leaves the claims directory before alice's first `up` (DIR: its path), and what alice is told.
HOSTILE = {
    "co-user 1755": ("mkdir -m 1755 DIR", "belongs to"),
    "co-user 1777": ("mkdir -m 1777 DIR", "belongs to"),
    "regular file": ("echo mine > DIR", "is not a directory"),
    "symlink": ("mkdir -m 1777 DIR.real && ln -s DIR.real DIR", "is a symbolic link"),
}


@pytest.fixture
def claims(portal_server: TestServer, bob: TestUser) -> Iterator[str]:
    """Where bob makes the claims directory first: the default /tmp/portal-ports when the host has its own
    /tmp (nobody else's runs see it), else a fresh path portal is told about with claims_dir (removed afterwards)."""
    own_tmp = portal_server.host_path is not None
    path = DEFAULT_CLAIMS_DIR if own_tmp else f"/tmp/pt-claims-{uuid.uuid4().hex[:10]}"
    if own_tmp and portal_server.admin_run is not None:  # made by an earlier test's user: bob comes first here
        assert portal_server.admin_run(["rm", "-rf", path, path + ".real"], host=portal_server.host).ok
    try:
        yield path
    finally:
        bob.ssh(portal_server.host, f"rm -rf {shlex.quote(path)} {shlex.quote(path + '.real')}")


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_claims_dir_a_co_user_made_is_one_note_and_no_port_of_theirs(portal_server, alice, bob, run_portal, claims,
                                                                        kind):
    host = portal_server.host
    env = str(portal_server.envs["a"])
    make, why = HOSTILE[kind]
    made = bob.ssh(host, make.replace("DIR", shlex.quote(claims)))
    assert made.ok, made.stderr
    if claims != DEFAULT_CLAIMS_DIR:
        (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    claims_dir: {claims}\n")
    try:
        ports = run_portal(alice, "ports", "--host", host, "--json")
        assert ports.rc == 0, ports.stderr
        first = json.loads(ports.stdout)["block"]["start"]
        grabbed = first + plan.LAYOUT["dashboard_port"]
        with http_squatter(portal_server, bob, grabbed):
            res = up(run_portal, alice, host, env)
            out = res.stdout + res.stderr
            assert "Traceback" not in out and "PermissionError" not in out, out
            said = [line for line in res.stderr.splitlines() if claims in line]
            assert len(said) == 1 and why in said[0] and "by who holds them" in said[0], res.stderr
            print(f"{kind}: {said[0]}")
            mine = {s.port for s in listening_sockets(portal_server, alice)}
            assert grabbed not in mine and mine, (grabbed, sorted(mine))
            urls = urls_in(res)
            assert urls, res.stdout
            for url in urls:
                code, body = http_get(url)
                assert code == 200 and "bob's page" not in body, (url, body[:200])
    finally:
        (alice.laptop / "portal.yaml").unlink(missing_ok=True)
    left = alice.ssh(host, f"find {shlex.quote(claims)} {shlex.quote(claims + '.real')} -user {alice.uid} 2>/dev/null")
    assert not left.stdout.strip(), f"alice wrote into bob's claims directory: {left.stdout}"

"""A fair share of one server: three users `up` with default budgets under the admin's cap, an oversize
`--memory` is one line naming who holds how much, and `down` frees a share for the next."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from portal_tasks.testing.assertions import client_env, dask_client, user_ports
from portal_tasks.testing.flows import up
from portal_tasks.testing.plugin import own_netns_server
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e
MiB = 1024**2
CAP = 3 * 1024 * MiB  # memory_total the admin sets; fair share: a quarter of it


#: Where the registrations go: a claims directory root made (as the README tells admins), or the default
#: /tmp/portal-ports the first user made (the others cannot trust it: they see each other's running workers).
CLAIMS = {"admin's claims dir": "claims_dir: /tmp/portal-claims\n", "claims dir the first user made": ""}


@pytest.fixture(scope="module", params=list(CLAIMS))
def shared(request: pytest.FixtureRequest) -> Iterator[TestServer]:
    """A netns server of its own with three users who can run `up` (alice, bob, user01) and an admin cap."""
    with own_netns_server(request, "three users and an admin setting", extra_users=1) as server:
        assert server.host_path is not None
        server.host_path("/etc/portal/portal.yaml").write_text(
            f"memory_total: {CAP // MiB}MiB\nfair_users: 4\n{CLAIMS[request.param]}")
        if CLAIMS[request.param]:
            assert server.admin_run is not None
            assert server.admin_run(["mkdir", "-m", "1777", "/tmp/portal-claims"], timeout=10).ok
        yield server


def limits_seen(server: TestServer, run_portal, user: TestUser, env: str) -> list[int]:
    """Each worker's memory limit as the user's own scheduler reports it."""
    ports = user_ports(run_portal(user, "ports", "--host", server.host, "--json"))
    with dask_client(server, user, f"{env}/bin/python", client_env(ports, env, str(user.home))) as seen:
        return sorted(seen["workers"].values())


def test_three_users_share_the_cap_and_down_frees_a_share(shared, run_portal):
    host, env = shared.host, str(shared.envs["a"])
    alice, bob, carol = shared.users["alice"], shared.users["bob"], shared.users["user01"]
    for user in (alice, bob, carol):
        up(run_portal, user, host, env, "--workers", "1")
    seen = {u.name: limits_seen(shared, run_portal, u, env) for u in (alice, bob, carol)}
    print("memory limits read back from each scheduler:", seen)
    assert all(v == [CAP // 4] for v in seen.values()), seen
    assert sum(sum(v) for v in seen.values()) <= CAP

    table = run_portal(alice, "status", "--host", host, "--json")
    assert table.rc == 0, table.stderr
    share = json.loads(table.stdout)["share"]
    assert share["caps"]["memory_total"] == CAP
    assert sorted(r["user"] for r in share["users"]) == sorted([alice.name, bob.name, carol.name])
    assert share["free_memory"] == CAP - 3 * (CAP // 4)
    human = run_portal(alice, "status", "--host", host)
    assert "server share: portal clusters may use 3 GiB together" in human.stdout, human.stdout

    assert run_portal(carol, "down", "--host", host, "--env", env).rc == 0
    refused = run_portal(carol, "up", "--host", host, "--env", env, "--no-attach", "--no-browser", "--workers", "1",
                         "--memory", "2GiB")
    said = [line for line in refused.stderr.splitlines() if line.startswith("portal:")]
    print("refused:", said)
    assert refused.rc == 1 and len(said) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert f"held now: {alice.name} 768 MiB, {bob.name} 768 MiB (1.5 GiB free)" in said[0]
    assert limits_seen(shared, run_portal, alice, env) == [CAP // 4]  # a refused start touched nobody

    assert run_portal(bob, "down", "--host", host, "--env", env).rc == 0
    up(run_portal, carol, host, env, "--workers", "1", "--memory", "2GiB")
    after = limits_seen(shared, run_portal, carol, env)
    assert after == [2048 * MiB] and after[0] + CAP // 4 <= CAP

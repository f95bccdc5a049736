"""Twenty users on one server run `up` at the same moment: all succeed, no port collides, every dashboard loads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from portal_tasks.testing.assertions import user_ports
from portal_tasks.testing.flows import admin_set_up_for, http_get, up, urls_in
from portal_tasks.testing.plugin import own_netns_server
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import parse_ss

pytestmark = pytest.mark.e2e
USERS = 20


@pytest.fixture(scope="module")
def crowded(request: pytest.FixtureRequest) -> Iterator[TestServer]:
    """A netns server of its own with twenty users who can run `up` (alice, bob and 18 more), set up by its
    admin for that many (a claims directory root made, a fair share for 20 users)."""
    with own_netns_server(request, "twenty users", extra_users=USERS - 2) as server:
        admin_set_up_for(server, USERS)
        yield server


def test_twenty_users_up_at_once_without_collisions(crowded, run_portal):
    users = [u for role, u in crowded.users.items() if role != "notmux"]
    assert len(users) == USERS
    env = str(crowded.envs["a"])

    def go(user: TestUser) -> list[str]:
        return urls_in(up(run_portal, user, crowded.host, env, "--workers", "1", timeout=600))

    with ThreadPoolExecutor(USERS) as pool:
        urls = list(pool.map(go, users))  # each `up` asserts its own success

    dashboards = [next(u for u in found if u.endswith("/status")) for found in urls]
    assert len(set(dashboards)) == USERS
    assert all(http_get(url, timeout=30)[0] == 200 for url in dashboards)

    blocks = {u.uid: user_ports(run_portal(u, "ports", "--host", crowded.host, "--json"))["block"] for u in users}
    spans = sorted((b["start"], b["end"]) for b in blocks.values())
    assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    assert crowded.admin_run is not None
    listening = [s for s in parse_ss(crowded.admin_run(["ss", "-Htlnpe"], timeout=30).stdout) if s.uid in blocks]
    assert all(s.addr in ("127.0.0.1", "::1") for s in listening)
    assert len({s.port for s in listening}) == len(listening), "two listeners share a port"
    shares = run_portal(users[0], "status", "--host", crowded.host, "--json")
    assert shares.rc == 0, shares.stderr
    share = json.loads(shares.stdout)["share"]
    assert share["trusted"] and len(share["users"]) == USERS, share
    assert share["held_memory"] <= share["caps"]["memory_total"], share
    intruders = [s for s in listening for uid, b in blocks.items() if uid != s.uid and b["start"] <= s.port <= b["end"]]
    assert intruders == [], f"listening in another user's block: {intruders}"

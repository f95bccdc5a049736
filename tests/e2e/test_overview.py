"""`portal status --all`: every host the laptop used, asked side by side; a hung host is one line."""

from __future__ import annotations

import json

import pytest

from portal_tasks.testing.flows import up
from portal_tasks.testing.netns import sshd_pids
from portal_tasks.testing.procs import paused
from portal_tasks.testing.server import TestServer

pytestmark = pytest.mark.e2e

#: `status --all --wait`: long enough for a busy machine; answering hosts end the wait early, a hung one uses it up.
WAIT = 10


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


def second_host(server: TestServer) -> tuple[str, str]:
    """A second host alias and the test host whose sshd carries it: matagorda2 (a second server sharing
    the homes), else matagorda through the login node (whose sshd then carries it)."""
    if server.backend != "netns":
        pytest.skip("needs the netns test server (its sshds are paused to make a host hang)")
    if server.second_host:
        return server.second_host, server.second_host
    return str(server.via_login_host), "login"


def test_status_all_lists_both_hosts_and_a_hung_host_is_one_line(portal_server, alice, run_portal, env):
    first = portal_server.host
    second, carrier = second_host(portal_server)
    up(run_portal, alice, first, env)
    up(run_portal, alice, second, env)

    res = run_portal(alice, "status", "--all", "--json", "--wait", "60")
    assert res.rc == 0, res.stdout + res.stderr
    reports = {r["host"]: r for r in json.loads(res.stdout)}
    assert set(reports) == {first, second}
    for host, report in reports.items():
        assert report["reachable"], report
        assert [c["healthy"] for c in report["clusters"]] == [True], report["clusters"]
        assert report["clusters"][0]["workers_running"] >= 1
        assert any(w["name"].startswith("cluster-") for w in report["sessions"][0]["windows"]), report["sessions"]
        assert [(f["service"].split("-")[0], f["answers"]) for f in report["forwards"]] == [("dashboard", True)], host

    with paused(sshd_pids(portal_server.run_id, carrier)) as frozen:
        assert frozen
        # returns (the timeout is a safety net, not the check), and says the wait ran out, not what ssh said later
        res = run_portal(alice, "status", "--all", "--wait", str(WAIT), timeout=WAIT + 110)
    assert res.rc == 0, res.stdout + res.stderr
    assert [line for line in res.stdout.splitlines() if line.startswith(f"{second}:")] == \
        [f"{second}: unreachable (no answer within {WAIT}s)"], res.stdout
    mine = [line for line in res.stdout.splitlines() if line.startswith(f"{first}:")]
    assert mine == [f"{first}: user {alice.name} (uid {alice.uid})"], res.stdout
    assert "  cluster " in res.stdout and " healthy" in res.stdout

"""Two servers that share the user's home (as over NFS): each keeps its own clusters, ports and Jupyter."""

from __future__ import annotations

import shlex

import pytest

from portal_tasks import plan
from portal_tasks.testing.assertions import state_file
from portal_tasks.testing.flows import http_get, status, up, urls_in
from portal_tasks.testing.server import TestServer

pytestmark = pytest.mark.e2e


def _second(server: TestServer) -> str:
    if not server.second_host:
        pytest.skip(f"the {server.backend} test server has no second host sharing the homes")
    return server.second_host


def _cluster(report: dict) -> tuple[int, int, int]:
    (cluster,) = report["clusters"]
    assert cluster["healthy"], cluster
    return cluster["pid"], cluster["scheduler_port"], cluster["dashboard_port"]


def _jupyter(report: dict) -> tuple[int, int]:
    (server,) = report["jupyter"]
    assert server["healthy"], server
    return server["pid"], server["port"]


def _dashboards_load(urls: list[str]) -> None:
    dashboards = [url for url in urls if url.endswith("/status")]
    assert dashboards, urls
    for url in dashboards:
        code, body = http_get(url, timeout=20)
        assert code == 200 and "Dask" in body, (url, code, body[:200])


def test_up_on_a_second_server_leaves_the_first_ones_cluster_alone(portal_server, alice, run_portal,
                                                                   listening_sockets):
    a, b = portal_server.host, _second(portal_server)
    env = str(portal_server.envs["a"])
    up(run_portal, alice, a, env, "--jupyter")
    first, jupyter = _cluster(status(run_portal, alice, a)), _jupyter(status(run_portal, alice, a))
    on_b = up(run_portal, alice, b, env, "--jupyter")
    assert _cluster(status(run_portal, alice, a)) == first  # B's up replaced nothing of A's
    again = up(run_portal, alice, a, env, "--jupyter")
    report = status(run_portal, alice, a)
    assert _cluster(report) == first, again.stderr  # A's scheduler pid unchanged
    assert _jupyter(report) == jupyter, again.stderr  # and A's JupyterLab: same process, same port
    assert _jupyter(status(run_portal, alice, b))[0] != jupyter[0]
    assert "reusing" in again.stdout + again.stderr
    on_b_cluster = _cluster(status(run_portal, alice, b))
    assert on_b_cluster[0] != first[0]
    _dashboards_load(urls_in(again))
    _dashboards_load(urls_in(on_b))
    labs = [url for url in urls_in(again) + urls_in(on_b) if "/lab" in url]
    assert len(labs) == 2 and all(http_get(url, timeout=20)[0] == 200 for url in labs), labs
    held_a = {s.port for s in listening_sockets(alice) if s.pid == first[0]}
    assert {first[1], first[2]} <= held_a, held_a  # A's scheduler serves on A, in A's network
    dirs = alice.ssh(a, "ls ~/.portal/hosts")
    assert sorted(dirs.stdout.split()) == sorted([a, b]), dirs.stdout  # one state directory per server

    down = run_portal(alice, "down", "--host", b, timeout=120)
    assert down.rc == 0, down.stdout + down.stderr
    assert status(run_portal, alice, b)["clusters"] == []
    assert _cluster(status(run_portal, alice, a)) == first  # `down` on B left A running
    assert alice.ssh(a, shlex.join(["kill", "-0", str(first[0])])).ok


def test_a_cluster_recorded_in_the_earlier_single_layout_is_kept_on_upgrade(portal_server, alice, run_portal):
    host, env = portal_server.host, str(portal_server.envs["a"])
    up(run_portal, alice, host, env)
    first = _cluster(status(run_portal, alice, host))
    server = state_file(portal_server, alice)
    key = plan.env_key(env)
    aside = server.rsplit("/hosts/", 1)[0] + "/aside"  # ~/.portal/aside: where the running cluster's files stay
    # what an earlier portal left: ports.json and the cluster record right in ~/.portal, no hosts/ directory
    legacy = (f"cd ~/.portal && mv {shlex.quote(server)} {shlex.quote(aside)} && "
              f"cp {shlex.quote(aside)}/ports.json ports.json && mkdir -p clusters && "
              f"cp {shlex.quote(aside)}/clusters/{key}.json clusters/ && rmdir hosts")
    try:
        assert alice.ssh(host, legacy).ok
        again = up(run_portal, alice, host, env)
        assert _cluster(status(run_portal, alice, host)) == first, again.stderr  # adopted, found healthy, kept
        moved = alice.ssh(host, f"test -f {shlex.quote(server)}/clusters/{key}.json && "
                                f"test ! -e ~/.portal/clusters/{key}.json && test -f {shlex.quote(server)}/ports.json")
        assert moved.ok, "the record was not adopted into the server's directory"
    finally:
        alice.ssh(host, f"rm -rf {shlex.quote(aside)}")

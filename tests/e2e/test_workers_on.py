"""Workers on another server: `up --workers-on matagorda2` starts workers there that join the user's
scheduler on matagorda (TLS on the servers' own net), a computation runs on them, `down` stops them;
a co-user on matagorda2 cannot connect to the now non-loopback scheduler (tcp://, tls:// without or
with their own certificate)."""

from __future__ import annotations

import json
import shlex

import pytest

from portal_tasks import daskcmd, tls
from portal_tasks.runner import run
from portal_tasks.testing.assertions import dask_client, user_ports
from portal_tasks.testing.flows import explained_ports, status, up
from portal_tasks.testing.intruders import INTRUDER, own_bundle
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestServer
from portal_tasks.testing.sockets import listening_sockets
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

#: As the user on the scheduler's host: a plain Client(), where a task pinned to the remote workers ran.
WHERE = """
import json, socket, sys
from dask.distributed import Client
c = Client(timeout=20)
workers = sorted(c.scheduler_info()["workers"])
remote = [w for w in workers if "//NODE_IP:" in w]
where = c.submit(socket.gethostname, workers=remote, pure=False).result() if remote else None
total = c.submit(sum, list(range(100)), workers=remote, pure=False).result() if remote else None
print(json.dumps({"workers": workers, "where": where, "total": total}), flush=True)
sys.stdin.read()
"""

@pytest.fixture
def servers(portal_server: TestServer, alice) -> tuple[str, str, str, str, str]:
    """(host, node, iface, host_ip, node_ip) of two servers on a net of their own; alice's portal.yaml
    says the scheduler listens on that net (scheduler_interface)."""
    if not portal_server.between or not portal_server.second_host:
        pytest.skip("the test server has no second server on a net of its own")
    iface, host_ip, node_ip = portal_server.between
    (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {portal_server.host}:\n    scheduler_interface: {iface}\n")
    return portal_server.host, portal_server.second_host, iface, host_ip, node_ip


def test_workers_on_the_second_server_join_compute_and_stop(portal_server: TestServer, alice, bob, run_portal, servers):
    host, node, iface, host_ip, node_ip = servers
    env = str(portal_server.envs["a"])

    res = up(run_portal, alice, host, env, "--workers", "1", "--workers-on", node)
    print(res.stderr)
    cluster = status(run_portal, alice, host)["clusters"][0]
    assert cluster["address"] == f"tls://{host_ip}:{cluster['scheduler_port']}" and cluster["workers_on"] == [node]

    variables = daskcmd.client_environment(cluster["scheduler_port"], cluster["dashboard_port"],
                                           tls.paths(str(alice.home)), host_ip)
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=WHERE.replace("NODE_IP", node_ip)) as seen:
        print("workers:", seen["workers"])
        assert len(seen["workers"]) == 2 and any(f"//{node_ip}:" in w for w in seen["workers"])
        assert seen["where"] == node and seen["total"] == 4950
    on_node = listening_sockets(portal_server, alice, node)
    assert on_node and all(s.addr in (node_ip, "127.0.0.1") for s in on_node), on_node
    # the worker, its nanny and its own HTTP server (127.0.0.1): all in alice's block on the node
    node_block = user_ports(run_portal(alice, "ports", "--host", node, "--json"))["block"]
    assert len(on_node) == 3 and all(node_block["start"] <= s.port <= node_block["end"] for s in on_node), on_node
    assert [s for s in on_node if s.addr == "127.0.0.1"], on_node

    ca, cert, key = own_bundle(bob)
    tried = bob.ssh(node, shlex.join([f"{env}/bin/python", "-c", INTRUDER, cluster["address"], ca, cert, key]),
                    timeout=90)
    assert tried.rc == 0, tried.stderr
    refused = json.loads(tried.stdout.strip().splitlines()[-1])
    print("co-user on the node:", refused)
    assert set(refused) == {"tcp", "tls-own-cert", "tls-no-cert"}
    assert all(v.startswith("refused") for v in refused.values()), refused

    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0 and f"workers {env} on {node}" in down.stdout, down.stdout + down.stderr
    assert listening_sockets(portal_server, alice, node) == []


def test_pasted_explain_of_up_with_workers_on_starts_the_workers_there(portal_server: TestServer, alice,
                                                                       run_portal, servers):
    host, node, iface, host_ip, node_ip = servers
    env = str(portal_server.envs["a"])
    explained = run_portal(alice, "up", "--host", host, "--env", env, "--workers", "1", "--workers-on", node,
                           "--no-attach", "--explain")
    assert explained.rc == 0, explained.stderr
    text = explained.stdout
    print(text)
    assert f"# workers on {node}" in text and f"{node} bash -s <<'ON_HOST'" in text
    assert listening_sockets(portal_server, alice, node) == []  # --explain started nothing
    laptop_lines = [line for line in text.splitlines() if " -f -N " in line]  # the forwards: not needed here
    pasted = run(["bash"], input="\n".join(line for line in text.splitlines() if line not in laptop_lines) + "\n",
                 env=portal_env(alice), cwd=str(alice.laptop), timeout=180)
    assert pasted.rc == 0, pasted.stderr[-1500:]
    port, dashboard = explained_ports(text)
    variables = daskcmd.client_environment(port, dashboard, tls.paths(str(alice.home)), host_ip)
    retry_until(lambda: bool(listening_sockets(portal_server, alice, node)), 60, 0.5, what="the node's workers")
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=WHERE.replace("NODE_IP", node_ip).replace("c = Client(timeout=20)",
                                                                      "c = Client(timeout=20); c.wait_for_workers(2, 90)")) as seen:
        assert seen["where"] == node and seen["total"] == 4950, seen


def test_workers_0_keeps_the_scheduler_alone_here_and_the_workers_on_the_other_server(portal_server: TestServer, alice,
                                                                                     run_portal, servers):
    """`--workers 0 --workers-on NODE`: no worker on the scheduler's host; NODE runs the `workers` setting's count."""
    host, node, iface, host_ip, node_ip = servers
    env = str(portal_server.envs["a"])
    (alice.laptop / "portal.yaml").write_text("workers: 1\n" + (alice.laptop / "portal.yaml").read_text())

    res = up(run_portal, alice, host, env, "--workers", "0", "--workers-on", node)
    print(res.stderr)
    assert f"the scheduler alone on this host (its workers: on {node};" in res.stderr
    assert f"{node}: 1 workers x 2 threads" in res.stderr
    cluster = status(run_portal, alice, host)["clusters"][0]
    assert cluster["healthy"] and cluster["workers"] == 0 and cluster["workers_on"] == [node]
    here = {s.port for s in listening_sockets(portal_server, alice)}  # no worker, nanny or worker's HTTP server
    assert here == {cluster["scheduler_port"], cluster["dashboard_port"]}, here

    variables = daskcmd.client_environment(cluster["scheduler_port"], cluster["dashboard_port"],
                                           tls.paths(str(alice.home)), host_ip)
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=WHERE.replace("NODE_IP", node_ip)) as seen:
        assert len(seen["workers"]) == 1 and f"//{node_ip}:" in seen["workers"][0], seen
        assert seen["where"] == node and seen["total"] == 4950

    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0 and f"workers {env} on {node}" in down.stdout, down.stdout + down.stderr
    assert listening_sockets(portal_server, alice, node) == [] and listening_sockets(portal_server, alice) == []

"""Does portal keep users out of each other's way on the server I look after?

    python -m pytest examples/test_my_server.py --portal-server ssh://matagorda --portal-env a=/opt/envs/a

Logs in as your ssh config says (or ssh://USER@matagorda); env `a` needs dask and IPython. It brings up
(or reuses) your portal setup there and leaves it running; tests needing a second user skip on ssh://.
"""

import contextlib

import pytest

from portal_tasks.plan import env_key
from portal_tasks.testing.assertions import assert_ports_in_block, assert_refused, client_env, dask_client, user_ports
from portal_tasks.testing.flows import runs_scheduler, status, up

CLIENTS = 5


@pytest.fixture
def env(portal_server):
    return str(portal_server.envs["a"])


@pytest.fixture
def mine(portal_server, alice, run_portal, env):
    """Your setup on the server (started or reused), and your port plan there."""
    up(run_portal, alice, portal_server.host, env)
    return user_ports(run_portal(alice, "ports", "--host", portal_server.host, "--json"))


def test_every_listener_of_mine_is_on_loopback_and_in_my_block(portal_server, alice, run_portal, mine,
                                                              listening_sockets):
    # scheduler, dashboard, and each worker's worker, nanny and small HTTP server: all in the block
    assert_ports_in_block(listening_sockets(alice), mine["block"])


def test_one_scheduler_per_env_whatever_the_number_of_clients(portal_server, alice, run_portal, mine, env,
                                                              testinfra_host):
    host = testinfra_host(alice)

    def schedulers():
        return sorted(p.pid for p in host.process.filter(user=alice.name) if runs_scheduler(p.args))

    clusters = status(run_portal, alice, portal_server.host)["clusters"]
    assert schedulers() == sorted(c["pid"] for c in clusters), "a scheduler that is not one env's cluster"
    with contextlib.ExitStack() as stack:
        seen = [stack.enter_context(dask_client(portal_server, alice, f"{env}/bin/python",
                                                client_env(mine, env, str(alice.home))))
                for _ in range(CLIENTS)]
        assert len({s["id"] for s in seen}) == 1, "the clients reached different schedulers"
        assert schedulers() == sorted(c["pid"] for c in clusters), "a client started a scheduler of its own"


def test_no_other_user_reaches_my_scheduler(portal_server, alice, bob, run_portal, mine, env):
    port = mine["envs"][env_key(env)]["scheduler_port"]
    up(run_portal, bob, portal_server.host, env)  # bob with a certificate of his own
    bobs = client_env(user_ports(run_portal(bob, "ports", "--host", portal_server.host, "--json")), env,
                      str(bob.home))
    attempts = {"bob's own certificate over tls://": dict(bobs, DASK_SCHEDULER_ADDRESS=f"tls://127.0.0.1:{port}"),
                "no certificate over tcp://": {"DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{port}"}}
    for what, variables in attempts.items():
        assert_refused(portal_server, bob, f"{env}/bin/python", variables, what)

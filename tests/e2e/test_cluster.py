"""`portal cluster` on the test server, as two users on their laptops: one shared, TLS-locked cluster per user and env."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
from typing import Any, Callable, Iterator

import pytest

from portal_tasks import plan
from portal_tasks.link.base import helper_path
from portal_tasks.runner import Result
from portal_tasks.testing.assertions import (assert_one_shared_cluster, assert_ports_in_block, assert_refused,
                                             client_env, dask_client, state_file, user_ports)
from portal_tasks.testing.flows import runs_cluster, runs_scheduler, skip_if_running, skip_unless_reset
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import http_squatter

pytestmark = pytest.mark.e2e
GiB = 1024**3


def _out(res: Result) -> str:
    return res.stdout + res.stderr


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


@pytest.fixture
def python(env: str) -> str:
    return f"{env}/bin/python"


@pytest.fixture
def cluster(portal_server: TestServer, run_portal: Callable[..., Result], env: str) -> Iterator[Callable[..., Result]]:
    """cluster(user, *options): `portal cluster` as user; every cluster made is stopped by key afterwards
    (not one the user ran before the test, on a server that does not reset its users: ssh://)."""
    used: dict[str, TestUser] = {}
    kept: set[str] = set()

    def cluster_(user: TestUser, *options: str, timeout: float = 150) -> Result:
        existing = portal_server.reset_user is None and user.name not in used
        if existing and runs_cluster(run_portal, portal_server, user, env):
            kept.add(user.name)
        used[user.name] = user
        return run_portal(user, "cluster", "--host", portal_server.host, "--env", env, *options, timeout=timeout)

    yield cluster_
    for user in used.values():  # stop by recorded pids / marked processes, then the window
        if user.name in kept:
            continue
        stop = json.dumps({"key": plan.env_key(env)})
        user.ssh(portal_server.host, f"echo {shlex.quote(stop)} | python3 ~/{helper_path()} cluster-stop; "
                                     f"tmux kill-window -t =portal:=cluster-{plan.env_key(env)}", timeout=60)


def ports_of(run_portal: Callable[..., Result], server: TestServer, user: TestUser) -> dict[str, Any]:
    return user_ports(run_portal(user, "ports", "--host", server.host, "--json"))


def state_of(server: TestServer, user: TestUser, env: str) -> dict[str, Any]:
    res = user.ssh(server.host, shlex.join(["cat", state_file(server, user, "clusters", f"{plan.env_key(env)}.json")]))
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout)


def schedulers_of(server: TestServer, user: TestUser) -> list[str]:
    res = user.ssh(server.host, "ps -u \"$(id -u)\" -o pid=,args=")
    return [line for line in res.stdout.splitlines() if runs_scheduler(line)]


def test_first_cluster_starts_one_and_clients_share_it(portal_server, alice, cluster, run_portal, env, python,
                                                       listening_sockets):
    skip_if_running(run_portal, portal_server, alice, env, "starts the first one")
    first = cluster(alice)
    assert first.rc == 0, _out(first)
    assert "started Dask cluster" in first.stderr and "tls://127.0.0.1:" in first.stderr
    report = ports_of(run_portal, portal_server, alice)
    rec = report["envs"][plan.env_key(env)]
    assert set(rec) >= {"scheduler_port", "dashboard_port", "jupyter_port"}
    mine = assert_ports_in_block(listening_sockets(alice), report["block"])
    assert {rec["scheduler_port"], rec["dashboard_port"]} <= {s.port for s in mine}
    # scheduler, dashboard, and for each of the 2 workers its worker, nanny and HTTP port: all in the block
    assert report["listening"] == len(mine) == 2 + 2 * 3
    assert report["listening_in_block"] == 8 and report["listening_not_loopback"] == 0

    environment = client_env(report, env, str(alice.home))
    seen = assert_one_shared_cluster(portal_server, alice, python, environment, listening_sockets)
    assert seen["sum"] == 6 and len(seen["workers"]) == 2

    again = cluster(alice)
    assert again.rc == 0 and "reusing your Dask cluster" in again.stderr, _out(again)
    assert len(schedulers_of(portal_server, alice)) == 1


def test_users_get_their_own_blocks_and_cannot_reach_each_other(portal_server, alice, bob, cluster, run_portal, env,
                                                                 python):
    for user in (alice, bob):
        res = cluster(user)
        assert res.rc == 0, _out(res)
    a, b = (ports_of(run_portal, portal_server, u) for u in (alice, bob))
    assert a["block"]["start"] != b["block"]["start"]
    assert not set(range(a["block"]["start"], a["block"]["end"] + 1)) & set(range(b["block"]["start"], b["block"]["end"] + 1))

    port = a["envs"][plan.env_key(env)]["scheduler_port"]
    bob_certs = client_env(b, env, str(bob.home))
    attempts = {
        "bob's own certificate over tls://": dict(bob_certs, DASK_SCHEDULER_ADDRESS=f"tls://127.0.0.1:{port}"),
        "no certificate over tcp://": {"DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{port}"},
        "no certificate over tls://": {"DASK_SCHEDULER_ADDRESS": f"tls://127.0.0.1:{port}",
                                       "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": bob_certs["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]},
    }
    for what, variables in attempts.items():
        assert_refused(portal_server, bob, python, variables, what)

    peek = bob.ssh(portal_server.host, f"ls {alice.home}/.portal; cat {alice.home}/.portal/tls/key.pem")
    assert peek.rc != 0 and "PRIVATE KEY" not in peek.stdout
    modes = alice.ssh(portal_server.host, "stat -L -c '%a %n' ~/.portal ~/.portal/tls ~/.portal/tls/*")  # tls: a link to its set
    for line in modes.stdout.splitlines():
        mode, name = line.split(" ", 1)
        assert mode == ("700" if name.endswith(("/.portal", "/tls")) else "600"), line


def test_squatter_on_the_planned_port_is_avoided(portal_server, alice, bob, cluster, run_portal, env, python):
    planned = ports_of(run_portal, portal_server, alice)["block"]["start"] + plan.LAYOUT["scheduler_port"]
    squat = ("import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', %d))\ns.listen()\n"
             "print('listening', flush=True)\nsys.stdin.read()\n" % planned)
    squatter = subprocess.Popen(bob.ssh_argv(portal_server.host, shlex.join(["python3", "-c", squat])),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stderr is not None
        assert squatter.stdout.readline().strip() == "listening", squatter.stderr.read()[-800:]
        res = cluster(alice)
        assert res.rc == 0, _out(res)
        assert f"port {planned}" in res.stderr and "another user" in res.stderr
        report = ports_of(run_portal, portal_server, alice)
        moved = report["envs"][plan.env_key(env)]["scheduler_port"]
        assert moved != planned and report["block"]["start"] <= moved <= report["block"]["end"]
        assert state_of(portal_server, alice, env)["address"] == f"tls://127.0.0.1:{moved}"
        with dask_client(portal_server, alice, python, client_env(report, env, str(alice.home))) as seen:
            assert seen["address"] == f"tls://127.0.0.1:{moved}"
    finally:
        assert squatter.stdin is not None
        squatter.stdin.close()
        squatter.wait(timeout=30)


def test_killed_scheduler_is_replaced(portal_server, alice, cluster, env):
    skip_unless_reset(portal_server, "kills the user's scheduler")
    assert cluster(alice).rc == 0
    old = state_of(portal_server, alice, env)["scheduler_pid"]
    assert alice.ssh(portal_server.host, f"kill -9 {old}").rc == 0
    res = cluster(alice)
    assert res.rc == 0 and "not healthy" in res.stderr and "started Dask cluster" in res.stderr, _out(res)
    new = state_of(portal_server, alice, env)
    assert new["scheduler_pid"] != old
    assert len(schedulers_of(portal_server, alice)) == 1


def test_ten_concurrent_calls_leave_one_scheduler(portal_server, alice, cluster, run_portal, env):
    # the SSH master comes up first: racing masters are the link's business, one scheduler is the cluster's
    assert run_portal(alice, "ports", "--host", portal_server.host).rc == 0
    started = 0 if runs_cluster(run_portal, portal_server, alice, env) else 1  # ssh://: the user's own may run
    results: list[Result] = []
    threads = [threading.Thread(target=lambda: results.append(cluster(alice, timeout=240))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.rc == 0 for r in results), [_out(r) for r in results if r.rc]
    assert sum("started Dask cluster" in r.stderr for r in results) == started, \
        [_out(r) for r in results if "started Dask cluster" in r.stderr]
    assert sum("reusing your Dask cluster" in r.stderr for r in results) == 10 - started
    assert len(schedulers_of(portal_server, alice)) == 1


def test_memory_budget_is_split_across_workers(portal_server, alice, cluster, run_portal, env, python):
    skip_if_running(run_portal, portal_server, alice, env, "starts one with a budget of its own")
    res = cluster(alice, "--memory", "4GiB", "--workers", "2")
    assert res.rc == 0, _out(res)
    report = ports_of(run_portal, portal_server, alice)
    with dask_client(portal_server, alice, python, client_env(report, env, str(alice.home))) as seen:
        assert sorted(seen["workers"].values()) == [2 * GiB, 2 * GiB]


#: A task that holds more than its worker's memory limit: the worker's nanny ends it and starts it again
#: (Dask retries the task on the other worker, which ends the same way, until it gives up on the task).
OVER_THE_LIMIT = """import json, os, time
from dask.distributed import Client
client = Client()
client.wait_for_workers(2, timeout=60)
before = client.run(os.getpid)

def hog():
    held = b"x" * (900 * 2**20)
    time.sleep(30)
    return len(held)

try:
    outcome = str(client.submit(hog, pure=False).result(timeout=120))
except Exception as exc:
    outcome = type(exc).__name__
client.wait_for_workers(2, timeout=120)
print(json.dumps({"outcome": outcome, "before": before, "after": client.run(os.getpid)}), flush=True)
"""


def test_a_worker_over_its_memory_limit_is_restarted_by_its_nanny_inside_the_block(
        portal_server, alice, cluster, run_portal, env, python, listening_sockets):
    """Both workers run under one `dask worker --nworkers 2`: each still has its nanny, which ends the worker that
    went over its limit and starts it again, on its own ports of the block (its HTTP port too)."""
    skip_if_running(run_portal, portal_server, alice, env, "starts one with a budget of its own")
    res = cluster(alice, "--memory", "1GiB", "--workers", "2")  # 512 MiB a worker
    assert res.rc == 0, _out(res)
    report = ports_of(run_portal, portal_server, alice)
    with dask_client(portal_server, alice, python, client_env(report, env, str(alice.home)), timeout=240,
                     script=OVER_THE_LIMIT) as seen:
        print(seen)
        assert seen["outcome"] == "KilledWorker", seen  # the task never finished: its workers were ended
        # both started again, each by its nanny on its own address (worker -> pid)
        assert sorted(seen["after"]) == sorted(seen["before"]) and len(seen["after"]) == 2, seen
        assert not set(seen["after"].values()) & set(seen["before"].values()), seen
    state = state_of(portal_server, alice, env)
    on_host = assert_ports_in_block(listening_sockets(alice), report["block"])
    http_lo, http_hi = state["http_ports"]
    assert len([s for s in on_host if http_lo <= s.port <= http_hi]) == 2, on_host  # each its own HTTP port


@pytest.mark.parametrize("option, value", [("--workers", "-3"), ("--memory", "lots"), ("--threads", "zero")])
def test_bad_values_are_one_line_and_touch_nothing(portal_server, alice, cluster, env, option, value,
                                                   listening_sockets):
    assert cluster(alice).rc == 0
    before = state_of(portal_server, alice, env)
    ports_before = sorted(s.port for s in listening_sockets(alice))
    res = cluster(alice, option, value)
    assert res.rc != 0 and "Traceback" not in _out(res)
    lines = [line for line in _out(res).splitlines() if line.strip()]
    assert len(lines) == 1 and value in lines[0] and option in lines[0], lines
    assert state_of(portal_server, alice, env)["scheduler_pid"] == before["scheduler_pid"]
    assert sorted(s.port for s in listening_sockets(alice)) == ports_before


@pytest.mark.parametrize("workers", [2, 4])
def test_up_puts_every_listening_socket_of_the_user_in_the_block(portal_server, alice, run_portal, env, python,
                                                                  listening_sockets, workers):
    """`up --workers N`: scheduler, dashboard and each worker's worker, nanny and HTTP server listen in the
    user's block (as `ss` sees them on the host), `ports --json` lists every one inside it, and a plain
    Client() sees the N workers."""
    skip_if_running(run_portal, portal_server, alice, env, "starts one with the workers asked for")
    res = run_portal(alice, "up", "--host", portal_server.host, "--env", env, "--workers", str(workers),
                     "--no-attach", "--no-browser", timeout=240)
    try:
        assert res.rc == 0, _out(res)
        assert "outside your" not in _out(res), _out(res)
        report = ports_of(run_portal, portal_server, alice)
        block, rec = report["block"], report["envs"][plan.env_key(env)]
        on_host = assert_ports_in_block(listening_sockets(alice), block)  # none outside, all on loopback
        assert len(on_host) == 2 + 3 * workers, on_host
        http_lo, http_hi = rec["http_ports"]
        assert len([s for s in on_host if http_lo <= s.port <= http_hi]) == workers  # each its own HTTP port
        for name in ("worker_ports", "nanny_ports"):
            lo, hi = rec[name]
            assert len([s for s in on_host if lo <= s.port <= hi]) == workers, (name, on_host)
        assert sorted(s["port"] for s in report["sockets"]) == sorted(s.port for s in on_host)
        assert report["listening"] == report["listening_in_block"] == 2 + 3 * workers
        assert all(block["start"] <= s["port"] <= block["end"] for s in report["sockets"])

        seen = assert_one_shared_cluster(portal_server, alice, python, client_env(report, env, str(alice.home)),
                                         listening_sockets)
        assert seen["sum"] == 6 and len(seen["workers"]) == workers
        state = state_of(portal_server, alice, env)
        assert len(state["workers_pids"]) == 1 and state["http_ports"] == rec["http_ports"]  # one `dask worker`
    finally:
        run_portal(alice, "down", "--host", portal_server.host, "--env", env, timeout=120)


def test_a_workers_http_port_another_user_holds_is_skipped_inside_the_block(portal_server, alice, bob, run_portal,
                                                                             env, listening_sockets):
    """Dask's HTTP server would leave the block for a random port when its port is taken: portal gives the
    worker the next free HTTP port of the slot instead."""
    skip_if_running(run_portal, portal_server, alice, env, "starts one")
    report = ports_of(run_portal, portal_server, alice)
    squatted = report["block"]["start"] + plan.LAYOUT["http_ports"][0]
    with http_squatter(portal_server, bob, squatted):
        res = run_portal(alice, "up", "--host", portal_server.host, "--env", env, "--workers", "2",
                         "--no-attach", "--no-browser", timeout=240)
        try:
            assert res.rc == 0, _out(res)
            assert "workers' HTTP" in res.stderr and "held by other users" in res.stderr, _out(res)
            mine = assert_ports_in_block(listening_sockets(alice), report["block"])
            assert squatted not in {s.port for s in mine} and len(mine) == 2 + 3 * 2
            assert state_of(portal_server, alice, env)["http"] == [squatted + 1, squatted + 2]
        finally:
            run_portal(alice, "down", "--host", portal_server.host, "--env", env, timeout=120)


def test_an_env_the_earlier_layout_planned_moves_to_a_slot_with_room_for_its_http_servers(
        portal_server, alice, cluster, run_portal, env, listening_sockets):
    """ports.json as the previous version wrote it (20-port slots, no HTTP range): the cluster's start plans
    the env again, around the other env's old ports, says so, and every listener is in the block."""
    skip_unless_reset(portal_server, "rewrites the user's port plan")
    block = ports_of(run_portal, portal_server, alice)["block"]
    start = block["start"]

    def old(slot: int, name: str) -> dict[str, Any]:
        base = start + 20 * slot
        return {"scheduler_port": base, "dashboard_port": base + 1, "jupyter_port": base + 2, "env": name,
                "worker_ports": [base + 4, base + 11], "nanny_ports": [base + 12, base + 19], "slot": slot}

    key = plan.env_key(env)
    recorded = {"block": {k: block[k] for k in ("index", "start", "end")},
                "envs": {key: old(0, env), "other": old(1, "/opt/other")}}
    path = state_file(portal_server, alice, "ports.json")
    wrote = alice.ssh(portal_server.host, f"mkdir -p -m 700 {shlex.quote(path.rsplit('/', 1)[0])} && "
                                          f"printf %s {shlex.quote(json.dumps(recorded))} > {shlex.quote(path)}")
    assert wrote.rc == 0, wrote.stderr
    res = cluster(alice, "--workers", "2")
    assert res.rc == 0 and "earlier portal" in res.stderr and "slot 2" in res.stderr, _out(res)
    report = ports_of(run_portal, portal_server, alice)
    rec = report["envs"][key]
    assert rec["scheduler_port"] == start + 60 and rec["http_ports"] == [start + 80, start + 87]
    assert report["envs"]["other"]["http_ports"] is None  # kept as it was: nothing of it runs to move
    mine = assert_ports_in_block(listening_sockets(alice), block)
    assert len(mine) == 2 + 3 * 2 and rec["scheduler_port"] in {s.port for s in mine}

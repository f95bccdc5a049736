"""Damaged state files on the host: each is one line naming it, or a clean start; a running cluster is never re-planned."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from portal_tasks import plan
from portal_tasks.runner import Result
from portal_tasks.testing.assertions import state_file
from portal_tasks.testing.flows import http_get, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import listening_sockets

pytestmark = pytest.mark.e2e

DAMAGE = {"empty": "", "cut short": '{"block": {"index": 3, "sta', "not JSON": "\x01garbage{",
          "a list": "[1, 2]"}


def _write(server: TestServer, user: TestUser, path: str, content: str) -> None:
    res = user.ssh(server.host, f"printf %s {shlex.quote(content)} > {shlex.quote(path)}")
    assert res.ok, res.stderr


def _read(server: TestServer, user: TestUser, path: str) -> str:
    res = user.ssh(server.host, shlex.join(["cat", path]))
    assert res.ok, res.stderr
    return res.stdout


def _scheduler(server: TestServer, user: TestUser, key: str, ports: tuple[int, int]) -> int:
    """The running scheduler's pid (from its pid file, alive), asserting it still serves its ports."""
    pid = int(_read(server, user, state_file(server, user, "clusters", f"{key}.scheduler.pid")).strip())
    assert user.ssh(server.host, f"kill -0 {pid}").ok, f"scheduler {pid} is gone"
    held = {s.port for s in listening_sockets(server, user) if s.pid == pid}
    assert set(ports) <= held, f"scheduler {pid} listens on {sorted(held)}, not on its ports {ports}"
    return pid


def _one_line_or_fine(res: Result, path: str) -> None:
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "internal error" not in out, out
    if res.rc != 0:
        lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
        assert res.rc == 1 and len(lines) == 1 and path in lines[0], out


def test_damaged_state_files_never_replan_a_running_cluster(portal_server, alice, run_portal: Callable[..., Result]):
    host = portal_server.host
    env = str(portal_server.envs["a"])
    key = plan.env_key(env)
    up(run_portal, alice, host, env, "--jupyter")
    (cluster,) = status(run_portal, alice, host)["clusters"]
    ports = (cluster["scheduler_port"], cluster["dashboard_port"])
    pid = _scheduler(portal_server, alice, key, ports)
    files = {
        "ports.json": state_file(portal_server, alice, "ports.json"),
        "cluster record": state_file(portal_server, alice, "clusters", f"{key}.json"),
        "Jupyter record": state_file(portal_server, alice, "jupyter", key, "state.json"),
    }
    for what, path in files.items():
        good = _read(portal_server, alice, path)
        for damage, content in DAMAGE.items():
            _write(portal_server, alice, path, content)
            try:
                res = run_portal(alice, "up", "--host", host, "--env", env, "--jupyter", "--no-attach", "--no-browser",
                                 timeout=240)
                _one_line_or_fine(res, path)
                if what == "cluster record":  # the cluster runs: the record is said, not replaced
                    assert res.rc == 1 and "still runs" in res.stderr and "down --env" in res.stderr, res.stderr
                if what == "ports.json":  # read by `ports` and by planning another env: one line naming it
                    report = run_portal(alice, "ports", "--host", host, "--json")
                    _one_line_or_fine(report, path)
                    assert report.rc == 1, report.stdout
                    other = run_portal(alice, "cluster", "--host", host, "--env", str(portal_server.envs["nobokeh"]),
                                       timeout=120)
                    _one_line_or_fine(other, path)
                    assert other.rc == 1 and "mv " in other.stderr, other.stdout + other.stderr
                if what == "Jupyter record":  # stale: Jupyter starts afresh, the URLs load
                    assert res.rc == 0, res.stderr
                    assert all(http_get(url)[0] == 200 for url in urls_in(res)), res.stdout
                print(f"{what} {damage}: rc {res.rc} {res.stderr.strip().splitlines()[-1:]}")
            finally:
                if what != "Jupyter record":
                    _write(portal_server, alice, path, good)
            assert _scheduler(portal_server, alice, key, ports) == pid, f"{what} {damage}: the scheduler was restarted"
    final = status(run_portal, alice, host)
    assert [(c["pid"], c["scheduler_port"], c["dashboard_port"]) for c in final["clusters"]] == [(pid, *ports)], final
    assert final["clusters"][0]["healthy"], final


def test_a_damaged_record_of_a_stopped_cluster_is_a_clean_start(portal_server, alice, run_portal):
    host = portal_server.host
    env = str(portal_server.envs["a"])
    key = plan.env_key(env)
    up(run_portal, alice, host, env)
    down = run_portal(alice, "down", "--host", host, timeout=120)
    assert down.rc == 0, down.stderr
    record = state_file(portal_server, alice, "clusters", f"{key}.json")
    _write(portal_server, alice, record, '{"key": "a", "sched')
    res = up(run_portal, alice, host, env)
    assert record in res.stderr and "starting afresh" in res.stderr, res.stderr
    report = status(run_portal, alice, host)
    assert len(report["clusters"]) == 1 and report["clusters"][0]["healthy"], report["clusters"]


def test_down_env_stops_a_cluster_whose_record_is_damaged_and_removes_the_record(portal_server, alice, run_portal):
    """What the one line of `up` tells the user to do (`down --env`) works: no listing shows the damaged
    record, but `down --env` still finds the env's marked processes, stops them and removes the record."""
    host = portal_server.host
    env = str(portal_server.envs["a"])
    key = plan.env_key(env)
    up(run_portal, alice, host, env)
    (cluster,) = status(run_portal, alice, host)["clusters"]
    pid = _scheduler(portal_server, alice, key, (cluster["scheduler_port"], cluster["dashboard_port"]))
    record = state_file(portal_server, alice, "clusters", f"{key}.json")
    _write(portal_server, alice, record, DAMAGE["cut short"])
    down = run_portal(alice, "down", "--host", host, "--env", env, timeout=120)
    assert down.rc == 0 and f"cluster {env}," in down.stdout, down.stdout + down.stderr
    assert not alice.ssh(host, f"kill -0 {pid}").ok, f"scheduler {pid} still runs"
    assert not alice.ssh(host, shlex.join(["test", "-e", record])).ok, "the damaged record is still there"
    assert listening_sockets(portal_server, alice) == []

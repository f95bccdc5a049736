"""`portal up` / `status` / `down` on the test server, reached through its login node, as users on their laptops."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from pathlib import Path

import pytest

from portal_tasks.runner import Result
from portal_tasks.testing.assertions import CLIENTS_SCRIPT, client_env, dask_client, user_ports
from portal_tasks.testing.flows import (followed, http_get, laptop_ssh_pids, recording_browser, status, up, urls_in,
                                       via_login_host)
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


@pytest.fixture
def browser(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A $BROWSER that records the URLs it was asked to open."""
    return recording_browser(tmp_path)


def test_up_through_the_login_node_opens_working_urls(portal_server, alice, run_portal, env, browser):
    host = via_login_host(portal_server)
    browser_env, record = browser
    res = up(run_portal, alice, host, env, "--jupyter", env_vars=browser_env)
    handed = record.read_text().split()
    assert not [u for u in handed if "token=" in u], handed  # the browser's argv carries no token
    opened = followed(handed)
    dashboards = [u for u in opened if u.endswith("/status")]
    labs = [u for u in opened if "/lab?token=" in u]
    assert len(dashboards) == 1 and len(labs) == 1, opened
    assert http_get(dashboards[0])[0] == 200
    assert http_get(labs[0])[0] == 200
    assert http_get(labs[0].split("/lab?")[0] + "/api/status")[0] == 403  # without the token: refused
    assert "✓ cluster" in res.stderr and "✓ forward" in res.stderr

    ports = user_ports(run_portal(alice, "ports", "--host", host, "--json"))
    variables = client_env(ports, env, str(alice.home))
    with dask_client(portal_server, alice, f"{env}/bin/python", variables, script=CLIENTS_SCRIPT) as seen:
        others = [c for c in seen["clients"] if c != seen["mine"] and c.startswith("Client-")]
    assert others, f"the IPython window's client is not connected: {seen}"


def test_second_up_changes_nothing(portal_server, alice, run_portal, env):
    host = portal_server.host
    first = up(run_portal, alice, host, env, "--no-browser")
    before = status(run_portal, alice, host)
    second = up(run_portal, alice, host, env, "--no-browser")
    after = status(run_portal, alice, host)
    assert urls_in(first) == urls_in(second) and urls_in(first)
    pick = lambda s: [(c["pid"], c["address"], c["dashboard_port"]) for c in s["clusters"]]  # noqa: E731
    assert pick(before) == pick(after)
    windows = lambda s: [(w["name"], w["pid"]) for x in s["sessions"] for w in x["windows"]]  # noqa: E731
    assert windows(before) == windows(after)
    assert "reusing" in second.stderr + second.stdout


def test_network_drop_leaves_everything_running_and_up_restores_urls(portal_server, alice, run_portal, env):
    host = portal_server.host
    first = up(run_portal, alice, host, env, "--no-browser")
    before = status(run_portal, alice, host)
    masters = laptop_ssh_pids(alice, b"ControlMaster=yes")
    assert masters, "no ssh master of this laptop found"
    for pid in masters:  # the laptop's connection drops
        os.kill(pid, signal.SIGKILL)
    for url in urls_in(first):
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=3)
    again = up(run_portal, alice, host, env, "--no-browser")
    after = status(run_portal, alice, host)
    assert [c["pid"] for c in after["clusters"]] == [c["pid"] for c in before["clusters"]]
    assert [w["pid"] for s in after["sessions"] for w in s["windows"]] == \
        [w["pid"] for s in before["sessions"] for w in s["windows"]]
    assert urls_in(again) == urls_in(first)
    assert all(http_get(u)[0] == 200 for u in urls_in(again))


def test_two_users_at_once_keep_apart(portal_server, alice, bob, run_portal, env):
    host = portal_server.host
    results: dict[str, Result] = {}

    def go(user: TestUser) -> None:
        results[user.role] = run_portal(user, "up", "--host", host, "--env", env, "--no-attach", "--no-browser",
                                        timeout=240)

    threads = [threading.Thread(target=go, args=(u,)) for u in (alice, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for role, res in results.items():
        assert res.rc == 0, (role, res.stdout + res.stderr)
    a, b = status(run_portal, alice, host), status(run_portal, bob, host)
    a_block, b_block = a["ports"]["block"], b["ports"]["block"]
    assert a_block["end"] < b_block["start"] or b_block["end"] < a_block["start"]
    for user_status, res in ((a, results["alice"]), (b, results["bob"])):
        assert [s["name"] for s in user_status["sessions"]] == ["portal"]
        assert all(http_get(u)[0] == 200 for u in urls_in(res))
    assert a["clusters"][0]["address"] != b["clusters"][0]["address"]


def test_down_stops_everything_of_the_user_and_nothing_of_the_other(portal_server, alice, bob, run_portal, env,
                                                                    listening_sockets):
    host = portal_server.host
    up(run_portal, bob, host, env, "--no-browser")
    res_a = up(run_portal, alice, host, env, "--no-browser", "--jupyter")
    bob_before = status(run_portal, bob, host)
    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0, down.stdout + down.stderr
    assert listening_sockets(alice) == []
    for url in urls_in(res_a):
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=3)
    bob_after = status(run_portal, bob, host)
    assert [c["pid"] for c in bob_after["clusters"]] == [c["pid"] for c in bob_before["clusters"]]
    assert bob_after["clusters"][0]["healthy"]
    assert [s["name"] for s in status(run_portal, alice, host)["sessions"]] == []


@pytest.mark.parametrize("args, needle", [
    (["--env", "/opt/no/such/env"], "/opt/no/such/env"),
    (["--memory", "lots"], "lots"),
    (["--workers", "-3"], "-3"),
])
def test_bad_input_is_one_line_and_leaves_the_running_cluster(portal_server, alice, run_portal, env, args, needle):
    host = portal_server.host
    up(run_portal, alice, host, env, "--no-browser")
    before = status(run_portal, alice, host)["clusters"]
    full = ["up", "--host", host, "--no-attach", "--no-browser", *args]
    if "--env" not in args:
        full += ["--env", env]
    res = run_portal(alice, *full)
    assert res.rc != 0
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert len(errors) == 1 and needle in errors[0], res.stderr
    after = status(run_portal, alice, host)["clusters"]
    assert [c["pid"] for c in after] == [c["pid"] for c in before] and after[0]["healthy"]


def test_unknown_host_is_one_line(alice, run_portal):
    res = run_portal(alice, "up", "--host", "no-such-host.invalid", "--env", "a", "--no-attach", timeout=60)
    assert res.rc == 1 and "Traceback" not in res.stderr
    assert "no-such-host.invalid" in res.stderr

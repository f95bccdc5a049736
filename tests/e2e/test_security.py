"""Other users on the shared host: what bob can and cannot do to alice's services, and many `up` at once.

(The scheduler refusing bob over tls:// and tcp://, and bob's squatter on alice's scheduler port, are in
test_cluster.py; alice's `down` leaving bob's cluster alone in test_up.py.)
"""

from __future__ import annotations

import json
import shlex
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portal_tasks import plan
from portal_tasks.runner import Result
from portal_tasks.testing.flows import http_get, runs_cluster, runs_scheduler, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import http_squatter, port_grabber

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


#: Run on the host as another user: GET a URL over TCP or a unix socket; prints the status or the error.
PROBE = r'''
import http.client, socket, sys
target, path = sys.argv[1], sys.argv[2]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(target)
try:
    conn = Unix("localhost", timeout=5) if target.startswith("/") else http.client.HTTPConnection("127.0.0.1", int(target), timeout=5)
    conn.request("GET", path)
    print("HTTP", conn.getresponse().status)
except OSError as exc:
    print("ERROR", type(exc).__name__)
'''


def probe(server: TestServer, user: TestUser, target: str | int, path: str) -> str:
    res = user.ssh(server.host, shlex.join(["python3", "-c", PROBE, str(target), path]), timeout=30)
    return res.stdout.strip()


def jupyter_entry(run_portal: Callable[..., Result], user: TestUser, host: str) -> dict[str, Any]:
    servers = status(run_portal, user, host)["jupyter"]
    assert len(servers) == 1, servers
    return dict(servers[0])


# -- files and Jupyter ---------------------------------------------------------------------------


def test_another_user_reads_nothing_in_portal_state(portal_server, alice, bob, run_portal, env):
    host = portal_server.host
    up(run_portal, alice, host, env, "--jupyter")
    listing = alice.ssh(host, "find ~/.portal -printf '%m %y %p\\n'")
    assert listing.rc == 0, listing.stderr
    entries = [line.split(" ", 2) for line in listing.stdout.splitlines()]
    assert any(p.endswith("/token") for _, _, p in entries) and any(p.endswith("key.pem") for _, _, p in entries)
    top = [e for e in entries if e[2].endswith("/.portal")]
    assert top and top[0][0] == "700", top
    secrets = [e for e in entries if e[2].endswith(("/token", ".pem"))]
    assert secrets and all(mode == "600" for mode, _, _ in secrets), secrets
    files = [p for _, kind, p in entries if kind == "f"]
    peek = bob.ssh(host, "for f in " + " ".join(shlex.quote(f) for f in files) + "; do cat \"$f\" && echo READ:$f; done;"
                   " ls " + shlex.quote(files[0].rsplit("/.portal/", 1)[0] + "/.portal") + " && echo LISTED")
    assert "READ:" not in peek.stdout and "LISTED" not in peek.stdout, peek.stdout


def test_jupyter_refuses_another_user_without_the_token(portal_server, alice, bob, run_portal, env):
    host = portal_server.host
    res = up(run_portal, alice, host, env, "--jupyter", "--no-socket")  # on a port (a socket is the default)
    entry = jupyter_entry(run_portal, alice, host)
    port = entry["port"]
    for path in ("/api/status", "/api/contents", "/api/kernels", "/lab"):
        seen = probe(portal_server, bob, port, path)
        assert seen in ("HTTP 403", "HTTP 302") or seen.startswith("HTTP 40"), (path, seen)
        if path == "/lab":  # the page itself redirects to the login form, never serves the lab
            assert seen != "HTTP 200", seen
    assert probe(portal_server, bob, port, f"/api/status?token={'0' * 48}") == "HTTP 403"
    lab = [u for u in urls_in(res) if "/lab?token=" in u]
    assert lab and http_get(lab[0])[0] == 200  # alice, with her token, through her forward


def test_each_jupyter_start_has_a_new_token_and_browse_opens_the_current_one(portal_server, alice, run_portal, env,
                                                                               tmp_path):
    host = portal_server.host
    first = [u for u in urls_in(up(run_portal, alice, host, env, "--jupyter")) if "/lab?token=" in u]
    pid = jupyter_entry(run_portal, alice, host)["pid"]
    assert first and pid and alice.ssh(host, f"kill {int(pid)}").rc == 0
    second = [u for u in urls_in(up(run_portal, alice, host, env, "--jupyter")) if "/lab?token=" in u]
    old, new = first[0].rpartition("token=")[2], second[0].rpartition("token=")[2]
    assert old != new and http_get(second[0])[0] == 200
    assert http_get(second[0].split("/lab?")[0] + "/api/status?token=" + old)[0] == 403  # the old token opens nothing
    record = tmp_path / "opened.txt"
    (tmp_path / "browser").write_text(f"#!/bin/sh\necho \"$1\" >> {record}\n")
    (tmp_path / "browser").chmod(0o755)
    res = run_portal(alice, "browse", "--host", host, env={"BROWSER": str(tmp_path / "browser")})
    assert res.rc == 0, res.stdout + res.stderr
    opened = record.read_text().split()
    pages = [u for u in opened if u.startswith("file://")]  # a token URL goes through a private redirect page
    assert len(opened) == 2 and len(pages) == 1, opened
    page = Path(urllib.parse.urlsplit(pages[0]).path).read_text()
    assert second[0] in page and old not in page, page


def test_jupyter_on_a_unix_socket_is_unreachable_for_another_user(portal_server, alice, bob, run_portal, env):
    host = portal_server.host
    res = up(run_portal, alice, host, env, "--jupyter")  # on a socket by default
    entry = jupyter_entry(run_portal, alice, host)
    sock = entry["socket"]
    assert sock and entry["port"] is None, entry
    mode = alice.ssh(host, shlex.join(["stat", "-c", "%a %U", sock.rsplit("/", 1)[0]])).stdout.split()
    assert mode[0] == "700", mode
    assert probe(portal_server, bob, sock, "/api/status").startswith("ERROR PermissionError")
    assert probe(portal_server, alice, sock, "/api/status") == "HTTP 403"  # even alice needs the token
    lab = [u for u in urls_in(res) if "/lab?token=" in u]
    assert lab and http_get(lab[0])[0] == 200


def test_down_of_another_user_touches_nothing(portal_server, alice, bob, run_portal, env, listening_sockets):
    host = portal_server.host
    res = up(run_portal, alice, host, env, "--jupyter")
    before = status(run_portal, alice, host)
    mine = sorted((s.addr, s.port) for s in listening_sockets(alice))
    down = run_portal(bob, "down", "--host", host)
    assert down.rc == 0 and "nothing" in down.stdout, down.stdout + down.stderr
    after = status(run_portal, alice, host)
    assert [c["pid"] for c in after["clusters"]] == [c["pid"] for c in before["clusters"]]
    assert after["sessions"] == before["sessions"] and after["jupyter"] == before["jupyter"]
    assert sorted((s.addr, s.port) for s in listening_sockets(alice)) == mine
    assert all(http_get(u)[0] == 200 for u in urls_in(res))


# -- squatters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["dashboard_port", "jupyter_port"])
def test_another_users_web_server_on_a_planned_port_is_never_taken_for_mine(portal_server, alice, bob, run_portal,
                                                                              env, service, listening_sockets):
    host = portal_server.host
    ports = run_portal(alice, "ports", "--host", host, "--json")
    assert ports.rc == 0, ports.stderr
    planned = json.loads(ports.stdout)["block"]["start"] + plan.LAYOUT[service]
    with http_squatter(portal_server, bob, planned):
        res = up(run_portal, alice, host, env, "--jupyter", "--no-socket")
        assert f"port {planned}" in res.stderr and "another user" in res.stderr, res.stderr
        report = status(run_portal, alice, host)
        used = report["clusters"][0]["dashboard_port"] if service == "dashboard_port" else report["jupyter"][0]["port"]
        assert used != planned, report
        for url in urls_in(res):
            code, body = http_get(url)
            assert code == 200 and "bob's page" not in body, (url, body[:200])
        forwards = _forwarded_ports(run_portal, alice, host)
        mine = {s.port for s in listening_sockets(alice)}
        assert set(forwards) == set(urls_in(res)) and all(p in mine for p in forwards.values()), (forwards, mine)
        dashboard = next(u for u in urls_in(res) if u.endswith("/status"))
        identity = json.loads(http_get(dashboard.rpartition("/")[0] + "/json/identity.json")[1])
        assert identity["address"] == report["clusters"][0]["address"]  # alice's own scheduler, through the forward


# -- many at once --------------------------------------------------------------------------------


def _at_once(run_portal: Callable[..., Result], runs: list[tuple[TestUser, list[str]]],
             timeout: float = 300) -> list[Result]:
    results: list[Result | None] = [None] * len(runs)

    def go(i: int, user: TestUser, args: list[str]) -> None:
        results[i] = run_portal(user, *args, timeout=timeout)

    threads = [threading.Thread(target=go, args=(i, u, a)) for i, (u, a) in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    assert all(r is not None for r in results), "a run did not finish"
    return [r for r in results if r is not None]


def _assert_one_of_everything(server: TestServer, user: TestUser, report: dict[str, Any]) -> None:
    assert [s["name"] for s in report["sessions"]] == ["portal"], report["sessions"]
    names = [w["name"] for w in report["sessions"][0]["windows"]]
    assert len(names) == len(set(names)), f"duplicate windows: {names}"
    assert len(report["clusters"]) == 1 and report["clusters"][0]["healthy"], report["clusters"]
    procs = user.ssh(server.host, "ps -u \"$(id -u)\" -o args=").stdout.splitlines()
    assert sum(runs_scheduler(p) for p in procs) == 1, procs
    assert sum(p.split()[0].endswith("/ipython") or "bin/ipython" in p for p in procs) == 1, procs


def test_ten_concurrent_up_of_one_user_make_one_of_everything(portal_server, alice, run_portal, env):
    host = portal_server.host
    args = ["up", "--host", host, "--env", env, "--no-attach", "--no-browser"]
    started = 0 if runs_cluster(run_portal, portal_server, alice, env) else 1  # ssh://: the user's own may run
    results = _at_once(run_portal, [(alice, args)] * 10)
    failed = [r.stdout + r.stderr for r in results if r.rc != 0]
    assert not failed, failed[0]
    assert all("Traceback" not in r.stderr for r in results)
    assert sum("started Dask cluster" in r.stderr for r in results) == started
    _assert_one_of_everything(portal_server, alice, status(run_portal, alice, host))
    urls = {u for r in results for u in urls_in(r)}
    assert len(urls) == 1 and http_get(urls.pop())[0] == 200


def test_two_users_each_running_up_three_times_at_once_do_not_collide(portal_server, alice, bob, run_portal, env):
    host = portal_server.host
    args = ["up", "--host", host, "--env", env, "--no-attach", "--no-browser"]
    results = _at_once(run_portal, [(alice, args), (bob, args)] * 3)
    failed = [r.stdout + r.stderr for r in results if r.rc != 0]
    assert not failed, failed[0]
    reports = {u.role: status(run_portal, u, host) for u in (alice, bob)}
    for user in (alice, bob):
        _assert_one_of_everything(portal_server, user, reports[user.role])
    a, b = (reports[r]["ports"]["block"] for r in ("alice", "bob"))
    assert a["end"] < b["start"] or b["end"] < a["start"]
    assert reports["alice"]["clusters"][0]["address"] != reports["bob"]["clusters"][0]["address"]


# -- a co-user grabbing ports of the plan while `up` runs ------------------------------------------

def _forwarded_ports(run_portal: Callable[..., Result], user: TestUser, host: str) -> dict[str, int]:
    """URL -> the host port its forward goes to, from `status --json`."""
    return {f["url"]: int(f["remote"].rpartition(":")[2]) for f in status(run_portal, user, host)["forwards"]}


def test_a_co_user_grabbing_ports_during_up_gets_no_request_and_every_url_is_mine(
        portal_server, alice, bob, run_portal, env, listening_sockets):
    host = portal_server.host
    block = json.loads(run_portal(alice, "ports", "--host", host, "--json").stdout)["block"]
    first_move = block["start"] + 3  # the free port of the slot, where a squatted Jupyter port goes first
    with port_grabber(portal_server, bob, alice, [first_move], jupyter_grabs=2) as seen:
        res = up(run_portal, alice, host, env, "--jupyter", "--no-socket")  # Jupyter on a port, to be grabbed
    grabbed = [line for line in seen if "grabbed" in line]
    assert {line["why"] for line in grabbed} == {"before up", "jupyter cmdline", "dashboard cmdline"}, seen
    received = [line for line in seen if "got" in line]
    assert not received, received  # not one connection: no request, no token, no client certificate
    assert res.stderr.count("Moving to another port") == 2, res.stderr
    assert f"was taken by another user, {bob.name} (uid {bob.uid})" in res.stderr, res.stderr
    urls = urls_in(res)
    lab = [u for u in urls if "/lab?token=" in u]
    assert len(urls) == 2 and len(lab) == 1, res.stdout
    token = lab[0].rpartition("token=")[2]
    assert all(token not in json.dumps(line) for line in seen)
    forwards = _forwarded_ports(run_portal, alice, host)
    mine = {s.port for s in listening_sockets(alice)}
    bobs = {s.port for s in listening_sockets(bob)}
    taken = {line["grabbed"] for line in grabbed}
    for url in urls:
        port = forwards[url]
        assert port in mine and port not in bobs | taken, (url, port, sorted(mine), sorted(bobs))
        assert http_get(url)[0] == 200, url
    dashboard = next(u for u in urls if u not in lab)
    scheduler = status(run_portal, alice, host)["clusters"][0]
    base = dashboard.rpartition("/")[0]
    identity = json.loads(http_get(base + "/json/identity.json")[1])
    assert identity["address"] == scheduler["address"] and forwards[dashboard] == scheduler["dashboard_port"]

"""A co-user sweeps every listener of a user during `up --jupyter`: nothing of the user's comes back.

Every listener (TCP and Unix) alice's processes hold on the host, as root's `ss` sees them; bob asks each
for the pages a curious colleague would try. No 200 answers him; a Unix socket refuses him at connect.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from portal_tasks.testing.flows import http_get, status, up, urls_in
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e

PATHS = ["/", "/status", "/json/identity.json", "/info/main/workers.html", "/api/kernels", "/metrics"]

#: As the co-user: GET every path of every target (a port on 127.0.0.1 or a Unix socket path); prints JSON
#: {target: {path: "HTTP 403" | "ERROR PermissionError" | ...}} (a body of a 200 is kept, to show it).
SWEEP = r'''
import http.client, json, socket, sys
targets, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.host_path)
seen = {}
for target in targets:
    for path in paths:
        try:
            if isinstance(target, str):
                conn = Unix("localhost", timeout=5)
                conn.host_path = target
            else:
                conn = http.client.HTTPConnection("127.0.0.1", target, timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read(2000).decode(errors="replace")
            seen.setdefault(str(target), {})[path] = "HTTP %d" % resp.status + (" " + body if resp.status == 200 else "")
        except Exception as exc:
            seen.setdefault(str(target), {})[path] = "ERROR " + type(exc).__name__
print(json.dumps(seen))
'''

_PID = re.compile(r"pid=(\d+)")


def users_listeners(server: TestServer, user: TestUser) -> tuple[list[int], list[str]]:
    """(TCP ports, Unix socket paths) that ``user``'s processes listen on, from root's ``ss -ltnpx``."""
    assert server.admin_run is not None
    res = server.admin_run(["ss", "-Hltnpx"], timeout=15)
    assert res.ok, res.stderr
    ports: list[int] = []
    paths: list[str] = []
    for line in res.stdout.splitlines():
        fields = line.split()
        pids = [int(p) for p in _PID.findall(line)]
        if not pids or not fields:
            continue
        owners = server.admin_run(["stat", "-c", "%u", *[f"/proc/{p}" for p in pids]], timeout=15).stdout.split()
        if str(user.uid) not in owners:
            continue
        local = fields[4] if fields[0] in ("tcp", "u_str", "u_seq") else fields[3]
        if fields[0].startswith("u_") or local.startswith("/") or local.startswith("@"):
            if local.startswith("/"):
                paths.append(local)
        else:
            ports.append(int(local.rpartition(":")[2]))
    return sorted(set(ports)), sorted(set(paths))


def sweep(server: TestServer, intruder: TestUser, ports: list[int], paths: list[str]) -> dict[str, Any]:
    assert server.admin_run is not None
    res = server.admin_run(["python3", "-c", SWEEP, json.dumps([*ports, *paths]), json.dumps(PATHS)], user=intruder,
                           timeout=300)
    assert res.ok, res.stderr
    return dict(json.loads(res.stdout))


def test_a_co_user_gets_nothing_from_any_listener_of_the_user_during_up(portal_server, alice, bob, run_portal):
    if portal_server.admin_run is None:
        pytest.skip(f"the {portal_server.backend} test server gives no root view of its sockets")
    host = portal_server.host
    res = up(run_portal, alice, host, str(portal_server.envs["lab"]), "--jupyter", "--workers", "2")
    ports, paths = users_listeners(portal_server, alice)
    # the scheduler, 2 workers, 2 nannies, 2 workers' HTTP servers, the dashboard, JupyterLab (port or socket)
    assert len(ports) + len(paths) >= 8, (ports, paths)
    seen = sweep(portal_server, bob, ports, paths)
    answered = {f"{target} {path}": got for target, by_path in seen.items() for path, got in by_path.items()
                if got.startswith("HTTP 200")}
    assert not answered, answered
    for path in paths:
        assert set(seen[path].values()) == {"ERROR PermissionError"}, seen[path]
    # and portal says so, listener by listener: `ports` (and `status --json`) name every one "owner only"
    said = run_portal(alice, "ports", "--host", host, "--json")
    assert said.rc == 0, said.stderr
    report = json.loads(said.stdout)
    described = {s["port"]: s for s in report["sockets"]} | {u["path"]: u for u in report["unix"]}
    assert set(ports) | set(paths) <= set(described), (ports, paths, sorted(described))
    assert {k: v["who"] for k, v in described.items() if v["who"] != "owner only"} == {}, described
    dashboard = status(run_portal, alice, host)["clusters"][0]["dashboard_port"]
    assert described[dashboard]["by"].startswith("portal's owner check"), described[dashboard]
    # the owner keeps everything: her dashboard and JupyterLab through her forwards
    urls = urls_in(res)
    assert any("/status" in u for u in urls) and any("/lab" in u for u in urls), res.stdout
    for url in urls:
        assert http_get(url)[0] == 200, url

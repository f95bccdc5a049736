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

#: As the co-user: GET every path of every target ([address, port], or a Unix socket path); prints JSON
#: {target: {path: "HTTP 403" | "ERROR PermissionError" | ...}} (a body of a 200 is kept, to show it).
SWEEP = r"""
import http.client, json, socket, sys
targets, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.host_path)
seen = {}
for target in targets:
    name = target if isinstance(target, str) else "%s:%d" % tuple(target)
    for path in paths:
        try:
            if isinstance(target, str):
                conn = Unix("localhost", timeout=5)
                conn.host_path = target
            else:
                conn = http.client.HTTPConnection(target[0], target[1], timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read(2000).decode(errors="replace")
            seen.setdefault(name, {})[path] = "HTTP %d" % resp.status + (" " + body if resp.status == 200 else "")
        except Exception as exc:
            seen.setdefault(name, {})[path] = "ERROR " + type(exc).__name__
print(json.dumps(seen))
"""

_PID = re.compile(r"pid=(\d+)")
ANY = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "[::]": "::1", "::": "::1"}


def users_listeners(server: TestServer, user: TestUser, host: str | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """([address, port] of TCP listeners, Unix socket paths) that ``user``'s processes hold on ``host``, from
    root's ``ss -ltnpx`` there."""
    assert server.admin_run is not None
    res = server.admin_run(["ss", "-Hltnpx"], host=host, timeout=15)
    assert res.ok, res.stderr
    tcp: list[tuple[str, int]] = []
    paths: list[str] = []
    for line in res.stdout.splitlines():
        fields = line.split()
        pids = [int(p) for p in _PID.findall(line)]
        if not pids or len(fields) < 5:
            continue
        owners = server.admin_run(["stat", "-c", "%u", *[f"/proc/{p}" for p in pids]], host=host,
                                  timeout=15).stdout.split()
        if str(user.uid) not in owners:
            continue
        local = fields[4]
        if fields[0].startswith("u_"):
            if local.startswith("/"):
                paths.append(local)
        else:
            addr, _, port = local.rpartition(":")
            addr = ANY.get(addr, addr).strip("[]").split("%")[0]
            tcp.append((addr, int(port)))
    return sorted(set(tcp)), sorted(set(paths))


def sweep(server: TestServer, intruder: TestUser, tcp: list[tuple[str, int]], paths: list[str],
          host: str | None = None) -> dict[str, Any]:
    assert server.admin_run is not None
    res = server.admin_run(["python3", "-c", SWEEP, json.dumps([*map(list, tcp), *paths]), json.dumps(PATHS)],
                           host=host, user=intruder, timeout=300)
    assert res.ok, res.stderr
    return dict(json.loads(res.stdout))


def nothing_answered(server: TestServer, user: TestUser, intruder: TestUser, host: str | None = None) -> \
        tuple[list[tuple[str, int]], list[str]]:
    """Every listener of ``user`` on ``host`` swept by ``intruder`` there: no 200 anywhere, Unix sockets
    refused at connect; the listeners swept, returned."""
    tcp, paths = users_listeners(server, user, host)
    seen = sweep(server, intruder, tcp, paths, host)
    answered = {f"{target} {path}": got for target, by_path in seen.items() for path, got in by_path.items()
                if got.startswith("HTTP 200")}
    assert not answered, answered
    for path in paths:
        assert set(seen[path].values()) == {"ERROR PermissionError"}, seen[path]
    return tcp, paths


def test_a_co_user_gets_nothing_from_any_listener_of_the_user_during_up(portal_server, alice, bob, run_portal):
    if portal_server.admin_run is None:
        pytest.skip(f"the {portal_server.backend} test server gives no root view of its sockets")
    host = portal_server.host
    res = up(run_portal, alice, host, str(portal_server.envs["lab"]), "--jupyter", "--workers", "2")
    tcp, paths = nothing_answered(portal_server, alice, bob)
    ports = [port for _, port in tcp]
    # the scheduler, 2 workers, 2 nannies, 2 workers' HTTP servers, the dashboard, JupyterLab's socket, tmux's
    assert len(ports) >= 8 and len(paths) >= 2, (tcp, paths)
    # and portal says so, listener by listener: `ports` (and `status --json`) name every one "owner only"
    said = run_portal(alice, "ports", "--host", host, "--json")
    assert said.rc == 0, said.stderr
    report = json.loads(said.stdout)
    described = {s["port"]: s for s in report["sockets"]} | {u["path"]: u for u in report["unix"]}
    assert set(ports) | set(paths) <= set(described), (ports, paths, sorted(described))
    assert {k: v["who"] for k, v in described.items() if v["who"] != "owner only"} == {}, described
    (cluster,) = status(run_portal, alice, host)["clusters"]
    assert cluster["dashboard_open"] is False, cluster
    assert described[cluster["dashboard_port"]]["by"].startswith("portal's owner check"), described
    assert described[cluster["scheduler_port"]]["by"].startswith("Dask's TLS"), described
    # the owner keeps everything: her dashboard and JupyterLab through her forwards
    urls = urls_in(res)
    assert any("/status" in u for u in urls) and any("/lab" in u for u in urls), res.stdout
    for url in urls:
        assert http_get(url)[0] == 200, url


def test_a_co_user_on_the_server_of_the_workers_gets_nothing_either(portal_server, alice, bob, run_portal):
    """`up --workers-on`: the workers' listeners on the second server (their TLS ports on the servers' net,
    their HTTP servers on its loopback) are swept there, and the scheduler's host again."""
    if portal_server.admin_run is None or not portal_server.between or not portal_server.second_host:
        pytest.skip("the test server has no second server on a net of its own (or no root view of sockets)")
    iface, _, node_ip = portal_server.between
    host, node = portal_server.host, portal_server.second_host
    (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    scheduler_interface: {iface}\n")
    up(run_portal, alice, host, str(portal_server.envs["a"]), "--jupyter", "--workers", "1", "--workers-on", node)
    on_node, _ = nothing_answered(portal_server, alice, bob, node)
    assert len(on_node) == 3 and {addr for addr, _ in on_node} == {node_ip, "127.0.0.1"}, on_node  # worker, nanny, HTTP
    nothing_answered(portal_server, alice, bob)


def test_a_co_user_on_the_compute_node_of_a_worker_job_gets_nothing_either(portal_server, portal_slurm, alice, bob,
                                                                          run_portal):
    """`up --jobs 1`: the job's worker, nanny and HTTP server on the compute node are swept there."""
    if portal_server.admin_run is None:
        pytest.skip(f"the {portal_server.backend} test server gives no root view of its sockets")
    host, node = portal_server.host, portal_slurm.node
    (alice.laptop / "portal.yaml").write_text(
        f"hosts:\n  {host}:\n    scheduler_interface: {portal_slurm.scheduler_interface}\n    jobs_wait: 60\n"
        "    jobqueue: {cores: 1, memory: 512MiB, walltime: '00:20:00'}\n")
    try:
        res = up(run_portal, alice, host, str(portal_server.envs["hpc"]), "--workers", "1", "--jobs", "1")
        assert "1 job running, 1 worker joined" in res.stderr, res.stderr
        on_node, _ = nothing_answered(portal_server, alice, bob, node)
        assert len(on_node) >= 3, on_node  # the job's worker, nanny and HTTP server
        nothing_answered(portal_server, alice, bob)
    finally:
        alice.ssh(host, "scancel -u \"$USER\"", timeout=30)

"""Workers on another server: `up --workers-on matagorda2` starts workers there that join the user's
scheduler on matagorda (TLS on the servers' own net), a computation runs on them, `down` stops them;
a co-user on matagorda2 cannot connect to the now non-loopback scheduler (tcp://, tls:// without or
with their own certificate)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from portal_tasks import daskcmd, tls
from portal_tasks.testing.assertions import dask_client
from portal_tasks.testing.flows import status, up
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import listening_sockets

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

#: As a co-user on the node: try the scheduler over tcp://, TLS without a certificate, TLS with their own.
INTRUDER = """
import json, socket, ssl, sys
from dask.distributed import Client
from distributed.security import Security
address, ca, cert, key = sys.argv[1:5]
host, port = address.split("://")[1].rsplit(":", 1)
seen = {}
for name, addr, security in (("tcp", "tcp://%s:%s" % (host, port), None),
                             ("tls-own-cert", address, Security(tls_ca_file=ca, tls_client_cert=cert,
                                                                tls_client_key=key, require_encryption=True))):
    try:
        c = Client(addr, security=security, timeout=5)
        seen[name] = "connected to " + c.scheduler_info()["id"]
        c.close()
    except Exception as exc:
        seen[name] = "refused: %s" % type(exc).__name__
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
try:
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw) as conn:
        conn.sendall(b"\\0" * 8)
        got = conn.recv(1)
        seen["tls-no-cert"] = "answered" if got else "refused: closed"
except (OSError, ssl.SSLError) as exc:
    seen["tls-no-cert"] = "refused: %s" % type(exc).__name__
print(json.dumps(seen))
"""


def own_bundle(user: TestUser) -> list[str]:
    """A CA, certificate and key of the user's own (as portal makes them), in their home; their paths."""
    d = Path(user.home) / "own-tls"
    d.mkdir(mode=0o700, exist_ok=True)
    paths = []
    for name, text in tls.make_bundle(user.name, "matagorda2").items():
        (d / name).write_text(text)
        paths.append(str(d / name))
    for p in [d, *map(Path, paths)]:
        os.chown(p, user.uid, user.uid)
    return paths  # ca.pem, cert.pem, key.pem


def test_workers_on_the_second_server_join_compute_and_stop(portal_server: TestServer, alice, bob, run_portal):
    if not portal_server.between or not portal_server.second_host:
        pytest.skip("the test server has no second server on a net of its own")
    host, node = portal_server.host, portal_server.second_host
    iface, host_ip, node_ip = portal_server.between
    env = str(portal_server.envs["a"])
    (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    scheduler_interface: {iface}\n")

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

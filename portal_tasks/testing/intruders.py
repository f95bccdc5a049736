"""A co-user trying the user's scheduler from another machine: over tcp://, TLS without a certificate,
TLS with a certificate of their own (made as portal makes them). Every way must be refused."""

from __future__ import annotations

import os
from pathlib import Path

from portal_tasks import tls
from portal_tasks.testing.server import TestUser

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

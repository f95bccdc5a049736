"""Who listens where on the test host (parsed from `ss -Htlnpe`), and a co-user's web server on a chosen port."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from portal_tasks.testing.server import TestServer, TestServerError, TestUser

_UID = re.compile(r"\buid:(\d+)")
_PID = re.compile(r'\("([^"]*)",pid=(\d+)')


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: address, port, owner uid, and the pid holding it when visible."""

    addr: str
    port: int
    uid: int
    pid: int | None = None
    process: str | None = None


def parse_ss(text: str) -> list[Listener]:
    """Parse `ss -Htlnpe` lines; ss omits `uid:` for root-owned sockets (uid 0 here)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] != "LISTEN":
            continue
        addr, _, port = fields[3].rpartition(":")
        addr = addr.strip("[]").split("%")[0]
        uid = _UID.search(line)
        pid = _PID.search(line)
        found.append(
            Listener(
                addr=addr,
                port=int(port) if port.isdigit() else 0,
                uid=int(uid.group(1)) if uid else 0,
                pid=int(pid.group(2)) if pid else None,
                process=pid.group(1) if pid else None,
            )
        )
    return found


def listening_sockets(server: TestServer, user: TestUser, host: str | None = None) -> list[Listener]:
    """The TCP listeners owned by user on host (default: the server's; root's view when the backend allows it)."""
    host = host or server.host
    if server.admin_run is not None:
        res = server.admin_run(["ss", "-Htlnpe"], host=host, timeout=15)
    else:
        res = user.ssh(host, "ss -Htlnpe", timeout=30)
    if not res.ok:
        raise TestServerError(f"ss -Htlnpe failed (rc {res.rc}): {res.tail()}", host=host)
    return [s for s in parse_ss(res.stdout) if s.uid == user.uid]


#: Run on the host as the squatter: an HTTP server on 127.0.0.1:PORT answering 200 to everything.
SQUAT = r'''
import http.server, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"bob's page"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Thread(target=s.serve_forever, daemon=True).start()
print("listening", flush=True)
sys.stdin.read()
'''


@contextlib.contextmanager
def http_squatter(server: TestServer, user: TestUser, port: int, host: str | None = None) -> Iterator[None]:
    """user serves "bob's page" on 127.0.0.1:port of the host (server.host unless named) while the block runs."""
    argv = user.ssh_argv(host or server.host, shlex.join(["python3", "-c", SQUAT, str(port)]))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "listening", proc.stderr.read()[-800:]
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

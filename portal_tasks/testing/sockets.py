"""Who listens where on the test host (parsed from `ss -Htlnpe`), and co-users on ports: a web server on a
chosen port, a grabber of the ports a user's services are about to bind."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
        _end(proc)


def _end(proc: subprocess.Popen[str]) -> None:
    """Close the remote program's stdin (it ends on EOF), wait (bounded), kill the ssh if it hangs."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


#: Run on the host as the co-user, for at most argv[4] seconds (or until stdin closes): hold the ports
#: given in argv[3] (comma-separated) from the start, and watch the user's (uid argv[1]) command lines
#: to grab, the moment a process names it, each Jupyter port (``--port=P``, at most argv[2] of them)
#: and the scheduler's dashboard port (``--dashboard-address HOST:P``, or the first ``"dashboard_address":"HOST:P"``
#: in a ``dask spec`` JSON: the scheduler's, which comes first) before the service binds it.
#: Prints a JSON line per port grabbed and per connection received, with every byte it brought.
GRABBER = r'''
import json, os, re, select, socket, sys, threading, time
uid, max_lab, pre, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
held, counts, out = {}, {"jupyter": 0, "dashboard": 0}, threading.Lock()
def say(**kw):
    with out:
        print(json.dumps(kw), flush=True)
def serve(sock, port):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.settimeout(2)
        data = b""
        try:
            data = conn.recv(65536)
        except OSError:
            pass
        say(port=port, got=data.decode(errors="replace"))
        conn.close()
def grab(port, why):
    if port in tried or port <= 0:
        return False
    tried.add(port)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT does not stop it
    try:
        sock.bind(("127.0.0.1", port)); sock.listen(16)
    except OSError as exc:
        sock.close(); say(missed=port, why=why, error=str(exc)); return False
    held[port] = sock
    say(grabbed=port, why=why)
    threading.Thread(target=serve, args=(sock, port), daemon=True).start()
    return True
tried = set()
for p in filter(None, pre.split(",")):
    grab(int(p), "before up")
say(ready=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if select.select([sys.stdin], [], [], 0.005)[0] and not sys.stdin.readline():
        break
    for pid in os.listdir("/proc"):  # read again each round: a forked shell becomes jupyter by exec
        try:
            if not pid.isdigit() or os.stat("/proc/" + pid).st_uid != uid:
                continue
            argv = open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if arg.startswith("--port=") and counts["jupyter"] < max_lab and grab(int(arg[7:]), "jupyter cmdline"):
                counts["jupyter"] += 1
            spec = re.search(r'"dashboard_address": ?"[^"]*:([0-9]+)"', arg)
            if arg == "--dashboard-address" and i + 1 < len(argv) or spec:
                port = int(spec.group(1)) if spec else int(argv[i + 1].rpartition(":")[2] or 0)
                if counts["dashboard"] < 1 and grab(port, "dashboard cmdline"):
                    counts["dashboard"] += 1
say(done=True)
'''


@contextlib.contextmanager
def port_grabber(server: TestServer, user: TestUser, victim: TestUser, pre: list[int], jupyter_grabs: int,
                 seconds: float = 300) -> Iterator[list[dict[str, Any]]]:
    """user grabs ports of victim's services on the host the moment victim's command lines name them
    (see GRABBER); yields the list its JSON lines are appended to (complete once the block ends)."""
    argv = ["python3", "-c", GRABBER, str(victim.uid), str(jupyter_grabs), ",".join(map(str, pre)), str(seconds)]
    proc = subprocess.Popen(user.ssh_argv(server.host, shlex.join(argv)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict[str, Any]] = []
    reader = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1].get("ready"):
                break
        assert lines and lines[-1].get("ready"), proc.stderr.read()[-800:] if proc.stderr else lines
        reader = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in proc.stdout or ()))
        reader.start()
        yield lines
    finally:
        _end(proc)
        if reader is not None:
            reader.join(10)

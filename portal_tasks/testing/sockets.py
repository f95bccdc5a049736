"""Who listens where on the test host: parsed from `ss -Htlnpe`."""

from __future__ import annotations

import re
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


def listening_sockets(server: TestServer, user: TestUser) -> list[Listener]:
    """The TCP listeners owned by user on the host (root's view when the backend allows it)."""
    if server.admin_run is not None:
        res = server.admin_run(["ss", "-Htlnpe"], timeout=15)
    else:
        res = user.ssh(server.host, "ss -Htlnpe", timeout=30)
    if not res.ok:
        raise TestServerError(f"ss -Htlnpe failed (rc {res.rc}): {res.tail()}", host=server.host)
    return [s for s in parse_ss(res.stdout) if s.uid == user.uid]

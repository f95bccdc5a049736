"""Listening sockets of a process on this machine, read from Linux's /proc (no traffic, no helper).

Used on the laptop to tell that a forward portal remembers is still the SSH master's own listener,
without sending a request through it. Elsewhere (no /proc) the answer is None: "cannot tell".
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LISTEN = "0A"


def listening_inodes(address: str, port: int, proc: Path = Path("/proc")) -> set[str] | None:
    """The socket inodes listening on address:port (IPv4 or IPv6), or None without /proc/net."""
    ip = ipaddress.ip_address(address)
    table = proc / "net" / ("tcp" if ip.version == 4 else "tcp6")
    try:
        rows = table.read_text().splitlines()[1:]
    except OSError:
        return None
    want = f"{_hex(ip)}:{port:04X}"
    return {f[9] for f in (row.split() for row in rows) if len(f) > 9 and f[1] == want and f[3] == LISTEN}


def _hex(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as /proc/net/tcp* writes it: 32-bit words in host (little-endian) byte order."""
    raw = ip.packed
    return "".join(raw[i:i + 4][::-1].hex().upper() for i in range(0, len(raw), 4))


def listens(pid: int, address: str, port: int, proc: Path = Path("/proc")) -> bool | None:
    """True when process ``pid`` holds a socket listening on address:port; None when /proc cannot say."""
    inodes = listening_inodes(address, port, proc)
    if inodes is None:
        return None
    if not inodes:
        return False
    try:
        fds = os.listdir(proc / str(pid) / "fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(proc / str(pid) / "fd" / fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False

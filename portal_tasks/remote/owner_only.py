"""portal's Dask preload (``--preload``) for the scheduler and each worker: their HTTP servers (the
dashboard, /metrics, /health) answer the user who runs them, and nobody else on the server.

Not run by the helper: the helper writes this file into the server's state directory
(``common.install_preload``) and the env's python imports it at the start of ``dask scheduler`` and
``dask worker``. On import it wraps Tornado's ``HTTPServer.handle_stream`` in this process (Dask imports
preloads before it starts its HTTP server, and no connection is served before): a connection whose
other end is not a socket of this user (the uid of the socket that connected, asked of the kernel by
sock_diag as ``ss`` does, or read from ``/proc/net/tcp``) gets ``403`` and is closed. The user's own
clients pass: the ssh forward (the user's sshd process), JupyterLab's proxy, dask-labextension, the
helper. Dask's own TCP comms (tls://) are untouched. Python 3.8+, standard library and Tornado only: a
file on its own in the env's process, so its few lines reading /proc/net/tcp are its own (the helper's are
``common.tcp_rows``).
"""

import os
import socket
import struct

#: The answer to anyone but the owner (no more: not even which Dask version runs).
REFUSAL = b"This server answers its owner only.\n"
MARK = "_portal_owner_only"


def _address(hexaddr):
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16))), int(port, 16)
    text = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *struct.unpack("<4I", raw)))
    return _plain(text), int(port, 16)


def _plain(addr):
    """An IPv4 address seen through an IPv6 socket (``::ffff:127.0.0.1``) as itself."""
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


#: sock_diag (what `ss` asks): one socket by its addresses and ports, with its owner's uid
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, NO_COOKIE = 4, 20, 1, 0xFFFFFFFF


def diag_uid(local, remote):
    """The uid of the TCP socket whose own end is ``local`` and other end ``remote`` ((address, port) each),
    asked of the kernel by netlink sock_diag (microseconds, where reading /proc/net/tcp walks the whole
    table, milliseconds); None when there is no such socket or the kernel cannot be asked."""
    family = socket.AF_INET if "." in local[0] else socket.AF_INET6
    try:
        addrs = b"".join(socket.inet_pton(family, a).ljust(16, b"\0") for a in (local[0], remote[0]))
        sockid = struct.pack("!HH", local[1], remote[1]) + addrs + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)
        request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        message = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + request
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
            link.settimeout(2)
            link.sendto(message, (0, 0))
            reply = link.recv(65536)
    except (OSError, ValueError, AttributeError):
        return None
    if len(reply) < 16 + 68 or struct.unpack("=H", reply[4:6])[0] != SOCK_DIAG_BY_FAMILY:
        return None  # an error reply: no such socket (it closed already)
    return struct.unpack("=I", reply[16 + 64:16 + 68])[0]  # inet_diag_msg.idiag_uid


def peer_uid(sock, tables=("/proc/net/tcp", "/proc/net/tcp6"), diag=True):
    """The uid owning the other end of the connected local TCP socket ``sock``, or None (not local, gone, no
    way to ask). Asked by sock_diag, else read from ``tables``."""
    try:
        peer, here = sock.getpeername()[:2], sock.getsockname()[:2]
    except OSError:
        return None
    want = ((_plain(peer[0]), peer[1]), (_plain(here[0]), here[1]))
    uid = diag_uid(*want) if diag else None
    if uid is not None:
        return uid
    for table in tables:
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) >= 8 and (_address(cols[1]), _address(cols[2])) == want:
                return int(cols[7])
    return None


def is_owner(sock, uid=None):
    """True when the process at the other end of ``sock`` runs as this process's user (``uid``)."""
    return peer_uid(sock) == (os.getuid() if uid is None else uid)


def refuse(stream):
    """Answer 403 (a plain socket) and close: nothing of the user's is read or sent."""
    body = REFUSAL
    head = ("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % len(body)).encode()
    sock = stream.socket
    try:
        if sock is not None and not hasattr(sock, "cipher"):  # not TLS (a dashboard the user put behind TLS)
            sock.setblocking(False)
            sock.send(head + body)
    except OSError:
        pass
    stream.close()


def guard(server_class):
    """Wrap ``server_class.handle_stream`` (once) so it serves the owner's connections only."""
    handle = server_class.handle_stream
    if getattr(handle, MARK, False):
        return

    def handle_stream(self, stream, address):
        if not is_owner(stream.socket):
            return refuse(stream)
        return handle(self, stream, address)

    setattr(handle_stream, MARK, True)
    server_class.handle_stream = handle_stream


def _install():
    from tornado.httpserver import HTTPServer

    guard(HTTPServer)


_install()

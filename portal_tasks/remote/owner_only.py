"""portal's Dask preload (``--preload``) for the scheduler and each worker: their HTTP servers (the
dashboard, /metrics, /health) answer the user who runs them, and nobody else on the server.

Not run by the helper: the helper writes this file into the server's state directory
(:func:`portal_remote.preload.install`) and the env's python imports it at the start of ``dask scheduler``
and ``dask worker``. On import it wraps Tornado's ``HTTPServer.handle_stream`` in this process (Dask
imports preloads before it starts its HTTP server, and no connection is served before): a connection
whose other end is not a socket of this user (the kernel's ``/proc/net/tcp``: uid of the socket that
connected) gets ``403`` and is closed. The user's own clients pass: the ssh forward (the user's sshd
process), JupyterLab's proxy, dask-labextension, the helper. Dask's own TCP comms (tls://) are
untouched. Python 3.8+, standard library and Tornado only.
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


def peer_uid(sock, tables=("/proc/net/tcp", "/proc/net/tcp6")):
    """The uid owning the other end of the connected local TCP socket ``sock``, or None (not local, gone, no /proc)."""
    try:
        peer, here = sock.getpeername()[:2], sock.getsockname()[:2]
    except OSError:
        return None
    want = ((_plain(peer[0]), peer[1]), (_plain(here[0]), here[1]))
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

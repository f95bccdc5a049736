"""portal's Dask preload (``--preload``) for the scheduler and each worker: their HTTP servers (the
dashboard, /metrics, /health) answer the user who runs them, and nobody else on the server. As
``--preload-nanny`` of ``dask worker --nworkers N`` it gives each nanny's worker its own HTTP port of the
user's block (:func:`dask_setup`): Dask gives them all one address, and all but one would move to a random port.

Not run by the helper: the helper writes this file into the server's state directory
(``common.install_preload``) and the env's python imports it at the start of the host's ``dask spec``
(the scheduler and the nannies, whose pid it writes: :func:`record_pid`), of each worker, and of ``dask
worker`` on other servers. On import it wraps Tornado's ``HTTPServer.handle_stream`` in this process (Dask imports
preloads before it starts its HTTP server, and no connection is served before): a connection whose
other end is not a socket of this user (the uid of the socket that connected, asked of the kernel by
sock_diag as ``ss`` does, or read from ``/proc/net/tcp``) gets ``403`` and is closed. The user's own
clients pass: the ssh forward (the user's sshd process), JupyterLab's proxy, dask-labextension, the
helper. Dask's own TCP comms (tls://) are untouched. Python 3.8+, standard library and Tornado only: a
file on its own in the env's process: the helper installs it with ``common.tcp_rows`` (and what that calls)
appended (``common.preload_source``), the /proc/net/tcp reader it falls back on.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from tornado.httpserver import HTTPServer
    from tornado.iostream import IOStream

#: The answer to anyone but the owner (no more: not even which Dask version runs).
REFUSAL = b"This server answers its owner only.\n"
MARK = "_portal_owner_only"


def _plain(addr: str) -> str:
    """An IPv4 address seen through an IPv6 socket (``::ffff:127.0.0.1``) as itself."""
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


#: sock_diag (what `ss` asks): one socket by its addresses and ports, with its owner's uid
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, NO_COOKIE = 4, 20, 1, 0xFFFFFFFF


def diag_uid(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
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
    uid: int = struct.unpack("=I", reply[16 + 64:16 + 68])[0]  # inet_diag_msg.idiag_uid
    return uid


def peer_uid(sock: socket.socket, rows: Callable[[], list[Any]] | None = None, diag: bool = True) -> int | None:
    """The uid owning the other end of the connected local TCP socket ``sock``, or None (not local, gone, no
    way to ask). Asked by sock_diag, else read from ``rows()`` (/proc/net/tcp and tcp6: ``tcp_rows``)."""
    try:
        peer, here = sock.getpeername()[:2], sock.getsockname()[:2]
    except OSError:
        return None
    want = ((_plain(peer[0]), peer[1]), (_plain(here[0]), here[1]))
    uid = diag_uid(*want) if diag else None
    if uid is not None:
        return uid
    for row in (rows or tcp_rows)():
        (local, lport), (remote, rport) = row["local"], row["remote"]
        if ((_plain(local), lport), (_plain(remote), rport)) == want:
            return int(row["uid"])
    return None


def is_owner(sock: socket.socket, uid: int | None = None) -> bool:
    """True when the process at the other end of ``sock`` runs as this process's user (``uid``)."""
    return peer_uid(sock) == (os.getuid() if uid is None else uid)


def refuse(stream: IOStream) -> None:
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


def guard(server_class: type[HTTPServer]) -> None:
    """Wrap ``server_class.handle_stream`` (once) so it serves the owner's connections only."""
    # Tornado's TCPServer runs what handle_stream returns when it is a coroutine: passed on as it is.
    handle: Callable[..., Awaitable[None] | None] = server_class.handle_stream
    if getattr(handle, MARK, False):
        return

    def handle_stream(self: HTTPServer, stream: IOStream, address: tuple[Any, ...]) -> Awaitable[None] | None:
        if not is_owner(stream.socket):
            refuse(stream)
            return None
        return handle(self, stream, address)

    setattr(handle_stream, MARK, True)
    server_class.handle_stream = handle_stream  # type: ignore[method-assign,assignment]


#: In the environment of the nannies' process (``dask spec`` on the host, ``dask worker --nworkers N`` on another
#: server): the workers' HTTP ports, ``P0,P1,...`` (worker i's is Pi).
#: hostpaths.WORKER_HTTP_PORTS names it for the laptop; this file runs alone in the env's Python (a test ties them).
HTTP_PORTS = "PORTAL_WORKER_HTTP"


def worker_http_port(name: object, ports: str) -> int | None:
    """The HTTP port of the worker a nanny called ``name`` starts: Dask names the nannies of ``--name KEY
    --nworkers N`` ``KEY-0`` ... ``KEY-(N-1)`` (one alone is ``KEY``); None when ``ports`` gives none for it."""
    listed = [int(p) for p in ports.split(",") if p.strip().isdigit()]
    if len(listed) == 1:
        return listed[0]
    index = str(name).rpartition("-")[2]
    return listed[int(index)] if index.isdigit() and int(index) < len(listed) else None


def dask_setup(server: Any) -> None:
    """Run by Dask for each server this file preloads; acts on a nanny alone (before it starts its worker):
    the worker's HTTP server listens on its own port of the block (on the loopback, as planned)."""
    kwargs = getattr(server, "worker_kwargs", None)
    port = worker_http_port(getattr(server, "name", None), os.environ.get(HTTP_PORTS, ""))
    if isinstance(kwargs, dict) and port:
        kwargs["dashboard_address"] = "127.0.0.1:%d" % port


try:  # as the package's module; installed, this file ends with these (common.preload_source)
    from .common import _parse_addr, tcp_rows  # noqa: F401 - tcp_rows calls _parse_addr
except ImportError:
    pass


def _install() -> None:
    from tornado.httpserver import HTTPServer

    guard(HTTPServer)


#: In the environment of the host's ``dask spec``: the file this process's pid goes to (``dask spec`` has no
#: ``--pid-file``); hostpaths.CLUSTER_PID_FILE names it for the laptop (a test ties them).
PID_FILE = "PORTAL_PID_FILE"


def record_pid() -> None:
    """Write this process's pid to the file ``PORTAL_PID_FILE`` names (0600, replaced whole), in the process
    started with it alone: the variable leaves the environment here, so no worker or program started later
    sees it. That process (the host's ``dask spec``) is also set up as ``dask scheduler`` and ``dask worker``
    set theirs up (:func:`as_dask_commands_do`)."""
    path = os.environ.pop(PID_FILE, "")
    if not path:
        return
    as_dask_commands_do()
    try:
        part = "%s.%d.part" % (path, os.getpid())
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(part, path)
    except OSError:  # the helper then says the cluster did not come up, with what it saw
        return


def as_dask_commands_do() -> None:
    """What ``dask scheduler`` and ``dask worker`` do first and ``dask spec`` does not: the garbage collector's
    thresholds three times Python's (fewer pauses with a big task graph), and the open-files limit raised to
    half the hard limit where that is more (a connection each for many clients and workers)."""
    import gc

    g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(g0 * 3, g1 * 3, g2 * 3)
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard // 2 > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    except (ImportError, ValueError, OSError):
        pass


def start_forkserver() -> None:
    """In the process of the nannies (the host's ``dask spec``, or ``dask worker --nworkers N`` on another server):
    the forkserver the workers are forked from (``FORKED`` in portal's Dask lines) starts now and imports Dask
    while the scheduler starts; Dask would start it only once a nanny is registered, and the workers would wait
    for its imports then. Not in a scheduler alone (no worker ports in its environment), nor in a worker (a
    child of it)."""
    if HTTP_PORTS not in os.environ:
        return
    try:  # nothing here may keep the workers from starting: Dask starts the server itself, later
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            return
        import dask
        from distributed.utils import get_mp_context

        if dask.config.get("distributed.worker.multiprocessing-method") != "forkserver":
            return
        get_mp_context()  # type: ignore[no-untyped-call]  # Dask's own list of what the server imports
        from multiprocessing import forkserver

        forkserver.ensure_running()
    except Exception:  # noqa: BLE001 - Dask starts it itself, later, and says why it cannot
        return


_install()
record_pid()
start_forkserver()

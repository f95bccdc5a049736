"""Shared host-side pieces: the state directory, failures, JSON files, locks, who listens where."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pkgutil
import platform
import pwd
import shutil
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import hostpaths
from .files import write_atomic

if TYPE_CHECKING:
    from typing import TypedDict

    class TcpRow(TypedDict):
        """A row of /proc/net/tcp or tcp6 (:func:`tcp_rows`)."""

        local: tuple[str, int]
        remote: tuple[str, int]
        state: str
        uid: int
        inode: str

    class Listener(TypedDict):
        """A listening TCP socket (:func:`listeners`); pid, pids and cmdline only for the user's own."""

        addr: str
        port: int
        uid: int
        inode: str
        pid: int | None
        pids: list[int]
        cmdline: list[str]

HOME = os.path.expanduser("~")
#: ~/.portal: the helpers and the TLS material, shared by every server that mounts the home.
STATE_DIR = hostpaths.portal_dir(HOME)
#: ~/.portal/hosts/MACHINE: what runs on this server (ports, clusters, Jupyter, locks, scratch).
SERVER_DIR = hostpaths.server_dir(HOME, platform.node())


class Failure(Exception):
    """An error reported back to the laptop as a PortalError subclass named by ``kind``."""

    def __init__(self, message: str, kind: str = "RemoteCommandError", hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.hint = hint


def private_dirs(path: str) -> None:
    """Make ``path`` and its missing parents 0700."""
    old = os.umask(0o077)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)


def state_path(*parts: str) -> str:
    """A path in this server's state directory, creating private (0700) directories on the way."""
    path = server_path(*parts)
    private_dirs(os.path.dirname(path))
    os.chmod(STATE_DIR, 0o700)
    return path


def server_path(*parts: str) -> str:
    """A path in this server's state directory (made, with what an earlier layout left, on first use)."""
    if not os.path.isdir(SERVER_DIR):
        private_dirs(os.path.dirname(SERVER_DIR))
        adopt_legacy(SERVER_DIR)
    return os.path.join(SERVER_DIR, *parts)


def preload_source() -> str:
    """The text of portal's Dask preload: this package's owner_only.py, then the /proc/net/tcp reader it falls
    back on (:func:`tcp_rows`, as jupyter.py copies it too): one file the env's python imports on its own."""
    import inspect

    own = (pkgutil.get_data(__package__, "owner_only.py") or b"").decode()
    return own.rstrip("\n") + "\n\n\n" + inspect.getsource(_parse_addr) + "\n\n" + inspect.getsource(tcp_rows)


def install_preload(path: str) -> str:
    """portal's Dask preload (:func:`preload_source`: HTTP servers that answer their owner only) at ``path``
    (0600, directory 0700), written when missing or different; ``path`` returned."""
    data = preload_source().encode()
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                return path
    except OSError:
        pass
    private_dirs(os.path.dirname(path))
    write_atomic(path, data)
    return path


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def damage(path: str, shape: type = dict) -> str | None:
    """What is wrong with a state file that exists (empty, not JSON, cut short, wrong shape), or None.

    A missing file is not damaged (nothing recorded).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "cannot be read (%s)" % exc.strerror
    if not raw.strip():
        return "is empty"
    try:
        data = json.loads(raw.decode())
    except UnicodeDecodeError:
        return "is not text"
    except ValueError as exc:
        return "is not valid JSON (%s)" % str(exc).split(":")[0]
    if not isinstance(data, shape):
        return "holds a JSON %s, not an object" % type(data).__name__
    return None


def read_state(path: str, check: Callable[[dict[str, Any]], str | None] | None = None
               ) -> tuple[dict[str, Any] | None, str | None]:
    """``(data, None)``, ``(None, None)`` when the file does not exist, or ``(None, what is wrong)``.

    ``check(data)`` may name what is missing in an object of the right type.
    """
    problem = damage(path)
    if problem:
        return None, problem
    data: dict[str, Any] | None = read_json(path, None)
    if data is None:
        return None, None
    problem = check(data) if check else None
    return (None, problem) if problem else (data, None)


# -- state of an earlier layout -------------------------------------------------------------------

def adopt_legacy(server_dir: str) -> None:
    """Make this server's state directory, adopting what an earlier portal kept in ~/.portal itself.

    Taken over (copied; other servers that share the home adopt their own part): the port plan,
    the cluster records written on this machine, and Jupyter records whose server answers here.
    So a cluster started by an earlier version is found healthy and kept, not killed as stale.
    """
    tmp = "%s.%d.%s.tmp" % (server_dir, os.getpid(), os.urandom(4).hex())
    private_dirs(tmp)
    moved: list[str] = []
    try:
        legacy_ports = os.path.join(STATE_DIR, "ports.json")
        if not damage(legacy_ports) and os.path.isfile(legacy_ports):
            shutil.copy2(legacy_ports, os.path.join(tmp, "ports.json"))
        for name in sorted(_listdir(os.path.join(STATE_DIR, "clusters"))):
            path = os.path.join(STATE_DIR, "clusters", name)
            record = read_json(path, None) if name.endswith(".json") and "." not in name[:-5] else None
            if isinstance(record, dict) and record.get("hostname") == platform.node():
                private_dirs(os.path.join(tmp, "clusters"))
                shutil.copy2(path, os.path.join(tmp, "clusters", name))
                moved.append(path)
        for key in sorted(_listdir(os.path.join(STATE_DIR, "jupyter"))):
            directory = os.path.join(STATE_DIR, "jupyter", key)
            record = read_json(os.path.join(directory, "state.json"), None)
            if isinstance(record, dict) and _answers_here(record):
                private_dirs(os.path.join(tmp, "jupyter", key))
                for name in ("state.json", "token"):
                    if os.path.isfile(os.path.join(directory, name)):
                        shutil.copy2(os.path.join(directory, name), os.path.join(tmp, "jupyter", key, name))
        os.rename(tmp, server_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another run made the directory first: theirs stands
        private_dirs(server_dir)
        return
    for path in moved:  # each record now lives in its server's directory only
        try:
            os.unlink(path)
        except OSError:
            pass


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _answers_here(record: dict[str, Any]) -> bool:
    """True when the recorded Jupyter server listens on this machine (its unix socket, or its port by this user)."""
    if record.get("socket"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(record["socket"])
            return True
        except OSError:
            return False
        finally:
            sock.close()
    return any(e["port"] == record.get("port") and e["uid"] == os.getuid() for e in listeners())


def write_json(path: str, data: Any) -> None:
    """Write atomically with mode 0600: a temporary file beside it, flushed to disk, renamed over it."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


@contextlib.contextmanager
def locked(name: str, timeout: float = 60.0) -> Iterator[None]:
    """Hold this server's lock NAME (~/.portal/hosts/MACHINE/locks/NAME, flock) for the block; bounded wait."""
    fd = os.open(state_path("locks", name), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise Failure("lock %s busy for %gs" % (name, timeout), "StateError")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _parse_addr(hexaddr: "str") -> "tuple[str, int]":  # quoted: jupyter.py copies it into JupyterLab's config
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16))), int(port, 16)
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words)), int(port, 16)


def _socket_pids(every: dict[str, set[int]] | None = None) -> dict[str, int]:
    """inode -> pid for the sockets of processes this user can see (its own); ``every`` (a dict)
    also gets inode -> every pid holding it (a socket inherited by a child is held by both)."""
    owners: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(target[8:-1], int(pid))
                if every is not None:
                    every.setdefault(target[8:-1], set()).add(int(pid))
    return owners


def cmdline(pid: int) -> list[str]:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def environ(pid: int) -> list[bytes]:
    """A process's environment, ``NAME=value`` byte strings ([] when it cannot be read: gone, or not ours)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def pid_uid(pid: int) -> int | None:
    try:
        return os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None


LISTEN = "0A"


def tcp_rows() -> "list[TcpRow]":  # quoted: jupyter.py copies it into JupyterLab's config
    """Every row of /proc/net/tcp and tcp6: local and remote (addr, port), state, uid, inode."""
    found: "list[TcpRow]" = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10:
                continue
            found.append({"local": _parse_addr(cols[1]), "remote": _parse_addr(cols[2]), "state": cols[3],
                          "uid": int(cols[7]), "inode": cols[9]})
    return found


#: netlink sock_diag, as ``ss -tl`` asks it: a dump of the TCP sockets in state LISTEN (10)
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_DONE, NLMSG_ERROR = 4, 20, 3, 2
NLM_F_REQUEST_DUMP, TCP_LISTEN_STATES, TCP_ALL_STATES = 0x1 | 0x300, 1 << 10, 0xFFF


def _diag_rows(family: int, states: int) -> list[TcpRow]:
    """The TCP sockets of ``family`` in ``states`` (a bit per state) by a sock_diag dump, as /proc/net/tcp's rows.
    For listeners the kernel walks its table of listeners alone, where reading /proc/net/tcp walks every
    socket of the host (milliseconds on a busy one, each look); for all sockets it skips the text."""
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, states) + bytes(48)
    message = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, 1, 0) + request
    size = 16 if family == socket.AF_INET6 else 4
    found: list[TcpRow] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
        link.settimeout(2)
        link.sendto(message, (0, 0))
        while True:
            data = link.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag refused the dump")
                body = offset + 16  # inet_diag_msg: family, state, timer, retrans, sockid, expires, queues, uid, inode
                state = data[body + 1]
                sport, dport = struct.unpack_from("!HH", data, body + 4)
                src, dst = data[body + 8:body + 8 + size], data[body + 24:body + 24 + size]
                uid, inode = struct.unpack_from("=II", data, body + 64)
                found.append({"local": (socket.inet_ntop(family, src), sport),
                              "remote": (socket.inet_ntop(family, dst), dport),
                              "state": "%02X" % state, "uid": uid, "inode": str(inode)})
                offset += (length + 3) & ~3
            if not data:
                return found


def listening_rows() -> list[TcpRow]:
    """The rows of the host's listening TCP sockets (v4 and v6): asked of the kernel by sock_diag, else read
    from /proc/net/tcp and tcp6 (a kernel without it)."""
    try:
        return _diag_rows(socket.AF_INET, TCP_LISTEN_STATES) + _diag_rows(socket.AF_INET6, TCP_LISTEN_STATES)
    except (OSError, AttributeError, struct.error):
        return [row for row in tcp_rows() if row["state"] == LISTEN]


def connection_rows() -> list[TcpRow]:
    """Every TCP socket of the host as :func:`tcp_rows` gives it, asked of the kernel by sock_diag (no text to
    write and parse), else read from /proc/net/tcp and tcp6."""
    try:
        return _diag_rows(socket.AF_INET, TCP_ALL_STATES) + _diag_rows(socket.AF_INET6, TCP_ALL_STATES)
    except (OSError, AttributeError, struct.error):
        return tcp_rows()


def listeners(rows: list[TcpRow] | None = None) -> list[Listener]:
    """Every listening TCP socket on the host: address, port, uid, inode, and pid/cmdline when it is ours."""
    found: list[Listener] = []
    pids: dict[str, int] | None = None
    every: dict[str, set[int]] = {}
    for row in listening_rows() if rows is None else rows:
        if row["state"] != LISTEN:
            continue
        (addr, port), uid, inode = row["local"], row["uid"], row["inode"]
        entry: Listener = {"addr": addr, "port": port, "uid": uid, "inode": inode, "pid": None, "pids": [],
                           "cmdline": []}
        if uid == os.getuid():
            if pids is None:
                pids = _socket_pids(every)
            pid = pids.get(inode)
            if pid:
                entry["pid"] = pid
                entry["pids"] = sorted(every.get(inode, ()))
                entry["cmdline"] = cmdline(pid)
        found.append(entry)
    return found


def user_name(uid: int) -> str:
    """"bob (uid 1001)", or "uid 1001" for a uid without a passwd entry."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class NotYours(Failure):
    """A port portal would talk to (or forward) is held by something that is not the user's expected service."""

    def __init__(self, port: int, holder: str, expected: str = "your service") -> None:
        self.port, self.holder = port, holder
        super().__init__(f"port {port} is held by {holder}, not by {expected}.", "PortError",
                         "portal sent it nothing. Run portal again to move to another port of your block.")


def holder_problem(port: int, found: list[Listener], pids: list[int] | None = None) -> str | None:
    """Why ``port`` is not (only) the user's own listener (of one of ``pids`` when given), or None.

    None also when nothing listens: a connection then fails, nobody receives anything.
    """
    uid = os.getuid()
    for entry in found:
        if entry["port"] != port:
            continue
        if entry["uid"] != uid:
            return "another user, " + user_name(entry["uid"])
        if pids and not set(entry["pids"]) & set(pids):
            return f"another program of yours (pid {entry['pid']}: {' '.join(entry['cmdline'][:3]) or '?'})"
    return None


def _held(port: int, found: list[Listener]) -> list[str]:
    return sorted(e["inode"] for e in found if e["port"] == port)


def connect_owned(port: int, pids: list[int] | None = None, timeout: float = 3.0, expected: str = "your service",
                  found: list[Listener] | None = None, host: str = "127.0.0.1") -> socket.socket:
    """A socket connected to host:port (a local address), only when the user's own listener (pid in ``pids``) holds it.

    Check, connect, check: nothing is connected to unless the user's own listener holds the port
    (``found``: the caller's fresh ``listeners()``, else read now; nothing listening yet is
    ConnectionRefusedError without a connection, since whoever binds next may be anyone); once
    connected, the listener seen before still holds the port (the same socket inodes, so the same
    process), and the kernel's row for the other end of this very connection belongs to the user.
    Raises NotYours (nothing was sent) or OSError (nothing listens).
    """
    before = listeners() if found is None else found
    if not _held(port, before) and found is not None:  # the caller's look may be older than a new listener
        before = listeners()
    if not _held(port, before):  # nothing to check yet: no connection at all (whoever binds next may be anyone)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "nothing listens on port %s yet" % port)
    problem = holder_problem(port, before, pids)
    if problem:
        raise NotYours(port, problem, expected)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        rows = connection_rows()
        now = [r for r in rows if r["state"] == LISTEN and r["local"][1] == port]
        if _held(port, before) != sorted(r["inode"] for r in now):
            problem = "a listener that replaced yours while portal connected"
        mine = sock.getsockname()[1]
        peer = [r for r in rows if r["local"][1] == port and r["remote"][1] == mine and r["state"] != LISTEN]
        if not problem and not (peer and all(r["uid"] == os.getuid() for r in peer + now)):
            problem = "a listener portal cannot confirm is yours"
        if problem:
            raise NotYours(port, problem, expected)
    except BaseException:
        sock.close()
        raise
    return sock


def http_status(sock: socket.socket, path: str, headers: dict[str, str]) -> int | None:
    """The status of an HTTP/1.0 GET of ``path`` on the connected ``sock`` (its timeout applies), or None when
    nothing or no HTTP answers. Its status line alone is read: a health check that way costs no import of
    http.client, which brings the email package (10 ms of a snapshot's 50 on the host)."""
    lines = ["GET %s HTTP/1.0" % path, "Host: localhost", *("%s: %s" % item for item in headers.items()), "", ""]
    try:
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            head += chunk
    except OSError:
        return None
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        return None
    return int(words[1])


def pid_alive(pid: int | str | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

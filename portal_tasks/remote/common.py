"""Shared host-side pieces: the state directory, failures, JSON files, locks, who listens where."""

import contextlib
import errno
import fcntl
import json
import os
import socket
import struct
import time

STATE_DIR = os.path.expanduser("~/.portal")


class Failure(Exception):
    """An error reported back to the laptop as a PortalError subclass named by ``kind``."""

    def __init__(self, message, kind="RemoteCommandError", hint=None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.hint = hint


def state_path(*parts):
    """A path under ~/.portal, creating private (0700) directories on the way."""
    path = os.path.join(STATE_DIR, *parts)
    directory = os.path.dirname(path)
    old = os.umask(0o077)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)
    os.chmod(STATE_DIR, 0o700)
    return path


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json(path, data):
    """Write atomically with mode 0600."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(name, timeout=60.0):
    """Hold ~/.portal/locks/NAME (flock) for the block; bounded wait."""
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


def _parse_addr(hexaddr):
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16))), int(port, 16)
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words)), int(port, 16)


def _socket_pids():
    """inode -> pid for the sockets of processes this user can see (its own)."""
    owners = {}
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
    return owners


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def pid_uid(pid):
    try:
        return os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None


def listeners():
    """Every listening TCP socket on the host: address, port, uid, and pid/cmdline when it is ours."""
    found = []
    pids = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != "0A":
                continue
            addr, port = _parse_addr(cols[1])
            uid, inode = int(cols[7]), cols[9]
            entry = {"addr": addr, "port": port, "uid": uid, "pid": None, "cmdline": []}
            if uid == os.getuid():
                if pids is None:
                    pids = _socket_pids()
                pid = pids.get(inode)
                if pid:
                    entry["pid"] = pid
                    entry["cmdline"] = cmdline(pid)
            found.append(entry)
    return found


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

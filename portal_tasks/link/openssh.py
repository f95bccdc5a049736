"""OpenSSH transport: one ControlMaster connection per host carries commands, tmux and forwards."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

import platformdirs

from .. import errors, remote_shell, sockets
from ..remote import tmux
from ..config import Settings
from ..runner import Result, run, run_daemon
from .base import Link


MAX_DIR_LEN = 60  # leaves room for "/%C" (40 hex) under the 104-byte socket path limit


def control_dir() -> Path:
    """A private (0700) directory for control sockets and small executables."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "portal"
    else:
        base = Path(platformdirs.user_cache_dir("portal")) / "run"
    if len(str(base)) > MAX_DIR_LEN:  # unix socket paths are limited to about 104 bytes
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:10]
        base = Path(tempfile.gettempdir()) / f"portal-{os.getuid()}-{digest}"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    if base.stat().st_uid != os.getuid():
        raise errors.LinkError(f"{base} belongs to another user; portal keeps its control sockets there.",
                               hint="Set XDG_RUNTIME_DIR to a private directory.")
    os.chmod(base, 0o700)
    return base


def ssh_options(settings: Settings, control_path: str) -> list[str]:
    """The options every ssh call of portal carries (pure)."""
    opts: list[str] = []
    if settings.ssh_config:
        opts += ["-F", settings.ssh_config]
    opts += [
        "-o", f"ControlPath={control_path}",
        "-o", f"ConnectTimeout={int(settings.connect_timeout)}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "ExitOnForwardFailure=yes",
    ]
    return opts


def master_argv(settings: Settings, control_path: str, *, batch: bool) -> list[str]:
    """Start the ControlMaster in the background once authenticated (pure)."""
    argv = ["ssh", *ssh_options(settings, control_path), "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-f", "-N"]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    return [*argv, "--", settings.host]


def command_argv(settings: Settings, control_path: str, command: str, *, tty: bool = False) -> list[str]:
    """Run a shell command on the host through the master (pure)."""
    argv = ["ssh", *ssh_options(settings, control_path), "-o", "ControlMaster=no", "-o", "BatchMode=yes"]
    argv.append("-t" if tty else "-T")
    return [*argv, "--", settings.host, command]  # after "--" ssh reads no option, not even after the host


def control_argv(settings: Settings, control_path: str, op: str, *forward: str) -> list[str]:
    """``ssh -O check|exit|forward|cancel`` against the master (pure)."""
    argv = ["ssh", *ssh_options(settings, control_path), "-O", op]
    for spec in forward:
        argv += ["-L", spec]
    return [*argv, "--", settings.host]


def forward_spec(local_port: int, remote: str) -> str:
    """``-L`` value binding the laptop's loopback only: 127.0.0.1:L:127.0.0.1:R or 127.0.0.1:L:/sock."""
    return f"127.0.0.1:{local_port}:{remote}"


def explain_ssh(settings: Settings) -> list[str]:
    """The plain ``ssh`` a person types (with the config file portal was told to use)."""
    argv = ["ssh"]
    if settings.ssh_config:
        argv += ["-F", settings.ssh_config]
    return argv


class OpenSSHLink(Link):
    name = "openssh"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dir = control_dir()
        self.control_path = str(self.dir / "%C")
        self._connected = False
        self._master_pid: int | None = None

    def _sockets_left(self) -> bool:
        """Whether the control directory holds any socket (this host's may be one a gone master left)."""
        try:
            return any(entry.is_socket() for entry in self.dir.iterdir())
        except OSError:
            return True

    def _socket_file(self) -> Path | None:
        res = run(["ssh", *ssh_options(self.settings, self.control_path), "-G", "--", self.host], timeout=10)
        for line in res.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "controlpath":
                return Path(value)
        return None

    def is_alive(self) -> bool:
        res = run(control_argv(self.settings, self.control_path, "check"), timeout=10)
        found = re.search(r"pid=(\d+)", res.stderr + res.stdout)
        self._master_pid = int(found.group(1)) if res.ok and found else None  # "Master running (pid=N)"
        return res.ok

    def holds_forward(self, local_port: int) -> bool | None:
        """The master listens on the port (Linux: /proc); its pid is the one ``ssh -O check`` named when this
        run connected (asked again only when that process is gone). No traffic, mostly no new process."""
        pid = self._master_pid
        if pid is None or not os.path.isdir(f"/proc/{pid}"):
            if not self.is_alive() or self._master_pid is None:
                return False
            pid = self._master_pid
        return sockets.listens(pid, "127.0.0.1", local_port)

    def reconnect(self) -> None:
        self._connected = False  # connect() checks the master again and starts a new one if it is gone
        self.connect()

    def connect(self) -> None:
        if self._connected:
            return
        if self._sockets_left() and self.is_alive():  # no socket in the directory: no master to ask
            self._connected = True
            return
        # one portal process starts the master; the others wait for it and then reuse it
        lock_path = self.dir / f"master-{hashlib.sha256(self.host.encode()).hexdigest()[:12]}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not (self._sockets_left() and self.is_alive()):
                self._start_master()
        finally:
            os.close(fd)
        self._connected = True

    def _start_master(self) -> None:
        sock = self._socket_file() if self._sockets_left() else None  # `ssh -G` only when one may be stale
        if sock is not None and sock.exists():  # master gone, socket left behind
            sock.unlink(missing_ok=True)
        batch = self.batch or not sys.stdin.isatty()
        res = run_daemon(master_argv(self.settings, self.control_path, batch=batch),
                         timeout=self.settings.connect_timeout + 20, interactive=not batch)
        rc, message = res.rc, " ".join(res.stderr.split())
        if rc != 0 or not self.is_alive():
            raise errors.LinkError(
                f"cannot connect over SSH ({message or f'ssh exited {rc}'}).",
                host=self.host,
                hint="Check the host name and your ssh config (ssh -G HOST), or pass --ssh-config.",
            )

    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        return command_argv(self.settings, self.control_path, command, tty=tty)

    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        self.connect()
        result = run(self.command_argv(command), input=input, timeout=timeout)
        if result.rc == 255:
            raise errors.LinkError(f"the SSH connection failed ({result.tail() or 'it closed under the command'}).",
                                   host=self.host,
                                   hint="Run the command again; portal reconnects.")
        return result

    def forward(self, local_port: int, remote: str) -> None:
        self.connect()
        res = run(control_argv(self.settings, self.control_path, "forward", forward_spec(local_port, remote)), timeout=15)
        if not res.ok:
            raise errors.ForwardError(f"could not forward laptop port {local_port} to {remote}: {res.tail()}",
                                      host=self.host, hint="Another program may hold the laptop port; portal picks another when run again.")

    def cancel_forward(self, local_port: int, remote: str) -> None:
        run(control_argv(self.settings, self.control_path, "cancel", forward_spec(local_port, remote)), timeout=15)

    def close(self) -> None:
        run(control_argv(self.settings, self.control_path, "exit"), timeout=15)
        self._connected = False

    def explain_login(self) -> list[str]:
        return [shlex.join([*explain_ssh(self.settings), self.host])]

    def attach_argv(self, session: str) -> list[str]:
        return self.command_argv(remote_shell.line(tmux.attach(session)), tty=True)

    def attach_hint(self, session: str) -> str:
        remote = remote_shell.pasteable(remote_shell.line(tmux.attach(session)))
        return f"{shlex.join([*explain_ssh(self.settings), '-t', self.host])} {remote}"

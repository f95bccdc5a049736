"""Fabric (paramiko) transport: for laptops without a usable OpenSSH client.

Slower than OpenSSH (every tmux call is a new connection; forwards are copied by Python threads
and end with this process), so it is the fallback, chosen with ``transport: fabric``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from typing import Any

from .. import errors, remote_shell
from ..remote import tmux
from ..config import Settings
from ..runner import Result
from .base import Held, Link
from .openssh import explain_ssh

USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


def connection(settings: Settings) -> Any:
    """A fabric Connection that reads the same ssh config file as OpenSSH would and checks host keys as it does."""
    import fabric

    config = fabric.Config(runtime_ssh_path=settings.ssh_config) if settings.ssh_config else fabric.Config()
    conn = fabric.Connection(settings.host, config=config, connect_timeout=settings.connect_timeout)
    hop = conn
    while isinstance(hop, fabric.Connection):  # the host and every ProxyJump hop before it
        verify_host_keys(hop, accept_new=settings.fabric_accept_new_host_key)
        hop = hop.gateway
    return conn


def known_hosts_files(ssh_config: Any) -> tuple[list[str], list[str]]:
    """(user files, global files) OpenSSH reads for this host: UserKnownHostsFile/GlobalKnownHostsFile or the defaults."""
    def paths(key: str, default: tuple[str, ...]) -> list[str]:
        value = ssh_config.get(key)
        names = value.split() if isinstance(value, str) else list(value) if value else list(default)
        return [os.path.expanduser(name) for name in names if name.lower() != "none"]

    return paths("userknownhostsfile", USER_KNOWN_HOSTS), paths("globalknownhostsfile", GLOBAL_KNOWN_HOSTS)


def accepts_new_keys(ssh_config: Any, accept_new: bool) -> bool:
    """True when an unknown host key may be learned: portal's fabric_accept_new_host_key, or the ssh config's
    StrictHostKeyChecking accept-new/no (the user's own explicit choice, as OpenSSH honours it)."""
    return accept_new or str(ssh_config.get("stricthostkeychecking", "ask")).lower() in ("accept-new", "no", "off")


def verify_host_keys(conn: Any, *, accept_new: bool) -> None:
    """Replace Fabric's silent accept of any host key with OpenSSH's rules: known keys must match, an unknown
    key is refused (PortalError naming the host) unless new keys may be learned; a learned key is saved."""
    import paramiko

    user_files, global_files = known_hosts_files(conn.ssh_config)
    for path in global_files + user_files:
        if os.path.isfile(path):
            with contextlib.suppress(OSError, paramiko.SSHException):
                conn.client.load_system_host_keys(path)
    if accepts_new_keys(conn.ssh_config, accept_new):
        conn.client.set_missing_host_key_policy(LearnKey(user_files[0] if user_files else None))
    else:
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())


class LearnKey:
    """paramiko policy for a key OpenSSH would learn (accept-new): keep it for this run and append it to the
    user's known_hosts file."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.path:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def connect_error(host: str, exc: BaseException) -> errors.LinkError:
    """One line for a failed Fabric connect; host key problems say what to do."""
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return errors.LinkError(
            f"the host key of {exc.hostname} ({exc.key.get_name()}) does not match the one in known_hosts: "
            "the server was reinstalled, or someone is in the middle.", host=host,
            hint=f"Check with the server's admins; if the new key is right, remove the old one (ssh-keygen -R {exc.hostname}).")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return errors.LinkError(
            f"the server's host key is not in known_hosts ({exc}).", host=host,
            hint="Connect once with `ssh HOST` and check the key, or set fabric_accept_new_host_key: true "
                 "for this host to accept it.")
    return errors.LinkError(f"cannot connect with Fabric ({type(exc).__name__}: {exc}).", host=host,
                            hint="Check the host name and your ssh config, or pass --ssh-config.")


def exec_bytes(conn: Any, command: str, input: bytes | None = None, timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """Run command over the connection and return (exit code, stdout, stderr) as bytes.

    Whole bytes, decoded once: Fabric's own run() decodes each chunk as it arrives and so breaks a
    multi-byte character that straddles two chunks (libtmux's separator is one).
    """
    conn.open()
    stdin, stdout, stderr = conn.client.exec_command(command, timeout=timeout)
    if input:
        stdin.write(input)
    stdin.channel.shutdown_write()
    try:
        out, err = stdout.read(), stderr.read()
    except OSError as exc:  # socket.timeout
        raise TimeoutError(str(exc)) from None
    return stdout.channel.recv_exit_status(), out, err


class ChannelHeld(Held):
    """A held helper call on its own SSH channel of the Fabric connection."""

    def __init__(self, channel: Any, first: bytes) -> None:
        self.channel = channel
        self._end: tuple[int, str] | None = None
        with contextlib.suppress(OSError):
            channel.sendall(first)
        self._reader = channel.makefile("r")

    def readline(self) -> str:
        return str(self._reader.readline()).strip()

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.channel.sendall(data)

    def close_input(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()

    def finish(self) -> tuple[int, str]:
        if self._end is None:
            with contextlib.suppress(OSError, EOFError):
                self.channel.shutdown_write()
            self.channel.status_event.wait(10)
            err = b""
            deadline = time.monotonic() + 1
            while self.channel.recv_stderr_ready() and time.monotonic() < deadline:
                err += self.channel.recv_stderr(65536)
            rc = self.channel.exit_status if self.channel.exit_status_ready() else -1
            self.channel.close()
            self._end = (rc, err.decode(errors="replace").strip())
        return self._end


class FabricLink(Link):
    name = "fabric"
    persistent_forwards = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._conn: Any = None
        self._forwards: dict[tuple[int, str], contextlib.ExitStack] = {}

    def connect(self) -> None:
        if self._conn is not None and self._conn.is_connected:
            return
        try:
            self._conn = connection(self.settings)
            self._conn.open()
        except Exception as exc:  # paramiko raises many kinds; all mean "cannot connect"
            self._conn = None
            raise connect_error(self.host, exc) from None

    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        return [sys.executable, "-m", "portal_tasks.link.fabric_exec", self.settings.ssh_config or "", self.host, command]

    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        self.connect()
        data = input.encode() if isinstance(input, str) else input
        try:
            rc, out, err = exec_bytes(self._conn, command, data, timeout)
        except TimeoutError:
            return Result(("fabric", command), 124, "", f"timed out after {timeout}s")
        except Exception as exc:  # paramiko's many kinds of "the connection broke"
            raise errors.LinkError(f"the Fabric connection failed ({type(exc).__name__}: {exc}).", host=self.host) from None
        return Result(("fabric", command), rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _hold(self, command: str, first: bytes) -> Held:
        self.connect()
        channel = self._conn.client.get_transport().open_session()
        channel.exec_command(command)
        return ChannelHeld(channel, first)

    def forward(self, local_port: int, remote: str) -> None:
        if not remote.startswith("127.0.0.1:"):
            raise errors.ForwardError(f"Fabric cannot forward the unix socket {remote}.", host=self.host,
                                      hint="Use the openssh transport, or JupyterLab without --socket.")
        if (local_port, remote) in self._forwards:
            return
        self.connect()
        stack = contextlib.ExitStack()
        stack.enter_context(self._conn.forward_local(local_port, int(remote.rsplit(":", 1)[1]), "127.0.0.1", "127.0.0.1"))
        self._forwards[(local_port, remote)] = stack

    def cancel_forward(self, local_port: int, remote: str) -> None:
        stack = self._forwards.pop((local_port, remote), None)
        if stack is not None:
            stack.close()

    def close(self) -> None:
        for key in list(self._forwards):
            self.cancel_forward(*key)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def is_alive(self) -> bool:
        transport = self._conn.client.get_transport() if self._conn is not None else None
        return bool(transport is not None and transport.is_active())

    def explain_login(self) -> list[str]:
        return [shlex.join([*explain_ssh(self.settings), self.host])]

    def attach_argv(self, session: str) -> list[str]:
        """Fabric cannot hand a terminal over; this is what to type (with any ssh client)."""
        return [*explain_ssh(self.settings), "-t", self.host, remote_shell.line(tmux.attach(session))]

    def attach_hint(self, session: str) -> str:
        *ssh, remote = self.attach_argv(session)
        return f"{shlex.join(ssh)} {remote_shell.pasteable(remote)}"


__all__ = ["FabricLink"]

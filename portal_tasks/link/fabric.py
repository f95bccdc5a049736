"""Fabric (paramiko) transport: for laptops without a usable OpenSSH client.

Slower than OpenSSH (every tmux call is a new connection; forwards are copied by Python threads
and end with this process), so it is the fallback, chosen with ``transport: fabric``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shlex
import stat
import sys
from typing import Any, Iterator

from .. import errors, tmux_commands
from ..config import Settings
from ..runner import Result
from .base import HELPER_DIR, Link, helper_archive, helper_path
from .openssh import control_dir, explain_ssh


def connection(settings: Settings) -> Any:
    """A fabric Connection that reads the same ssh config file as OpenSSH would."""
    import fabric

    config = fabric.Config(runtime_ssh_path=settings.ssh_config) if settings.ssh_config else fabric.Config()
    return fabric.Connection(settings.host, config=config, connect_timeout=settings.connect_timeout)


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
            raise errors.LinkError(f"cannot connect with Fabric ({type(exc).__name__}: {exc}).", host=self.host,
                                   hint="Check the host name and your ssh config, or pass --ssh-config.") from None

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

    def _install_helper(self) -> None:
        self.connect()
        _, data = helper_archive()
        self.run_shell(f"umask 077 && mkdir -p ~/{HELPER_DIR} && chmod 700 ~/.portal")
        self._conn.put(io.BytesIO(data), remote=helper_path())  # SFTP paths are relative to the home dir
        self._helper_ready = True

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 120) -> Iterator[None]:
        if not self._helper_ready:
            self.helper("ping")  # installs the helper if needed
        channel = self._conn.client.get_transport().open_session()
        channel.exec_command(self._helper_command("lock", {"name": name, "timeout": timeout}))
        try:
            reader = channel.makefile("r")
            if reader.readline().strip() != "locked":
                raise errors.StateError(f"could not take the lock {name!r} in ~/.portal.", host=self.host)
            yield
        finally:
            channel.shutdown_write()
            channel.close()

    def tmux_bin(self) -> str:
        ident = f"{self.host}\0{self.settings.ssh_config}"
        path = control_dir() / f"fabric-tmux-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"
        body = (
            f"#!{sys.executable}\n"
            "import shlex, sys\n"
            "from portal_tasks.link.fabric_exec import main\n"
            f"sys.exit(main([{self.settings.ssh_config or ''!r}, {self.host!r}, "
            "'LC_ALL=C.UTF-8 tmux -u ' + shlex.join(sys.argv[1:])]))\n"
        )
        if not path.exists() or path.read_text() != body:
            path.write_text(body)
            path.chmod(stat.S_IRWXU)
        return str(path)

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
        return [*explain_ssh(self.settings), "-t", self.host, shlex.join(tmux_commands.attach(session))]

    def attach_hint(self, session: str) -> str:
        return shlex.join(self.attach_argv(session))


__all__ = ["FabricLink"]

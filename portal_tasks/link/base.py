"""What every transport offers: run a command on the host, call the host-side helper, forward ports."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import zipfile
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from .. import errors, tmux_commands
from ..config import Settings
from ..runner import Result, spawn

REMOTE_PACKAGE = Path(__file__).resolve().parent.parent / "remote"
#: Where the helper lives on the host; ``~`` is expanded by the host's shell.
HELPER_DIR = ".portal/bin"


@lru_cache(maxsize=1)
def helper_archive() -> tuple[str, bytes]:
    """The host-side helper as a zipapp (stdlib only) and its short content hash."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for src in sorted(REMOTE_PACKAGE.glob("*.py")):
            info = zipfile.ZipInfo(f"portal_remote/{src.name}", date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, src.read_bytes())
        main = zipfile.ZipInfo("__main__.py", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(main, "from portal_remote.main import main\nmain()\n")
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest()[:12], data


def helper_path() -> str:
    digest, _ = helper_archive()
    return f"{HELPER_DIR}/remote-{digest}.pyz"


ERROR_KINDS: dict[str, type[errors.PortalError]] = {
    cls.__name__: cls
    for cls in (
        errors.PortalError, errors.UsageError, errors.EnvError, errors.TmuxError, errors.PortError,
        errors.ClusterError, errors.JupyterError, errors.StateError, errors.RemoteCommandError,
    )
}


class Link(ABC):
    """One connection to one host; every command, tmux call and forward goes through it."""

    name: str = "base"
    #: False when forwards end with this process (Fabric's copy threads): `up` then stays to keep them.
    persistent_forwards: bool = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = settings.host
        self._helper_ready = False

    # -- transport-specific -------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Make sure the connection is up (raises LinkError naming the host when it cannot be)."""

    @abstractmethod
    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        """The local argv that runs the shell ``command`` on the host."""

    @abstractmethod
    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        """Run a shell command line on the host and return its Result."""

    @abstractmethod
    def tmux_bin(self) -> str:
        """An executable path libtmux can use as ``tmux`` for this host."""

    @abstractmethod
    def forward(self, local_port: int, remote: str) -> None:
        """Forward 127.0.0.1:local_port on the laptop to ``remote`` (``127.0.0.1:P`` or a socket path)."""

    @abstractmethod
    def cancel_forward(self, local_port: int, remote: str) -> None:
        """Stop one forward made by :meth:`forward` (no error if it is gone)."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection (and its forwards)."""

    def is_alive(self) -> bool:
        """True while the connection (and so its forwards) is up."""
        return True

    def reconnect(self) -> None:
        """Make the connection again after it dropped (forwards are then re-made by the caller)."""
        self.connect()

    def explain_login(self) -> list[str]:
        """The command a person types to get a shell on the host ([] when it is this machine)."""
        return []

    def attach_hint(self, session: str) -> str:
        """What a person types to attach to the session (plain commands, no portal options)."""
        return shlex.join(tmux_commands.attach(session))

    def attach_argv(self, session: str) -> list[str]:
        """The argv that attaches the user's terminal to the tmux session."""
        return self.command_argv(f"tmux attach -t {shlex.quote(session)}", tty=True)

    # -- shared --------------------------------------------------------------
    def run(self, argv: Sequence[str], *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        """Run an argv on the host, every argument quoted."""
        return self.run_shell(shlex.join(argv), input=input, timeout=timeout)

    def _helper_command(self, verb: str, payload: Any) -> str:
        py = shlex.quote(self.settings.remote_python)
        return f"{py} ~/{helper_path()} {shlex.quote(verb)} {shlex.quote(json.dumps(payload))}"

    def _install_helper(self) -> None:
        _, data = helper_archive()
        path = helper_path()
        script = (
            f"umask 077 && mkdir -p ~/.portal/bin && chmod 700 ~/.portal && "
            f"cat > ~/{path}.$$.tmp && mv ~/{path}.$$.tmp ~/{path} && "  # $$: installs at once do not collide
            f"find ~/{HELPER_DIR} -name 'remote-*.pyz' ! -name {shlex.quote(Path(path).name)} -delete"
        )
        result = self.run_shell(script, input=data, timeout=60)
        if not result.ok:
            raise errors.RemoteCommandError(f"could not install portal's helper in ~/.portal: {result.tail()}", host=self.host)
        self._helper_ready = True

    def helper(self, verb: str, payload: Any = None, *, timeout: float | None = 120) -> Any:
        """Call a verb of the host-side helper with a JSON payload; return its JSON result."""
        command = self._helper_command(verb, payload)
        result = self.run_shell(command, timeout=timeout)
        if result.rc == 2 and not self._helper_ready and "remote-" in result.stderr and (
            "can't open file" in result.stderr or "No such file" in result.stderr
        ):
            self._install_helper()
            result = self.run_shell(command, timeout=timeout)
        return self._decode_helper(verb, result)

    def _decode_helper(self, verb: str, result: Result) -> Any:
        if result.rc == 127 or "command not found" in result.stderr:
            raise errors.RemoteCommandError(
                f"{self.settings.remote_python!r} is not on the PATH.",
                host=self.host, hint="Install python3 there, or set remote_python in portal.yaml.",
            )
        lines = result.stdout.strip().splitlines()
        try:
            reply = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            raise errors.RemoteCommandError(f"portal's helper ({verb}) failed: {result.tail()}", host=self.host)
        if not reply.get("ok"):
            cls = ERROR_KINDS.get(reply.get("kind", ""), errors.RemoteCommandError)
            raise cls(reply.get("error", "unknown error"), host=self.host, hint=reply.get("hint"))
        self._helper_ready = True
        return reply.get("result")

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 120) -> Iterator[None]:
        """Hold the host-side lock ``~/.portal/locks/NAME`` while the block runs.

        The lock lives as long as the helper's stdin: if this process dies, the lock goes too.
        """
        if not self._helper_ready:
            self.helper("ping")  # installs the helper if needed
        proc = spawn(self.command_argv(self._helper_command("lock", {"name": name, "timeout": timeout})))
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
            if line != "locked":
                err = proc.stderr.read().decode().strip() if proc.stderr else ""
                raise errors.StateError(f"could not take the lock {name!r} in ~/.portal ({line or err or 'no answer'}).",
                                        host=self.host, hint="Another portal command may hang; try again.")
            yield
        finally:
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()

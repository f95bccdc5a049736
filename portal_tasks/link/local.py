"""Local transport: ``--host localhost`` runs everything on this machine, no SSH."""

from __future__ import annotations

import shutil

from .. import errors, tmux_commands
from ..runner import Result, run
from .base import Link


class LocalLink(Link):
    name = "local"

    def connect(self) -> None:
        return None

    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        return ["bash", "-c", command]

    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        return run(self.command_argv(command), input=input, timeout=timeout)

    def tmux_bin(self) -> str:
        path = shutil.which("tmux")
        if not path:
            raise errors.TmuxError("tmux is not installed.", host=self.host, hint="Install tmux (apt-get install tmux).")
        return path

    def forward(self, local_port: int, remote: str) -> None:
        return None  # the service is already on this machine

    def cancel_forward(self, local_port: int, remote: str) -> None:
        return None

    def close(self) -> None:
        return None

    def attach_argv(self, session: str) -> list[str]:
        return tmux_commands.attach(session)

"""Local transport: ``--host localhost`` runs everything on this machine, no SSH."""

from __future__ import annotations


from ..remote import tmux
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

    def forward(self, local_port: int, remote: str) -> None:
        return None  # the service is already on this machine

    def cancel_forward(self, local_port: int, remote: str) -> None:
        return None

    def close(self) -> None:
        return None

    def attach_argv(self, session: str) -> list[str]:
        return tmux.attach(session)

"""One exception hierarchy: every message says what failed, where, and what to do next."""

from __future__ import annotations


class PortalError(Exception):
    """Base of every error portal raises on purpose; the CLI prints it as one line."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None) -> None:
        self.host = host
        self.hint = hint
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.host}: {self.message}" if self.host else self.message
        if self.hint:
            text = f"{text} {self.hint}"
        return " ".join(text.split())


class UsageError(PortalError):
    """A value given on the command line or in config cannot be used."""


class ConfigError(UsageError):
    """portal.yaml or a PORTAL_* variable is malformed."""


class LinkError(PortalError):
    """The host cannot be reached, or a command could not be sent to it."""


class RemoteCommandError(PortalError):
    """A command on the host ran but failed."""


class EnvError(PortalError):
    """The environment is missing, or lacks what a step needs."""


class TmuxError(PortalError):
    """tmux is missing on the host or refused a command."""


class PortError(PortalError):
    """No usable port: the block is full or a port is held by someone else."""


class ClusterError(PortalError):
    """The Dask cluster could not be started or reached."""


class JupyterError(PortalError):
    """The Jupyter server could not be started or reached."""


class ForwardError(PortalError):
    """An SSH forward could not be made or kept."""


class StateError(PortalError):
    """State on the host or laptop is unreadable or locked."""

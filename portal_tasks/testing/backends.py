"""Registry of test-server backends, chosen by `--portal-server`."""

from __future__ import annotations

import importlib
from typing import Protocol

from portal_tasks.errors import UsageError
from portal_tasks.testing.server import TestServer

BACKENDS = {
    "netns": "portal_tasks.testing.netns:NetnsServer",
    "ssh": "portal_tasks.testing.sshhost:SshHostServer",
    "docker": "portal_tasks.testing.docker:DockerServer",
}
CHOICES = "netns, ssh://[USER@]HOST, docker, none"


class Backend(Protocol):
    name: str

    def start(self) -> TestServer: ...

    def close(self) -> None: ...


def backend_name(spec: str) -> str:
    return spec.split("://", 1)[0] if "://" in spec else spec


def get_backend(spec: str, **options: object) -> Backend | None:
    """The backend for a `--portal-server` value, not started; None for `none`."""
    name = backend_name(spec.strip())
    if name == "none":
        return None
    try:
        module, _, cls = BACKENDS[name].partition(":")
    except KeyError:
        raise UsageError(f"Unknown test server {spec!r}.", hint=f"Choose one of: {CHOICES}.") from None
    return getattr(importlib.import_module(module), cls)(spec, **options)  # type: ignore[no-any-return]

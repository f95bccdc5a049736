"""How commands reach a host: a registry of transports, chosen by config."""

from __future__ import annotations

import importlib

from ..config import Settings
from ..errors import ConfigError
from .base import Link

TRANSPORTS: dict[str, str] = {
    "openssh": "portal_tasks.link.openssh.OpenSSHLink",
    "fabric": "portal_tasks.link.fabric.FabricLink",
    "local": "portal_tasks.link.local.LocalLink",
}


def get_link_class(name: str) -> type[Link]:
    try:
        dotted = TRANSPORTS[name]
    except KeyError:
        raise ConfigError(f"unknown transport {name!r}.", hint=f"Use one of: {', '.join(TRANSPORTS)}.") from None
    module, _, cls = dotted.rpartition(".")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def open_link(settings: Settings) -> Link:
    """The Link for the settings' host and transport (not yet connected)."""
    return get_link_class(settings.transport)(settings)


__all__ = ["Link", "TRANSPORTS", "get_link_class", "open_link"]

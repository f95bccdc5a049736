"""The admin's host-wide settings for portal, ``/etc/portal/portal.yaml`` (flat ``key: value`` lines), read by
the helper (standard library only, Python 3.8+)."""

from __future__ import annotations

import re

#: The shared claims directory when neither the admin nor the user names another.
DEFAULT_CLAIMS_DIR = "/tmp/portal-ports"
#: Where the admin's settings live on the host.
HOST_CONFIG = "/etc/portal/portal.yaml"
#: Settings an admin may set in :data:`HOST_CONFIG`: the claims directory, and the server's share caps
#: (memory as a size or a share of the host, cores as a count; ``fair_users``: how many users a default
#: budget is an equal share for).
SHARE_SETTINGS = ("memory_total", "memory_per_user", "cores_total", "cores_per_user", "fair_users")
HOST_SETTINGS = ("claims_dir",) + SHARE_SETTINGS

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")


def parse_host_config(text: str) -> dict[str, str]:
    """Top-level ``key: value`` lines (``#`` comments, quotes around a value); indented and unknown keys are left out."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line or line.startswith("#") or line[0].isspace():
            continue
        match = _LINE.match(line)
        if not match or match.group(1) not in HOST_SETTINGS:
            continue
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            found[match.group(1)] = value
    return found

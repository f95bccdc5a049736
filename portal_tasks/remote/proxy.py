"""Whether a jupyter-server-proxy version is safe to send the dashboard through (standard library only,
Python 3.8+; also run inside JupyterLab by portal's config for it, see remote/jupyter.py)."""

from __future__ import annotations

import re


def proxy_safe(version: "str | None") -> bool:
    """True for a jupyter-server-proxy version (text) without CVE-2024-28179 (websockets proxied without
    Jupyter's login; fixed in 4.1.1, and 3.2.3 in the 3.x line); False for one with it, or for none.
    (Also run inside JupyterLab by portal's config for it: standard library only, annotations quoted.)"""
    if not version:
        return False
    parts = tuple(int(x) for x in re.findall(r"[0-9]+", version.split("+")[0])[:3])
    parts += (0,) * (3 - len(parts))
    return parts >= (4, 1, 1) or (3, 2, 3) <= parts < (4, 0, 0)

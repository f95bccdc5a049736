"""Amounts of memory as people write and read them: ``16GiB``, ``512MB``, ``25%`` (standard library only,
Python 3.8+; shipped in the helper's zipapp, imported by the laptop)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_amount(text: str) -> tuple[str, float] | None:
    """``("share", 0.25)`` for ``25%``, ``("bytes", n)`` for a size (16GiB, 512MB, 2e9 bytes), else None."""
    pct = _PCT.match(text)
    if pct:
        return "share", float(pct.group(1)) / 100
    size = _SIZE.match(text)
    if size and size.group(2).lower() in _UNITS:
        return "bytes", float(size.group(1)) * _UNITS[size.group(2).lower()]
    return None


def format_bytes(n: float) -> str:
    """``4.5 GiB``: a size as people read it."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"

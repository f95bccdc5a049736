"""`browse`: open the laptop's browser (Python's webbrowser, so $BROWSER is honoured) at the forwarded URLs."""

from __future__ import annotations

import shlex
import webbrowser

from .. import state
from ..target import Explained, Target


def urls(target: Target) -> list[str]:
    """The remembered forwarded URLs: dashboards first, then JupyterLab."""
    forwards = state.load_forwards(target.host)
    ordered = sorted(forwards.items(), key=lambda item: (not item[0].startswith("dashboard"), item[0]))
    return [str(entry["url"]) for _, entry in ordered if entry.get("url")]


def open_urls(found: list[str]) -> None:
    for url in found:
        print(f"opening {url}")
        webbrowser.open(url)


def run(target: Target, found: list[str] | None = None) -> list[str]:
    if found is None:
        if target.link.name == "local":
            from .forward import forward_all as forward

            found = [f.url for f in forward(target)]
        else:
            found = urls(target)
    if not found:
        print(f"nothing to open: no forwarded dashboard or Jupyter of yours for {target.host}; run `portal up` first.")
    open_urls(found)
    return found


def explain(target: Target) -> Explained:
    found = urls(target) or ["http://localhost:PORT/status"]
    return Explained(local=[shlex.join(["python3", "-m", "webbrowser", url]) for url in found])

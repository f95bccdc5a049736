"""The user's services on a host that a browser wants: Dask dashboards and Jupyter servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .target import Target


@dataclass(frozen=True)
class Service:
    name: str  # "dashboard-a", "jupyter-a"
    env: str
    kind: str  # "dashboard" | "jupyter"
    remote: str  # "127.0.0.1:P" or a unix socket path on the host
    host_port: int | None  # P, or None for a socket
    path: str  # URL path (and query) the browser opens, e.g. "/status" or "/lab?token=..."

    def url(self, local_port: int) -> str:
        return f"http://localhost:{local_port}{self.path}"


def from_cluster(entry: dict[str, Any]) -> Service | None:
    port = entry.get("dashboard_port")
    if not port or entry.get("healthy") is False:
        return None
    return Service(f"dashboard-{entry['env_key']}", entry["env"], "dashboard", f"127.0.0.1:{port}", int(port), "/status")


def from_jupyter(entry: dict[str, Any]) -> Service | None:
    if entry.get("healthy") is False:
        return None
    token = entry.get("token", "")
    path = f"/lab?token={token}" if token else "/lab"
    if entry.get("socket"):
        return Service(f"jupyter-{entry['env_key']}", entry["env"], "jupyter", entry["socket"], None, path)
    port = int(entry["port"])
    return Service(f"jupyter-{entry['env_key']}", entry["env"], "jupyter", f"127.0.0.1:{port}", port, path)


def running(target: Target) -> list[Service]:
    """Every healthy dashboard and Jupyter server of this user on the host."""
    from .steps import cluster, jupyter

    found = [from_cluster(e) for e in cluster.describe(target)]
    found += [from_jupyter(e) for e in jupyter.describe(target)]
    return [s for s in found if s is not None]

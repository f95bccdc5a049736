"""The user's services on a host that a browser wants: Dask dashboards and Jupyter servers (pure: from
what the host-side helper said of them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .replies import ClusterEntry, JupyterState


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

    def probe_url(self, local_port: int) -> str:
        """What to ask to see that a forward of it carries traffic (see :func:`probe_url`)."""
        return probe_url(self.name, self.url(local_port))


def probe_url(name: str, url: str) -> str:
    """The URL that tells cheaply whether the service ``name`` answers at ``url``: a dashboard's
    ``/health`` (its ``/status`` page makes a new Bokeh session per request), else the URL itself."""
    if name.startswith("dashboard-") and "://" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}/health"
    return url


def service_name(kind: str, key: str) -> str:
    """A service's name: its ``kind`` (dashboard, jupyter) and its env's key, ``dashboard-KEY`` (forwards, pages)."""
    return f"{kind}-{key}"


def from_cluster(entry: ClusterEntry) -> Service | None:
    """The dashboard of a healthy cluster, only when the host-side helper confirmed its port is held
    by the user's own scheduler."""
    port = entry.get("dashboard_port")
    if not port or entry.get("healthy") is False or not entry.get("dashboard_ok"):
        return None
    return Service(service_name("dashboard", entry["env_key"]), entry["env"], "dashboard", f"127.0.0.1:{port}",
                   int(port), "/status")


def from_jupyter(entry: JupyterState) -> Service | None:
    """A Jupyter server that answered portal's token on a connection to the user's own listener."""
    if not entry.get("healthy"):
        return None
    token = entry.get("token", "")
    path = f"/lab?token={token}" if token else "/lab"
    socket, port = entry.get("socket"), entry.get("port")
    if socket:
        return Service(service_name("jupyter", entry["env_key"]), entry["env"], "jupyter", socket, None, path)
    if not port:  # a record names a port or a socket; neither is nothing to forward
        return None
    return Service(service_name("jupyter", entry["env_key"]), entry["env"], "jupyter", f"127.0.0.1:{port}", int(port),
                   path)


def collect(clusters: Iterable[ClusterEntry], jupyters: Iterable[JupyterState]) -> list[Service]:
    """The services to forward among the clusters and Jupyter servers the host listed."""
    found = [from_cluster(c) for c in clusters] + [from_jupyter(j) for j in jupyters]
    return [s for s in found if s is not None]


def not_forwarded(clusters: list[ClusterEntry], jupyters: list[JupyterState]) -> list[str]:
    """One line per service that runs but is not the user's own at its port (never forwarded)."""
    lines = [f"dashboard of env {c['env']} not forwarded: {c['dashboard_unowned']}."
             for c in clusters if c.get("healthy") and c.get("dashboard_unowned")]
    lines += [f"JupyterLab of env {j['env']} not forwarded: {j['problem']}" for j in jupyters if j.get("problem")]
    return lines


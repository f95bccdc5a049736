"""Host-side verbs for Jupyter: token and state in the server's jupyter/KEY/ (0700/0600), health, stop.

The server reads its token from JUPYTER_TOKEN_FILE, so the token never shows on a command
line; portal reads the URL back from its own state, never from the server's log. Each start
gets a new token, and the token only ever goes to a listener of the user's own (``connect_owned``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from .common import (
    Failure,
    NotYours,
    _parse_addr,
    _socket_pids,
    connect_owned,
    holder_problem,
    http_status,
    listeners,
    pid_alive,
    read_json,
    read_state,
    state_path,
    listening_rows,
    tcp_rows,
    write_json,
)
from .files import write_atomic
from .proxy import proxy_safe

if TYPE_CHECKING:
    from .common import Listener

URL_PATH = "/lab"

#: The jupyter_server_config.py portal puts first on the server's JUPYTER_CONFIG_PATH. With
#: jupyter-server-proxy in the env, ``/proxy/<port>/`` would otherwise reach any port on the host,
#: sending the user's Jupyter cookies to whoever listens there (another user can grab a port at any
#: moment): it is allowed only for a Dask dashboard port of the user's own clusters (recorded by
#: portal) that only the user listens on (IPv4 and IPv6), checked on each request. A jupyter-server-proxy
#: with a known hole (below 4.1.1, 3.2.3 in the 3.x line: websockets proxied without Jupyter's
#: authentication, CVE-2024-28179) reaches nothing at all, and kernels and dask-labextension get the
#: dashboard's direct link (its own forward) instead of ``/proxy/PORT/status``.
PROXY_CONFIG = r"""# Written by portal: jupyter-server-proxy reaches only the Dask dashboards of your own clusters.
import glob, json, os, re, socket, struct

_PORTAL_CLUSTERS = %(clusters)r
_PORTAL_PORT = re.compile(r"(?:absolute/)?([0-9]+)(?:/|$)")
_PORTAL_LINK = "DASK_DISTRIBUTED__DASHBOARD__LINK"


%(proxy_safe)s

_PORTAL_PROXY_SAFE = proxy_safe(_portal_proxy_version())
if not _PORTAL_PROXY_SAFE:  # kernels started by this server get the dashboard's own forward
    _found = re.fullmatch(r"/proxy/([0-9]+)(/.*)", os.environ.get(_PORTAL_LINK, ""))
    if _found:
        os.environ[_PORTAL_LINK] = "http://localhost:%%s%%s" %% (_found.group(1), _found.group(2))


def _portal_dashboard_ports():
    ports = set()
    for path in glob.glob(os.path.join(_PORTAL_CLUSTERS, "*.json")):
        try:
            with open(path) as fh:
                ports.add(int(json.load(fh)["dashboard_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return ports


%(tcp_rows)s

def _portal_listening_uids(port):
    return {row["uid"] for row in tcp_rows() if row["state"] == "0A" and row["local"][1] == port}


def _portal_proxy_allowed(handler, host):
    prefix = handler.base_url.rstrip("/") + "/proxy/"
    path = handler.request.path
    found = _PORTAL_PORT.match(path[len(prefix):]) if path.startswith(prefix) else None
    if not _PORTAL_PROXY_SAFE or host not in ("localhost", "127.0.0.1") or not found:
        return False
    port = int(found.group(1))
    return port in _portal_dashboard_ports() and _portal_listening_uids(port) == {os.getuid()}


c.ServerProxy.host_allowlist = _portal_proxy_allowed


# host_allowlist is not consulted for /proxy/<port> (that handler keeps its default list): the
# /proxy/... handlers ask _portal_proxy_allowed instead; named servers keep their own rules.
def _portal_limit_proxy_handlers():
    try:
        from jupyter_server_proxy import handlers
    except ImportError:
        return
    for cls in (handlers.LocalProxyHandler, handlers.RemoteProxyHandler):
        original = getattr(cls, "_check_host_allowlist", None)
        if original is None:
            continue

        def check(self, host, _original=original, _cls=cls):
            if type(self) is _cls:
                return _portal_proxy_allowed(self, host)
            return _original(self, host)

        cls._check_host_allowlist = check


_portal_limit_proxy_handlers()


# dask-labextension's panes point at the shared cluster's dashboard through Jupyter: its defaultURL
# (checked from the browser, which reaches Jupyter through the forward) becomes a default of this
# server's settings, in a copy of the env's JupyterLab settings directory.
def _portal_dask_labextension():
    found = re.fullmatch(r"(?:/proxy/|http://localhost:)([0-9]+)/status", os.environ.get(_PORTAL_LINK, ""))
    try:
        import dask_labextension  # noqa: F401
    except ImportError:
        return
    if not found:
        return
    import shutil, sys
    lab = os.environ.get("JUPYTERLAB_DIR") or os.path.join(sys.prefix, "share", "jupyter", "lab")
    ours = os.path.join(%(config_dir)r, "lab")
    shutil.rmtree(ours, ignore_errors=True)
    if os.path.isdir(os.path.join(lab, "settings")):
        shutil.copytree(os.path.join(lab, "settings"), os.path.join(ours, "settings"))
    else:
        os.makedirs(os.path.join(ours, "settings"))
    if os.path.isdir(os.path.join(lab, "static")):
        os.symlink(os.path.join(lab, "static"), os.path.join(ours, "static"))
    path = os.path.join(ours, "settings", "overrides.json")
    try:
        with open(path) as fh:
            overrides = json.load(fh)
    except (OSError, ValueError):
        overrides = {}
    plugin = overrides.setdefault("dask-labextension:plugin", {})
    where = "proxy/" if _PORTAL_PROXY_SAFE else "http://localhost:"
    plugin.update(defaultURL=where + found.group(1), browserDashboardCheck=True)
    with open(path, "w") as fh:
        json.dump(overrides, fh)
    c.LabApp.app_settings_dir = os.path.join(ours, "settings")


_portal_dask_labextension()
"""


def _portal_proxy_version() -> "str | None":  # quoted: copied into JupyterLab's config (PROXY_CONFIG)
    """The installed jupyter-server-proxy's version, or None."""
    try:
        from importlib.metadata import version
        return version("jupyter-server-proxy")
    except Exception:
        return None


def proxy_config(clusters_dir: str, config_dir: str) -> str:
    """PROXY_CONFIG for the user's cluster state in clusters_dir, written to config_dir, with the
    helper's own /proc/net/tcp reader and version test."""
    import inspect

    return PROXY_CONFIG % {"clusters": clusters_dir, "config_dir": config_dir,
                           "tcp_rows": inspect.getsource(_parse_addr) + "\n\n" + inspect.getsource(tcp_rows),
                           "proxy_safe": inspect.getsource(proxy_safe) + "\n\n" + inspect.getsource(_portal_proxy_version)}


def write_proxy_config(directory: str) -> str:
    """The config directory (0700) holding PROXY_CONFIG (0600) for the env's server; returned."""
    from .cluster import state_file

    config_dir = os.path.join(directory, "config")
    os.makedirs(config_dir, mode=0o700, exist_ok=True)
    os.chmod(config_dir, 0o700)
    text = proxy_config(os.path.dirname(state_file("x")), config_dir)
    path = os.path.join(config_dir, "jupyter_server_config.py")
    write_atomic(path, text.encode())
    return config_dir


def _dir(key: str) -> str:
    if not key or "/" in key or key.startswith("."):
        raise Failure("bad env key %r" % key, "UsageError")
    path = os.path.dirname(state_path("jupyter", key, "state.json"))
    os.chmod(path, 0o700)
    return path


def _token(directory: str) -> str:
    """The token of the server last started for the env ("" when there is none)."""
    try:
        with open(os.path.join(directory, "token")) as fh:
            return fh.read()
    except OSError:
        return ""


def _new_token(directory: str) -> tuple[str, str]:
    """A new token for a server about to start (0600; no newline: Jupyter takes the file verbatim).

    A token lives as long as one server, so one that leaked opens nothing after a restart.
    """
    path = os.path.join(directory, "token")
    token = secrets.token_hex(24)
    write_atomic(path, token.encode())
    return path, token


def _unix_socket(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _status(state: dict[str, Any], token: str, timeout: float = 3.0, found: list[Listener] | None = None) -> int | None:
    """HTTP status of GET /api/status with the token, or None when nothing answers.

    On a port the request goes out only on a connection to the user's own listener (the recorded
    server's pid once known); otherwise NotYours is raised and nobody was sent anything.
    """
    try:
        if state.get("socket"):  # in a 0700 directory of the user's: nobody else can bind or reach it
            sock = _unix_socket(state["socket"], timeout)
        else:
            pid = [state["pid"]] if state.get("pid") else None
            sock = connect_owned(int(state["port"]), pid, timeout, "your JupyterLab", found)
    except OSError:
        return None
    with sock:
        return http_status(sock, "/api/status", {"Authorization": "token " + token})


def _check(state: dict[str, Any], token: str, timeout: float = 3.0, found: list[Listener] | None = None
           ) -> tuple[int | None, str | None]:
    """(HTTP status or None, why the port is not the user's own server or None)."""
    if not token:
        return None, None
    try:
        return _status(state, token, timeout, found), None
    except NotYours as exc:
        return None, exc.message


def _unix_socket_pid(path: str) -> int | None:
    try:
        with open("/proc/net/unix") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return None
    inodes = [row.split()[6] for row in rows if len(row.split()) >= 8 and row.split()[7] == path]
    pids = _socket_pids() if inodes else {}
    return next((pids[i] for i in inodes if i in pids), None)


def _pid(state: dict[str, Any], found: list[Listener] | None = None) -> int | None:
    """The user's process serving the recorded server (only the recorded pid, once recorded)."""
    if state.get("socket"):
        return _unix_socket_pid(state["socket"])
    uid = os.getuid()
    found = listeners() if found is None else found
    pid = next((e["pid"] for e in found if e["port"] == state.get("port") and e["uid"] == uid and e["pid"]), None)
    return pid if not state.get("pid") or pid == state["pid"] else None


def _state_problem(state: dict[str, Any]) -> str | None:
    if not (state.get("port") or state.get("socket")):
        return "names neither a port nor a socket"
    return None


def _describe(key: str, with_pid: bool = True) -> dict[str, Any] | None:
    directory = _dir(key)
    state, _ = read_state(os.path.join(directory, "state.json"), _state_problem)
    if not state:  # none, or damaged: stale (the next start writes it whole again)
        return None
    token = _token(directory)
    found = None if state.get("socket") else listeners()
    code, problem = _check(state, token, found=found)
    state = dict(state, token=token, status=code, healthy=code == 200, problem=problem)
    state["url"] = _url(state)
    if with_pid:
        state["pid"] = _pid(state, found)
    return state


def _url(state: dict[str, Any]) -> str:
    query = "?token=" + state["token"]
    if state.get("socket"):
        return "http+unix://%s%s%s" % (state["socket"].replace("/", "%2F"), URL_PATH, query)
    return "http://127.0.0.1:%d%s%s" % (state["port"], URL_PATH, query)


def status(payload: dict[str, Any]) -> dict[str, Any] | None:
    """For the ``up`` verb's JupyterLab part {key}: the recorded server with its health, or None."""
    return _describe(payload["key"])


def prepare(payload: dict[str, Any]) -> dict[str, Any]:
    """For the ``up`` verb's JupyterLab part {key, env, port | socket}: a new token, private dir, state; checks the port is free."""
    key = payload["key"]
    directory = _dir(key)
    state: dict[str, Any] = {"env": payload["env"], "env_key": key, "port": None, "socket": None,
             "token_file": os.path.join(directory, "token"), "url_path": URL_PATH, "dir": directory}
    if payload.get("socket"):
        sock = os.path.join(directory, "jupyter.sock")
        if os.path.exists(sock) and _status({"socket": sock}, "-") is None:
            os.unlink(sock)  # left behind by a server that died
        state["socket"] = sock
    else:
        port = int(payload["port"])
        held = holder_problem(port, listeners())
        if held:
            raise Failure("port %d planned for Jupyter of env %s is held by %s." % (port, payload["env"], held),
                          "PortError", "Stop it, or run portal again to be given another port.")
        state["port"] = port
    _, token = _new_token(directory)
    state["config_dir"] = write_proxy_config(directory)
    write_json(os.path.join(directory, "state.json"), state)
    return dict(state, token=token, url=_url(dict(state, token=token)))


def _anyone_listens(port: int) -> bool:
    return any(row["local"][1] == port for row in listening_rows())


def wait(payload: dict[str, Any]) -> dict[str, Any] | None:
    """For the ``up`` verb's JupyterLab part {key, timeout}: poll until the server answers 200 with the token (bounded).

    The described server (its pid now recorded), None on time-out, or {"taken": why, "port"} when
    the port is held by anything but the user's own process (Jupyter, with port_retries=0, then
    cannot start there).
    """
    directory = _dir(payload["key"])
    path = os.path.join(directory, "state.json")
    state = read_json(path) or {}
    token = _token(directory)
    deadline = time.monotonic() + float(payload.get("timeout", 10))
    while True:
        if state.get("port") and not _anyone_listens(int(state["port"])):
            code, problem = None, None  # nothing to ask yet (a cheap look at /proc/net/tcp alone)
        else:
            code, problem = _check(state, token, timeout=2.0)
        if problem:
            return {"taken": problem, "port": state.get("port"), "healthy": False}
        if code == 200:
            if state.get("port"):
                write_json(path, dict(state, pid=_pid(state)))  # later checks expect this very process
            return _describe(payload["key"])
        if code is not None and code in (401, 403):
            raise Failure("a server answers at %s but refuses portal's token (HTTP %d)."
                          % (state.get("socket") or state.get("port"), code), "JupyterError",
                          "It is not the server portal started; stop it, or run portal down and up again.")
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def listing(_payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Verb ``jupyter-list``: every recorded server of this user, with health."""
    root = os.path.dirname(state_path("jupyter", "x"))
    found: list[dict[str, Any]] = []
    for key in sorted(os.listdir(root)):
        entry = _describe(key) if os.path.isdir(os.path.join(root, key)) else None
        if entry:
            found.append(entry)
    return found


def stop(payload: dict[str, Any]) -> dict[str, Any]:
    """For the ``down`` verb {key}: end the recorded server (SIGTERM, bounded wait) and forget its state."""
    entry = _describe(payload["key"])
    if not entry:
        return {"stopped": False}
    pid = entry.get("pid")
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + float(payload.get("timeout", 10))
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    os.unlink(os.path.join(entry["dir"], "state.json"))
    return {"stopped": bool(pid), "pid": pid}


VERBS = {"jupyter-list": listing}  # status, prepare and wait run inside `up` (remote/up.py), stop inside `down`

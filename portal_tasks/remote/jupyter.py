"""Host-side verbs for Jupyter: token and state in ~/.portal/jupyter/KEY/ (0700/0600), health, stop.

The server reads its token from JUPYTER_TOKEN_FILE, so the token never shows on a command
line; portal reads the URL back from its own state, never from the server's log.
"""

import http.client
import os
import secrets
import signal
import socket
import time

from .common import Failure, _socket_pids, listeners, pid_alive, read_json, state_path, write_json

URL_PATH = "/lab"


def _dir(key):
    if not key or "/" in key or key.startswith("."):
        raise Failure("bad env key %r" % key, "UsageError")
    path = os.path.dirname(state_path("jupyter", key, "state.json"))
    os.chmod(path, 0o700)
    return path


def _token(directory):
    """The env's token, created once (0600) so URLs and bookmarks keep working.

    Jupyter takes JUPYTER_TOKEN_FILE's content verbatim, so the file holds no newline.
    """
    path = os.path.join(directory, "token")
    try:
        with open(path) as fh:
            raw = fh.read()
        token = raw.strip()
        if token and raw == token:
            return path, token
    except OSError:
        token = ""
    token = token or secrets.token_hex(24)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    os.replace(path + ".tmp", path)
    return path, token


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _status(state, token, timeout=3.0):
    """HTTP status of GET /api/status with the token, or None when nothing answers."""
    if state.get("socket"):
        conn = _UnixHTTPConnection(state["socket"], timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", int(state["port"]), timeout=timeout)
    try:
        conn.request("GET", "/api/status", headers={"Authorization": "token " + token})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _unix_socket_pid(path):
    try:
        with open("/proc/net/unix") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return None
    inodes = [row.split()[6] for row in rows if len(row.split()) >= 8 and row.split()[7] == path]
    pids = _socket_pids() if inodes else {}
    return next((pids[i] for i in inodes if i in pids), None)


def _pid(state):
    if state.get("socket"):
        return _unix_socket_pid(state["socket"])
    uid = os.getuid()
    return next((e["pid"] for e in listeners() if e["port"] == state.get("port") and e["uid"] == uid and e["pid"]), None)


def _holder(port):
    """Who listens on port, when it is someone or something other than a Jupyter of ours."""
    for entry in listeners():
        if entry["port"] == port:
            if entry["uid"] != os.getuid():
                return "another user (uid %d)" % entry["uid"]
            return "your process %s (%s)" % (entry["pid"], " ".join(entry["cmdline"][:3]))
    return None


def _describe(key, with_pid=True):
    directory = _dir(key)
    state = read_json(os.path.join(directory, "state.json"))
    if not state:
        return None
    _, token = _token(directory)
    code = None
    if state.get("socket") or _holder_is_mine(state.get("port")):
        code = _status(state, token)
    state = dict(state, token=token, status=code, healthy=code == 200)
    state["url"] = _url(state)
    if with_pid:
        state["pid"] = _pid(state)
    return state


def _holder_is_mine(port):
    """Never talk to a port another user holds (nothing listening is fine: the connect just fails)."""
    return not any(e["port"] == port and e["uid"] != os.getuid() for e in listeners())


def _url(state):
    query = "?token=" + state["token"]
    if state.get("socket"):
        return "http+unix://%s%s%s" % (state["socket"].replace("/", "%2F"), URL_PATH, query)
    return "http://127.0.0.1:%d%s%s" % (state["port"], URL_PATH, query)


def status(payload):
    """Verb ``jupyter-status`` {key}: the recorded server with its health, or None."""
    return _describe(payload["key"])


def prepare(payload):
    """Verb ``jupyter-prepare`` {key, env, port | socket}: token, private dir, state; checks the port is free."""
    key = payload["key"]
    directory = _dir(key)
    token_file, token = _token(directory)
    state = {"env": payload["env"], "env_key": key, "port": None, "socket": None,
             "token_file": token_file, "url_path": URL_PATH, "dir": directory}
    if payload.get("socket"):
        sock = os.path.join(directory, "jupyter.sock")
        if os.path.exists(sock) and _status({"socket": sock}, token) is None:
            os.unlink(sock)  # left behind by a server that died
        state["socket"] = sock
    else:
        port = int(payload["port"])
        held = _holder(port)
        if held:
            raise Failure("port %d planned for Jupyter of env %s is held by %s." % (port, payload["env"], held),
                          "PortError", "Stop it, or run portal again to be given another port.")
        state["port"] = port
    write_json(os.path.join(directory, "state.json"), state)
    return dict(state, token=token, url=_url(dict(state, token=token)))


def wait(payload):
    """Verb ``jupyter-wait`` {key, timeout}: poll until the server answers 200 with the token (bounded)."""
    directory = _dir(payload["key"])
    state = read_json(os.path.join(directory, "state.json")) or {}
    _, token = _token(directory)
    deadline = time.monotonic() + float(payload.get("timeout", 10))
    code = None
    while True:
        code = _status(state, token, timeout=2.0)
        if code == 200:
            return _describe(payload["key"])
        if code is not None and code in (401, 403):
            raise Failure("a server answers at %s but refuses portal's token (HTTP %d)."
                          % (state.get("socket") or state.get("port"), code), "JupyterError",
                          "It is not the server portal started; stop it, or run portal down and up again.")
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def listing(_payload):
    """Verb ``jupyter-list``: every recorded server of this user, with health."""
    root = os.path.dirname(state_path("jupyter", "x"))
    found = []
    for key in sorted(os.listdir(root)):
        entry = _describe(key) if os.path.isdir(os.path.join(root, key)) else None
        if entry:
            found.append(entry)
    return found


def stop(payload):
    """Verb ``jupyter-stop`` {key}: end the recorded server (SIGTERM, bounded wait) and forget its state."""
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


VERBS = {"jupyter-status": status, "jupyter-prepare": prepare, "jupyter-wait": wait,
         "jupyter-list": listing, "jupyter-stop": stop}

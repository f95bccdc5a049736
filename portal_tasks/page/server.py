"""Serves the page on the laptop's loopback (standard library http.server) and carries out its actions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from invoke.config import Config

from .. import config as config_mod
from .. import state
from ..errors import PortalError, UsageError
from ..link import open_link
from ..remote.files import write_atomic
from ..runner import start_detached
from ..commands import browse, overview
from ..target import Target
from . import assets, guard
from .view import view

#: A fresh answer of the hosts is asked at most this often, however many tabs poll.
FRESH_FOR = 1.0
MAX_BODY = 4096


class PageApp:
    """What the page serves, apart from HTTP: the hosts' state (briefly cached) and the actions."""

    def __init__(self, config: Config | Mapping[str, Any] | None, wait: float = overview.DEFAULT_WAIT,
                 ssh_config: str | None = None, secret: str | None = None) -> None:
        self.config = config
        self.wait = wait
        self.ssh_config = ssh_config
        self.secret = secret or guard.new_secret()
        self._lock = threading.Lock()
        self._at = 0.0
        self._reports: list[dict[str, Any]] = []

    def reports(self) -> list[dict[str, Any]]:
        with self._lock:  # concurrent polls wait for one answer instead of asking the hosts again
            if time.monotonic() - self._at > FRESH_FOR:
                self._reports = overview.ask_all(self.config, wait=self.wait, ssh_config=self.ssh_config)
                self._at = time.monotonic()
            return self._reports

    def status(self) -> dict[str, Any]:
        return view(self.reports())

    def target(self, host: str, said: list[str]) -> Target:
        recorded = state.load_hosts().get(host, {}).get("ssh_config")
        settings = config_mod.resolve(self.config, host, ssh_config=self.ssh_config or recorded)
        link = open_link(settings)
        link.batch = True  # the page has no terminal to type a password into
        return Target(settings=settings, link=link, say=said.append)

    def act(self, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Carry out a POSTed action; (HTTP status, {"ok", "message"})."""
        from ..commands import down, forward

        host = body.get("host")
        if not isinstance(host, str) or host not in overview.known_hosts():
            return 400, {"ok": False, "message": f"unknown host {host!r}: the page acts only on hosts you used."}
        said: list[str] = []
        try:
            if action == "forward":
                made = forward.forward_all(self.target(host, said))
                done = ", ".join(f"{f.service.name} on {f.local_port}" for f in made) or "nothing runs to forward"
                message = f"{host}: forwarded {done}."
            elif action == "down":
                env = body.get("env")
                known: list[str] = next((h["envs"] for h in view(self._reports)["hosts"] if h["host"] == host), [])
                if not isinstance(env, str) or env not in known:
                    return 400, {"ok": False, "message": f"{host}: no env {env!r} of yours runs there."}
                down.run(self.target(host, said), env=env)
                message = f"{host}: env {env} stopped."
            else:
                return 404, {"ok": False, "message": f"no action {action!r}."}
        except PortalError as exc:
            return 200, {"ok": False, "message": exc.line()}
        finally:
            with self._lock:
                self._at = 0.0  # the next poll asks the hosts again
        return 200, {"ok": True, "message": " ".join([message, *said])}


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: PageApp, port: int = 0) -> None:
        self.app = app
        try:
            super().__init__(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise UsageError(f"cannot serve the page on 127.0.0.1:{port} ({exc.strerror}).",
                             hint="Pass another --port, or none for a free one.") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/{self.app.secret}/"


class Handler(BaseHTTPRequestHandler):
    server: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a request line would print the secret to the terminal."""

    def _send(self, code: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        for name, value in guard.HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload), "application/json")

    def _route(self) -> str | None:
        """The path after the secret, or None once a refusal has been sent."""
        if not guard.host_ok(self.headers.get("Host"), self.server.server_port):
            self._send(403, "forbidden\n")
            return None
        rest = guard.route(self.path, self.server.app.secret)
        if rest is None:
            self._send(404, "not found\n")
        return rest

    def do_GET(self) -> None:
        rest = self._route()
        if rest is None:
            return
        if rest in assets.FILES:
            content_type, body = assets.FILES[rest]
            self._send(200, body, content_type)
        elif rest == "api/status":
            self._json(200, self.server.app.status())
        else:
            self._send(404, "not found\n")

    def do_POST(self) -> None:
        rest = self._route()
        if rest is None:
            return
        port = self.server.server_port
        if not guard.post_ok(self.headers.get("Origin"), self.headers.get("Content-Type"), port):
            self._send(403, "forbidden: actions come from the page itself\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length)) if 0 < length <= MAX_BODY else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not rest.startswith("api/"):
            self._json(400, {"ok": False, "message": "expected a small JSON object."})
            return
        code, answer = self.server.app.act(rest[len("api/"):], body)
        self._json(code, answer)


def open_in_browser(url: str) -> Path:
    """Open url through a private (0600) file that redirects to it, so no process's argv carries the secret."""
    path = browse.write_redirect(url, f"page-{os.getpid()}.html")
    webbrowser.open(path.as_uri())
    return path


#: The page that runs for this laptop user: {"pid", "url"} (0600 in the user cache dir), so `up --page` reuses it.
RUNNING = "page.json"
#: Seconds `up --page` waits for a page it started to answer.
START_SECONDS = 10.0


def serve(config: Config | Mapping[str, Any] | None, port: int = 0, browser: bool = True,
          wait: float = overview.DEFAULT_WAIT, ssh_config: str | None = None) -> None:
    """Serve the page until Ctrl-C (or SIGTERM)."""
    app = PageApp(config, wait=wait, ssh_config=ssh_config)
    httpd = PageServer(app, port)
    threading.Thread(target=app.reports, daemon=True).start()  # the first poll finds the hosts asked already
    print(f"portal page: {httpd.url}  (Ctrl-C ends it)", flush=True)
    record = state.cache_dir() / RUNNING
    write_atomic(str(record), json.dumps({"pid": os.getpid(), "url": httpd.url}).encode())
    launcher = open_in_browser(httpd.url) if browser else None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("portal page: stopped.")
    finally:
        signal.signal(signal.SIGTERM, previous)
        httpd.server_close()
        if _recorded(record).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                record.unlink()
        if launcher is not None:
            with contextlib.suppress(OSError):
                launcher.unlink()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _recorded(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _answers_as_page(url: str) -> bool:
    """True when url serves portal's page (a dead page's port may hold anything now)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and b'<script src="page.js"' in resp.read(4096)
    except (OSError, ValueError):
        return False


def _ours_alive(pid: Any) -> bool:
    """True while ``pid`` runs as this user: then the port it serves cannot be anyone else's."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):  # gone, or another user's (PermissionError)
        return False
    return True


def running_url() -> str | None:
    """The URL of the page that runs for this user, or None. The URL (with its secret) is asked only while
    the recorded page process runs: a dead page's port may be held by anyone now."""
    found = _recorded(state.cache_dir() / RUNNING)
    url = found.get("url")
    return url if isinstance(url, str) and _ours_alive(found.get("pid")) and _answers_as_page(url) else None


def ensure_running(ssh_config: str | None = None) -> str:
    """The running page's URL; a page is started in the background (it outlives `up`) when none runs."""
    url = running_url()
    if url:
        return url
    argv = [sys.executable, "-m", "portal_tasks", "page", "--no-browser"]
    if ssh_config:
        argv += ["--ssh-config", ssh_config]
    pid = start_detached(argv, output=str(state.cache_dir() / "page.log"))
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        found = _recorded(state.cache_dir() / RUNNING)
        if found.get("pid") == pid and _answers_as_page(str(found.get("url"))):
            return str(found["url"])
        time.sleep(0.1)
    raise PortalError(f"the page did not start within {START_SECONDS:g}s.",
                      hint=f"Look at {state.cache_dir() / 'page.log'}, or run `portal page` in a terminal.")

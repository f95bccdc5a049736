"""The page without a browser or a host: what it shows (view), whom it lets in (guard), its HTTP answers."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from portal_tasks.page import guard, view
from portal_tasks.page.server import PageApp, PageServer

CLUSTER = {"env": "/e/a", "env_key": "a-1234", "address": "tls://127.0.0.1:20100", "dashboard_port": 20101,
           "workers": 2, "workers_running": 2, "memory_budget": 2 << 30, "healthy": True}
JUPYTER = {"env": "/e/a", "env_key": "a-1234", "port": 20102, "socket": None, "healthy": True, "token": "t0k"}


def forward(name: str, answers: bool | None, url: str) -> dict[str, object]:
    return {"service": name, "local_port": 1, "remote": "127.0.0.1:1", "url": url, "answers": answers}


def report(clusters: list[dict[str, object]], jupyters: list[dict[str, object]],
           forwards: list[dict[str, object]]) -> dict[str, object]:
    return {"host": "matagorda", "reachable": True, "error": None, "user": "alice", "uid": 1, "sessions": [],
            "clusters": clusters, "jupyter": jupyters, "forwards": forwards}


def test_rows_join_what_runs_with_its_forward_and_say_what_to_do():
    fwds = [forward("dashboard-a-1234", False, "http://localhost:20101/status"),
            forward("jupyter-a-1234", True, "http://localhost:20102/lab?token=t0k"),
            forward("dashboard-old", True, "http://localhost:20201/status")]
    rows = {r["name"]: r for r in view.services(report([CLUSTER], [JUPYTER], fwds))}
    assert rows["dashboard-a-1234"]["health"] == "bad"
    assert rows["dashboard-a-1234"]["says"] == "forward does not answer: re-forward"
    assert rows["dashboard-a-1234"]["detail"].startswith("2/2 workers, 2 GiB")
    assert rows["jupyter-a-1234"]["health"] == "ok" and rows["jupyter-a-1234"]["url"].endswith("?token=t0k")
    assert rows["dashboard-old"]["health"] == "bad" and rows["dashboard-old"]["url"] is None


@pytest.mark.parametrize(("healthy", "answers", "health", "says"), [
    (True, True, "ok", "healthy"),
    (True, None, "unknown", "forward not checked in time"),
    (False, True, "bad", "not running on matagorda"),
])
def test_health_of_one_dashboard(healthy, answers, health, says):
    fwds = [forward("dashboard-a-1234", answers, "http://localhost:20101/status")]
    (row,) = view.services(report([dict(CLUSTER, healthy=healthy)], [], fwds))
    assert (row["health"], row["says"]) == (health, says)


def test_a_service_never_forwarded_asks_for_a_reforward_and_unreachable_hosts_have_no_rows():
    (row,) = view.services(report([CLUSTER], [], []))
    assert (row["health"], row["says"], row["url"]) == ("bad", "not forwarded: re-forward", None)
    shown = view.view([{"host": "h2", "reachable": False, "error": "no answer within 2s"}])
    assert shown == {"hosts": [{"host": "h2", "reachable": False, "error": "no answer within 2s", "services": [],
                                "envs": []}]}
    assert view.host_view(report([CLUSTER], [JUPYTER], []))["envs"] == ["/e/a"]


def test_guard_routes_only_the_secret_and_only_own_hosts_and_origins():
    secret = guard.new_secret()
    assert len(secret) >= 32 and secret != guard.new_secret()
    assert guard.route(f"/{secret}/", secret) == ""
    assert guard.route(f"/{secret}/api/status?x=1", secret) == "api/status"
    for path in ("/", f"/{secret}", f"/{secret[:-1]}/", f"/{secret}x/", "/api/status", f"//{secret}/"):
        assert guard.route(path, secret) is None, path
    assert guard.host_ok("127.0.0.1:8000", 8000) and guard.host_ok("localhost:8000", 8000)
    assert not guard.host_ok("evil.example:8000", 8000) and not guard.host_ok(None, 8000)
    assert not guard.host_ok("127.0.0.1:8001", 8000)
    assert guard.post_ok("http://127.0.0.1:8000", "application/json", 8000)
    assert not guard.post_ok(None, "application/json", 8000)
    assert not guard.post_ok("http://evil.example", "application/json", 8000)
    assert not guard.post_ok("http://127.0.0.1:8000", "text/plain", 8000)
    assert "no-referrer" in guard.HEADERS["Referrer-Policy"]


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[tuple[PageServer, str]]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no known hosts
    server = PageServer(PageApp(None), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, server.url
    finally:
        server.shutdown()
        server.server_close()


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_server_answers_the_secret_only(served):
    server, url = served
    code, headers, body = call(url)
    assert code == 200 and b'<script src="page.js"' in body and headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert call(url + "page.js")[0] == 200 and call(url + "page.css")[0] == 200
    assert json.loads(call(url + "api/status")[2]) == {"hosts": []}
    assert call(f"http://127.0.0.1:{server.server_port}/")[0] == 404
    assert call(url.rstrip("/"))[0] == 404
    assert call(url + "nope")[0] == 404
    assert call(url, headers={"Host": "rebound.example"})[0] == 403


def test_actions_need_the_pages_origin_json_and_a_known_host(served):
    server, url = served
    origin = f"http://127.0.0.1:{server.server_port}"
    body = json.dumps({"host": "matagorda"}).encode()
    assert call(url + "api/forward", "POST", {"Content-Type": "application/json"}, body)[0] == 403
    assert call(url + "api/forward", "POST", {"Content-Type": "text/plain", "Origin": origin}, body)[0] == 403
    code, _, answer = call(url + "api/forward", "POST", {"Content-Type": "application/json", "Origin": origin}, body)
    assert code == 400 and "unknown host 'matagorda'" in json.loads(answer)["message"]
    code, _, answer = call(url + "api/forward", "POST", {"Content-Type": "application/json", "Origin": origin}, b"[1]")
    assert code == 400

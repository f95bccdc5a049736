"""`portal page` in a real browser (Playwright driving Debian's Chromium): every host's services with live
health, a forward dropped by hand turning unhealthy, the re-forward action, stopping an env, the secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.testing import browser
from portal_tasks.testing.browser import artifacts, page_running, shown
from portal_tasks.testing.flows import cancel_forward_by_hand, http_get, up
from portal_tasks.testing.procs import kill_and_wait, pid_alive
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def chromium() -> Iterator[Any]:
    with browser.chromium() as launched:
        yield launched


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


def refused(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def status_all(run_portal: Any, user: TestUser) -> dict[str, dict[str, Any]]:
    res = run_portal(user, "status", "--all", "--json", "--wait", "60")
    assert res.rc == 0, res.stdout + res.stderr
    return {r["host"]: r for r in json.loads(res.stdout)}


def row(host: str, service: str, health: str = "") -> str:
    return f'tr[data-host="{host}"][data-service="{service}"]' + (f".health-{health}" if health else "")


def test_page_shows_every_host_turns_a_dropped_forward_unhealthy_and_reforwards_it(
        portal_server, alice, run_portal, env, chromium, request):
    first, second = portal_server.host, portal_server.second_host or portal_server.via_login_host
    up(run_portal, alice, first, env, "--jupyter")
    up(run_portal, alice, second, env)
    hosts = status_all(run_portal, alice)
    key = hosts[first]["clusters"][0]["env_key"]
    dashboard = next(f for f in hosts[first]["forwards"] if f["service"] == f"dashboard-{key}")

    with page_running(alice) as (_, url):
        base = url.split("/", 3)[:3]
        origin = "/".join(base)
        assert refused(origin + "/") == 404  # no secret
        assert refused(origin + "/" + "x" * 32 + "/api/status") == 404  # a wrong one
        assert refused(url, headers={"Host": "attacker.example:80"}) == 403  # DNS rebinding
        body = json.dumps({"host": first}).encode()
        assert refused(url + "api/forward", method="POST", body=body,
                       headers={"Content-Type": "application/json", "Origin": "http://attacker.example"}) == 403
        assert refused(url + "api/forward", method="POST", body=body,
                       headers={"Content-Type": "text/plain", "Origin": origin}) == 403  # a plain form post

        page = chromium.new_page()
        page.goto(url)
        for host in (first, second):
            shown(page, row(host, f"dashboard-{key}", "ok"), 60)
        shown(page, row(first, f"jupyter-{key}", "ok"), 60)
        lab = page.get_attribute(row(first, f"jupyter-{key}") + " a", "href")
        assert lab and "/lab?token=" in lab and http_get(lab)[0] == 200

        assert cancel_forward_by_hand(alice, first, dashboard["local_port"], dashboard["remote"]).ok
        with pytest.raises(OSError):
            urllib.request.urlopen(dashboard["url"], timeout=5)
        shown(page, row(first, f"dashboard-{key}", "bad"), 60)  # at a later refresh (every 2 s): a bounded wait
        assert "forward does not answer" in page.inner_text(row(first, f"dashboard-{key}"))
        shown(page, row(second, f"dashboard-{key}", "ok"), 60)  # the other host's is fine
        page.screenshot(path=str(artifacts(request) / "page-forward-down.png"), full_page=True)

        page.click(f'section[data-host="{first}"] button.reforward')
        shown(page, row(first, f"dashboard-{key}", "ok"), 60)
        page.screenshot(path=str(artifacts(request) / "page.png"), full_page=True)
        href = page.get_attribute(row(first, f"dashboard-{key}") + " a", "href")
        assert href == dashboard["url"]  # the same bookmarkable URL as before
        dash = chromium.new_page()
        assert dash.goto(href).status == 200
        dash.wait_for_selector("canvas", timeout=30_000)  # bokeh drew the dashboard's plots
        assert "Dask" in dash.title()

        page.on("dialog", lambda dialog: dialog.accept())
        page.click(f'section[data-host="{first}"] button.stop')
        shown(page, f'section[data-host="{first}"] p.none', 60)
        assert status_all(run_portal, alice)[first]["clusters"] == []


def test_page_with_no_host_answers_an_empty_list_from_a_small_process(portal_server, alice, run_portal):
    """How soon it answers after its start is benchmark 14 (against a plain Python HTTP server), not a test."""
    with page_running(alice) as (proc, url):
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:")))
        print(f"page: {rss_kib // 1024} MiB resident")
        assert rss_kib < 120 * 1024
        assert json.loads(http_get(url + "api/status")[1]) == {"hosts": []}


def test_up_with_page_starts_one_page_in_the_background_and_the_next_up_reuses_it(
        portal_server, alice, run_portal, env):
    host = portal_server.host
    first = up(run_portal, alice, host, env, "--page")
    (url,) = [line.split()[2] for line in first.stdout.splitlines() if line.startswith("portal page: ")]
    record = alice.laptop / ".cache" / "portal" / "page.json"
    pid = json.loads(record.read_text())["pid"]
    try:
        assert pid_alive(pid) and record.stat().st_mode & 0o077 == 0

        def dashboard_ok() -> bool:
            hosts = json.loads(http_get(url + "api/status")[1])["hosts"]
            return any(s["kind"] == "dashboard" and s["health"] == "ok" for h in hosts if h["host"] == host
                       for s in h["services"])

        retry_until(dashboard_ok, 60, 0.5, what=f"{host}'s dashboard on the page")
        again = up(run_portal, alice, host, env, "--page")
        assert f"portal page: {url}" in again.stdout  # the same page, not a second one
        assert json.loads(record.read_text())["pid"] == pid
    finally:
        kill_and_wait([pid])
    assert not record.exists()  # the page forgets itself when it ends

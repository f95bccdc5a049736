"""`portal page` in a real browser (Playwright driving Debian's Chromium): every host's services with live
health, a forward dropped by hand turning unhealthy, the re-forward action, stopping an env, the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.testing.flows import cancel_forward_by_hand, http_get, up
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import kill_and_wait
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where tests leave screenshots: $PORTAL_TEST_ARTIFACTS, else build/test-artifacts of the repo."""
    path = Path(os.environ.get("PORTAL_TEST_ARTIFACTS") or request.config.rootpath / "build" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Playwright; skips (fails in CI) where either is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run installs it")
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def env(portal_server: TestServer) -> str:
    return str(portal_server.envs["a"])


def start_page(user: TestUser, *args: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """`portal page --no-browser` as user: its process, its URL, and seconds until the page answered."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "portal_tasks", "page", "--no-browser", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **portal_env(user)},
                            cwd=str(user.laptop))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # the first line is the URL (or the process ended)
    assert line.startswith("portal page: http://127.0.0.1:"), line + proc.stderr.read().decode()  # type: ignore[union-attr]
    url = line.split()[2]
    retry_until(lambda: http_get(url)[0] == 200, 10, 0.02, what="the page to answer", retry_on=(OSError,))
    return proc, url, time.monotonic() - start


def refused(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def status_all(run_portal: Any, user: TestUser) -> dict[str, dict[str, Any]]:
    res = run_portal(user, "status", "--all", "--json")
    assert res.rc == 0, res.stdout + res.stderr
    return {r["host"]: r for r in json.loads(res.stdout)}


def row(host: str, service: str, health: str = "") -> str:
    return f'tr[data-host="{host}"][data-service="{service}"]' + (f".health-{health}" if health else "")


def shown(page: Any, selector: str, timeout: float) -> None:
    """Wait for selector on the page; on timeout fail with what the page says instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, timeout=timeout * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"no {selector} within {timeout:g}s; the page says:\n{page.inner_text('body')}")


def test_page_shows_every_host_turns_a_dropped_forward_unhealthy_and_reforwards_it(
        portal_server, alice, run_portal, env, chromium, request):
    first, second = portal_server.host, portal_server.via_login_host
    up(run_portal, alice, first, env, "--jupyter")
    up(run_portal, alice, second, env)
    hosts = status_all(run_portal, alice)
    key = hosts[first]["clusters"][0]["env_key"]
    dashboard = next(f for f in hosts[first]["forwards"] if f["service"] == f"dashboard-{key}")

    proc, url, took = start_page(alice)
    try:
        print(f"page answered {took:.2f}s after start")
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
            shown(page, row(host, f"dashboard-{key}", "ok"), 20)
        shown(page, row(first, f"jupyter-{key}", "ok"), 20)
        lab = page.get_attribute(row(first, f"jupyter-{key}") + " a", "href")
        assert lab and "/lab?token=" in lab and http_get(lab)[0] == 200

        assert cancel_forward_by_hand(alice, first, dashboard["local_port"], dashboard["remote"]).ok
        dropped = time.monotonic()
        with pytest.raises(OSError):
            urllib.request.urlopen(dashboard["url"], timeout=5)
        shown(page, row(first, f"dashboard-{key}", "bad"), 5)
        print(f"dropped forward shown unhealthy after {time.monotonic() - dropped:.2f}s")
        assert "forward does not answer" in page.inner_text(row(first, f"dashboard-{key}"))
        shown(page, row(second, f"dashboard-{key}", "ok"), 2)  # the other host's is fine
        page.screenshot(path=str(artifacts(request) / "page-forward-down.png"), full_page=True)

        page.click(f'section[data-host="{first}"] button.reforward')
        shown(page, row(first, f"dashboard-{key}", "ok"), 30)
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
    finally:
        kill_and_wait([proc.pid])
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_page_starts_fast_and_small(portal_server, alice, run_portal):
    """With no host to ask, the page answers within a second of starting, in a small process."""
    proc, url, took = start_page(alice)
    try:
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:")))
        print(f"page answered {took:.2f}s after start, {rss_kib // 1024} MiB resident")
        assert took < 2.0, f"the page took {took:.2f}s to answer"  # typically well under 1s; slack for a busy machine
        assert rss_kib < 120 * 1024
        assert json.loads(http_get(url + "api/status")[1]) == {"hosts": []}
    finally:
        kill_and_wait([proc.pid])

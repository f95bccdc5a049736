"""Browser helpers for e2e tests: Playwright driving Debian's Chromium, and `portal page` started as a user."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.testing.flows import http_get
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import kill_and_wait
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.waiting import retry_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where tests leave screenshots: $PORTAL_TEST_ARTIFACTS, else build/test-artifacts of the repo."""
    path = Path(os.environ.get("PORTAL_TEST_ARTIFACTS") or request.config.rootpath / "build" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
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


#: `page --wait` for the tests: long enough for a busy machine (answering hosts end each refresh's wait early).
PAGE_WAIT = "30"


@contextlib.contextmanager
def page_running(user: TestUser, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`portal page --no-browser --wait PAGE_WAIT` as user, once it answers: its process and its URL; the
    process is ended (by pid) when the block ends. (How soon a page answers is benchmark 14, not a test.)"""
    proc = subprocess.Popen([sys.executable, "-m", "portal_tasks", "page", "--no-browser", "--wait", PAGE_WAIT, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **portal_env(user)}, cwd=str(user.laptop))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().decode()  # the first line is the URL (or the process ended)
        if not line.startswith("portal page: http://127.0.0.1:"):
            kill_and_wait([proc.pid])
            pytest.fail(f"portal page did not start: {line}{proc.stderr.read().decode()}")
        url = line.split()[2]
        retry_until(lambda: http_get(url)[0] == 200, 60, 0.02, what="the page to answer", retry_on=(OSError,))
        yield proc, url
    finally:
        kill_and_wait([proc.pid])
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def shown(page: Any, selector: str, timeout: float) -> None:
    """Wait for selector on the page; on timeout fail with what the page says instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, timeout=timeout * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"no {selector} within {timeout:g}s; the page says:\n{page.inner_text('body')}")



"""An env with dask.distributed but no bokeh: `check` fails on it with the install command, `up` says so
(the dashboard it forwards only says "Dask needs bokeh"), and `status --all` and the page show it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from portal_tasks.testing import browser
from portal_tasks.testing.browser import page_running, shown
from portal_tasks.testing.flows import http_get, up, urls_in
from portal_tasks.testing.server import TestServer

pytestmark = pytest.mark.e2e

NEEDS = "the Dask dashboard needs bokeh>=3.1.0 in env"
INSTALL = "pip install 'bokeh>=3.1.0'"


@pytest.fixture
def chromium() -> Iterator[Any]:
    with browser.chromium() as launched:
        yield launched


def test_check_fails_on_an_env_without_bokeh_and_passes_one_with_it(portal_server: TestServer, alice, run_portal):
    nobokeh, good = str(portal_server.envs["nobokeh"]), str(portal_server.envs["a"])
    res = run_portal(alice, "check", "--host", portal_server.host, "--env", nobokeh)
    assert res.rc == 1, res.stdout + res.stderr
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and NEEDS in failed[0] and "(it has no bokeh)" in failed[0] and INSTALL in failed[0], \
        res.stdout
    res = run_portal(alice, "check", "--host", portal_server.host, "--env", good)
    assert res.rc == 0, res.stdout + res.stderr
    assert "has bokeh 3." in res.stdout and "for the Dask dashboard" in res.stdout


def test_up_says_the_dashboard_needs_bokeh_and_the_page_shows_it(portal_server: TestServer, alice, run_portal,
                                                                 chromium):
    host, env = portal_server.host, str(portal_server.envs["nobokeh"])
    res = up(run_portal, alice, host, env)
    said = [line for line in res.stderr.splitlines() if NEEDS in line]
    assert len(said) == 1 and INSTALL in said[0], res.stderr
    dashboard = next(u for u in urls_in(res) if u.endswith("/status"))
    assert "Dask needs bokeh" in http_get(dashboard)[1]  # what the user would otherwise find out by opening it

    again = up(run_portal, alice, host, env)  # warm: the cluster is kept, and the line comes again
    assert [line for line in again.stderr.splitlines() if NEEDS in line] == said

    res = run_portal(alice, "status", "--all", "--json", "--wait", "60")
    (cluster,) = json.loads(res.stdout)[0]["clusters"]
    assert NEEDS in cluster["dashboard_problem"]

    with page_running(alice) as (_, url):
        page = chromium.new_page()
        page.goto(url)
        selector = f'tr[data-host="{host}"][data-service="dashboard-{cluster["env_key"]}"].health-bad'
        shown(page, selector, 60)
        text = page.inner_text(selector)
        assert "needs bokeh>=3.1.0" in text and INSTALL in text

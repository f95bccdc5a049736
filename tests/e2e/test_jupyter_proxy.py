"""The Dask dashboard through the Jupyter forward alone (jupyter-server-proxy), and only the user's own."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.testing import browser
from portal_tasks.testing.browser import artifacts
from portal_tasks.testing.flows import http_get, up
from portal_tasks.testing.server import TestServer
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

#: Listens on [::1]:PORT (argv[1]) for a minute: a co-user taking the IPv6 side of a dashboard port.
GRAB_V6 = ("import socket, sys, time; s = socket.socket(socket.AF_INET6); s.bind(('::1', int(sys.argv[1]))); "
           "s.listen(); time.sleep(60)")


#: True once a Bokeh document of the page holds a data source with task rectangles (start times).
TASKS_DRAWN = """(body) => typeof Bokeh !== "undefined" && Bokeh.documents.some(doc =>
    Array.from(doc.all_models).some(m => m.data && m.data.start && m.data.start.length > 0))"""


@pytest.fixture
def chromium() -> Iterator[Any]:
    with browser.chromium() as launched:
        yield launched


def test_dashboard_through_jupyter_draws_and_reaches_only_the_users_own_dashboard(
        portal_server: TestServer, alice, bob, run_portal, chromium, request):
    host, env = portal_server.host, str(portal_server.envs["lab"])
    res = run_portal(alice, "check", "--host", host, "--env", env)
    assert res.rc == 0, res.stdout + res.stderr
    assert "has jupyter-server-proxy: JupyterLab also serves the dashboard" in res.stdout
    assert "has dask-labextension: its panes are set to your cluster's dashboard" in res.stdout
    res = run_portal(alice, "check", "--host", host, "--env", str(portal_server.envs["a"]))
    assert "dashboard through Jupyter not available in env" in res.stdout
    assert "`pip install jupyter-server-proxy`" in res.stdout
    assert "Dask panes in JupyterLab not available in env" in res.stdout and "`pip install dask-labextension`" in res.stdout

    up(run_portal, alice, host, env, "--jupyter")
    res = run_portal(alice, "status", "--all", "--json", "--wait", "60")  # a busy host answers late
    (report,) = json.loads(res.stdout)
    (cluster,), (lab,) = report["clusters"], report["jupyter"]
    port = cluster["dashboard_port"]
    lab_url = next(f["url"] for f in report["forwards"] if f["service"].startswith("jupyter-"))
    origin = lab_url.split("/lab?")[0]
    token = urllib.parse.parse_qs(urllib.parse.urlparse(lab_url).query)["token"][0]

    environ = Path(f"/proc/{lab['pid']}/environ").read_bytes().split(b"\0")
    assert f"DASK_DISTRIBUTED__DASHBOARD__LINK=/proxy/{port}/status".encode() in environ
    config_path = [e for e in environ if e.startswith(b"JUPYTER_CONFIG_PATH=")]
    assert config_path and config_path[0].endswith(b"/config"), config_path

    code, body = http_get(f"{origin}/proxy/{port}/status?token={token}")
    assert code == 200 and "Dask" in body
    code, body = http_get(f"{origin}/proxy/{port}/status")  # without the token: Jupyter's login page
    assert "Dask" not in body and "token" in body.lower(), (code, body[:300])
    assert lab["socket"] and lab["port"] is None, lab  # JupyterLab on its Unix socket, the default
    assert http_get(f"{origin}/proxy/{cluster['scheduler_port']}/?token={token}")[0] == 403  # not a dashboard

    session = chromium.new_context()  # one browser session: Jupyter's login cookie holds for every tab
    page = session.new_page()
    page.goto(lab_url)  # logs in with the token (a cookie), as a user following portal's link does
    page.wait_for_selector(".jp-LabShell", timeout=60_000)
    dash = session.new_page()
    problems: list[str] = []
    dash.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}"))
    dash.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
    dash.on("response", lambda resp: problems.append(f"HTTP {resp.status}: {resp.url}") if resp.status >= 400 else None)
    assert dash.goto(f"{origin}/proxy/{port}/status").status == 200
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        dash.wait_for_selector("canvas", timeout=30_000)  # bokeh drew the plots, through the Jupyter forward alone
    except PlaywrightTimeout:
        dash.screenshot(path=str(artifacts(request) / "dashboard-through-jupyter-failed.png"), full_page=True)
        pytest.fail("no plots through Jupyter: " + "\n".join(problems[:30]))
    dash.screenshot(path=str(artifacts(request) / "dashboard-through-jupyter.png"), full_page=True)

    settings = json.loads(http_get(f"{origin}/lab/api/settings/dask-labextension:plugin?token={token}")[1])
    assert settings["schema"]["properties"]["defaultURL"]["default"] == f"proxy/{port}"  # preconfigured

    # dask-labextension's task-stream pane, pointed at the shared cluster, shows a notebook's computation
    page.click('.jp-LauncherCard[data-category="Notebook"]')
    # the kernel is started and idle before the cell is typed in: on a busy host it takes a while
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    source = ("import dask.array as da; from dask.distributed import Client; client = Client(); "
              "print('sum', da.ones((2000, 2000), chunks=250).sum().compute())")
    page.keyboard.type(source)
    assert "print('sum'" in cell.inner_text(), cell.inner_text()  # the keys reached the cell's editor
    page.keyboard.press("Shift+Enter")
    prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
    for _ in range(2):  # on a loaded machine JupyterLab has dropped the first run request (prompt still "[ ]:")
        try:
            page.wait_for_function("el => el.innerText.trim() !== '[ ]:'", arg=prompt.element_handle(),
                                   timeout=20_000)
            break
        except PlaywrightTimeout:
            cell.click()
            page.keyboard.press("Shift+Enter")
    try:
        page.wait_for_selector(".jp-OutputArea-output:has-text('sum 4000000')", timeout=120_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(artifacts(request) / "notebook-failed.png"), full_page=True)
        pytest.fail("the notebook's computation printed no sum: " + page.locator(".jp-Notebook").inner_text()[:2000])
    page.click('li[data-id="dask-dashboard-launcher"]')
    page.wait_for_selector(".dask-DashboardListing-item", timeout=30_000)
    page.click('.dask-DashboardListing-item:has-text("Task Stream")')
    pane = page.frame_locator('iframe[src*="individual-task-stream"]')
    pane.locator("canvas").first.wait_for(timeout=30_000)
    retry_until(lambda: pane.locator("body").evaluate(TASKS_DRAWN), 20, 0.5, what="tasks in the task-stream pane")
    page.screenshot(path=str(artifacts(request) / "jupyterlab-dask-panes.png"), full_page=True)

    grab = f"nohup python3 -c {shlex.quote(GRAB_V6)} {port} >/dev/null 2>&1 </dev/null &"
    assert bob.ssh(host, "sh", "-c", shlex.quote(grab)).rc == 0
    retry_until(lambda: http_get(f"{origin}/proxy/{port}/status?token={token}")[0] == 403, 10, 0.2,
                what="the proxy to refuse a dashboard port another user also listens on")


def _kernel_environ(lab_url: str, lab_pid: int) -> list[bytes]:
    """Start a kernel through JupyterLab's API (with its token) and read that kernel's environment."""
    import urllib.request

    origin, token = lab_url.split("/lab?")[0], lab_url.rpartition("token=")[2]
    request = urllib.request.Request(f"{origin}/api/kernels", data=b"{}", method="POST",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 201

    def kernel() -> int | None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[1]) == lab_pid and b"ipykernel" in (entry / "cmdline").read_bytes():
                        return int(entry.name)
                except (OSError, IndexError, ValueError):
                    continue
        return None

    pid = retry_until(kernel, 60, 0.2, what="the kernel JupyterLab started")
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_a_jupyter_server_proxy_with_a_known_hole_is_named_by_check_and_not_used_for_the_link(
        portal_server: TestServer, alice, run_portal):
    host, env = portal_server.host, str(portal_server.envs["oldproxy"])
    res = run_portal(alice, "check", "--host", host, "--env", env)
    said = [line for line in res.stdout.splitlines() if "CVE-2024-28179" in line]
    assert len(said) == 1 and "jupyter-server-proxy 4.1.0" in said[0], res.stdout
    assert said[0].endswith("`pip install -U 'jupyter-server-proxy>=4.1.1'`"), said

    up(run_portal, alice, host, env, "--jupyter")
    (report,) = json.loads(run_portal(alice, "status", "--all", "--json", "--wait", "60").stdout)
    (cluster,), (lab,) = report["clusters"], report["jupyter"]
    port = cluster["dashboard_port"]
    lab_url = next(f["url"] for f in report["forwards"] if f["service"].startswith("jupyter-"))
    origin, token = lab_url.split("/lab?")[0], lab_url.rpartition("token=")[2]
    direct = f"http://localhost:{port}/status"
    environ = Path(f"/proc/{lab['pid']}/environ").read_bytes().split(b"\0")
    assert f"DASK_DISTRIBUTED__DASHBOARD__LINK={direct}".encode() in environ  # not /proxy/PORT/status
    assert f"DASK_DISTRIBUTED__DASHBOARD__LINK={direct}".encode() in _kernel_environ(lab_url, lab["pid"])
    assert http_get(f"{origin}/proxy/{port}/status?token={token}")[0] == 403  # the proxy reaches nothing
    settings = json.loads(http_get(f"{origin}/lab/api/settings/dask-labextension:plugin?token={token}")[1])
    assert settings["schema"]["properties"]["defaultURL"]["default"] == f"http://localhost:{port}"
    dashboard = next(f["url"] for f in report["forwards"] if f["service"].startswith("dashboard-"))
    assert dashboard == direct and http_get(dashboard)[0] == 200  # the link is the dashboard's own forward

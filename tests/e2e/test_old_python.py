"""A server whose `python3` is 3.6 (RHEL 8 and its rebuilds): the helper runs on the newest python3.X of the
user's PATH there, `check` says which, and `up` works (the env has its own, newer Python)."""

from __future__ import annotations

import re

import pytest

from portal_tasks.runner import Result
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e


def said(res: Result) -> str:
    return res.stdout + res.stderr


def test_the_users_python3_is_3_6(portal_server: TestServer, oldpy: TestUser) -> None:
    """The premise: what portal's command line starts as `python3` there cannot read the helper itself."""
    res = oldpy.ssh(portal_server.host, "python3 --version")
    assert res.ok and re.search(r"Python 3\.6\.\d+", res.stdout + res.stderr), res


def test_check_names_the_python_that_runs_the_helper(portal_server: TestServer, oldpy: TestUser, run_portal) -> None:
    env = str(portal_server.envs["a"])
    res = run_portal(oldpy, "check", "--host", portal_server.host, "--env", env)
    assert res.rc == 0 and "FAIL" not in res.stdout and "Traceback" not in said(res), said(res)
    line = next(line for line in res.stdout.splitlines() if "portal's helper runs on" in line)
    found = re.search(r"portal's helper runs on python (3\.(\d+)\.\d+) \((\S+)\)", line)
    assert found and int(found.group(2)) >= 8 and re.search(r"python3\.\d+$", found.group(3)), line
    assert "3.6" not in line


def test_up_and_down_with_a_path_env(portal_server: TestServer, oldpy: TestUser, run_portal) -> None:
    env = str(portal_server.envs["a"])
    try:
        res = run_portal(oldpy, "up", "--host", portal_server.host, "--env", env, "--no-attach", "--no-browser",
                         timeout=300)
        assert res.rc == 0, said(res)
        status = run_portal(oldpy, "status", "--host", portal_server.host, "--json")
        assert status.rc == 0 and '"healthy": true' in status.stdout, said(status)
    finally:
        down = run_portal(oldpy, "down", "--host", portal_server.host, timeout=120)
    assert down.rc == 0, said(down)


def test_host_python_set_to_the_old_one_is_still_handed_over(portal_server: TestServer, oldpy: TestUser,
                                                             run_portal) -> None:
    """host_python naming the 3.6 itself: the helper still runs on the newest python3.X there."""
    old = oldpy.ssh(portal_server.host, "command -v python3").stdout.strip()
    assert old.endswith("/python3"), old
    (oldpy.laptop / "portal.yaml").write_text(f"hosts: {{{portal_server.host}: {{host_python: {old}}}}}\n")
    try:
        res = run_portal(oldpy, "check", "--host", portal_server.host)
    finally:
        (oldpy.laptop / "portal.yaml").unlink()
    assert res.rc == 0, said(res)
    line = next(line for line in res.stdout.splitlines() if "portal's helper runs on" in line)
    assert "python 3." in line and "python 3.6" not in line and old not in line, line

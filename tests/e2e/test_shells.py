"""Users whose login shell is not bash: sshd runs portal's command lines in zsh, fish and tcsh, and every
one of them (the helper's bootstrap on a first call, the helper, the attach line) reads the same there.

(The lines typed into their tmux windows are the windows' own business: test_up.py and the env tests.)
"""

from __future__ import annotations

import pytest

from portal_tasks.runner import Result
from portal_tasks.testing.server import TestServer, TestUser

pytestmark = pytest.mark.e2e

SHELLS = {"zed": "zsh", "fay": "fish", "ted": "tcsh"}


@pytest.fixture(params=list(SHELLS))
def shell_user(request: pytest.FixtureRequest) -> TestUser:
    user: TestUser = request.getfixturevalue(request.param)
    return user


def said(res: Result) -> str:
    return res.stdout + res.stderr


def test_the_line_portal_sent_before_fails_in_tcsh(portal_server: TestServer, ted: TestUser) -> None:
    """The premise: a program with newlines inside quotes (the old bootstrap's shape) is refused by tcsh."""
    old = ted.ssh(portal_server.host, "python3 -c 'import os\nprint(1)'")
    assert not old.ok and "Unmatched" in old.stderr, old


def test_check_passes_on_a_first_call_and_names_the_helpers_python(portal_server: TestServer, shell_user: TestUser,
                                                                   run_portal) -> None:
    """First call of this portal there (the bootstrap carries the helper), then plain helper calls."""
    env = str(portal_server.envs["a"])
    res = run_portal(shell_user, "check", "--host", portal_server.host, "--env", env)
    assert res.rc == 0 and "FAIL" not in res.stdout, said(res)
    assert "portal's helper runs on python 3." in res.stdout and "Traceback" not in said(res)
    again = run_portal(shell_user, "check", "--host", portal_server.host, "--env", env)
    assert again.rc == 0, said(again)


@pytest.mark.parametrize("role", list(SHELLS))
def test_up_and_down_with_a_path_env(portal_server: TestServer, request: pytest.FixtureRequest, role: str,
                                     run_portal) -> None:
    """up's whole path (its ssh lines, the helper, the windows) for zsh, fish and tcsh users."""
    shell_user: TestUser = request.getfixturevalue(role)
    env = str(portal_server.envs["a"])
    try:
        res = run_portal(shell_user, "up", "--host", portal_server.host, "--env", env, "--no-attach", "--no-browser",
                         timeout=300)
        assert res.rc == 0, said(res)
        status = run_portal(shell_user, "status", "--host", portal_server.host, "--json")
        assert status.rc == 0 and '"healthy": true' in status.stdout, said(status)
    finally:
        down = run_portal(shell_user, "down", "--host", portal_server.host, timeout=120)
    assert down.rc == 0, said(down)

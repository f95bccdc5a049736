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

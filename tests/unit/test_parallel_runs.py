"""The tests run in parallel (pytest-xdist) where each worker starts a test server of its own, and one at a
time where the workers would share one: an ssh:// server (one set of users), or under a debugger."""

from __future__ import annotations

import pytest

TEST = """
def test_one():
    pass

def test_two():
    pass
"""


def _run(pytester: pytest.Pytester, request: pytest.FixtureRequest, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_two=TEST)
    plugin = [] if request.config.pluginmanager.get_plugin("portal") is not None else [
        "-p", "portal_tasks.testing.plugin"]
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "-n", "2", *args, timeout=120)


def test_workers_run_the_tests_where_each_makes_a_server_of_its_own(pytester: pytest.Pytester,
                                                                   request: pytest.FixtureRequest) -> None:
    result = _run(pytester, request, "--portal-server", "netns")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["created: 2/2 workers"])


def test_on_an_ssh_server_the_tests_run_one_at_a_time_and_say_why(pytester: pytest.Pytester,
                                                                 request: pytest.FixtureRequest) -> None:
    result = _run(pytester, request, "--portal-server", "ssh://alice@nohost.invalid")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.no_fnmatch_line("*workers*")
    said = "portal: the test server ssh://alice@nohost.invalid has one set of users for every test"
    result.stdout.fnmatch_lines([f"*{said}: the tests run one at a time (-n ignored)*"])


def test_under_a_debugger_the_tests_run_in_this_process(pytester: pytest.Pytester,
                                                         request: pytest.FixtureRequest) -> None:
    result = _run(pytester, request, "--pdb")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*workers*")
    result.stdout.no_fnmatch_line("*incompatible*")

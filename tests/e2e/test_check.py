"""`portal check` against the real test server, as a user on their laptop would run it."""

import pytest

from portal_tasks.testing.flows import via_login_host

pytestmark = pytest.mark.e2e


def lines(result):
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_check_passes_for_a_ready_host_and_env(portal_server, alice, run_portal):
    env = str(portal_server.envs["a"])
    res = run_portal(alice, "check", "--host", portal_server.host, "--env", env)
    assert res.rc == 0, res.stdout + res.stderr
    text = res.stdout
    assert "FAIL" not in text
    assert f"as {alice.name}" in text and "tmux" in text and "dask.distributed" in text


def test_check_goes_through_the_login_node(portal_server, alice, run_portal):
    env = str(portal_server.envs["a"])
    res = run_portal(alice, "check", "--host", via_login_host(portal_server), "--env", env)
    assert res.rc == 0, res.stdout + res.stderr


def test_unknown_host_fails_fast_with_one_line(portal_server, alice, run_portal):
    res = run_portal(alice, "check", "--host", "no-such-host.invalid", timeout=30)
    assert res.rc == 1
    assert "Traceback" not in res.stdout + res.stderr
    failed = [line for line in lines(res) if "FAIL" in line or "portal:" in line]
    assert len(failed) == 1 and "no-such-host.invalid" in failed[0]


def test_missing_env_path_is_one_line_naming_it(portal_server, alice, run_portal):
    res = run_portal(alice, "check", "--host", portal_server.host, "--env", "/opt/does/not/exist")
    assert res.rc == 1
    assert "Traceback" not in res.stdout + res.stderr
    failed = [line for line in lines(res) if line.startswith("FAIL")]
    assert len(failed) == 1 and "/opt/does/not/exist" in failed[0]


def test_env_without_dask_fails_naming_what_is_missing(portal_server, alice, run_portal):
    res = run_portal(alice, "check", "--host", portal_server.host, "--env", str(portal_server.envs["bare"]))
    assert res.rc == 1
    failed = [line for line in lines(res) if line.startswith("FAIL")]
    assert any("dask.distributed" in line for line in failed)
    assert any("ipython" in line for line in failed)


def test_host_without_tmux_is_one_clear_line(portal_server, notmux, run_portal):
    res = run_portal(notmux, "check", "--host", portal_server.host)
    assert res.rc == 1
    failed = [line for line in lines(res) if line.startswith("FAIL")]
    assert len(failed) == 1 and "tmux" in failed[0] and portal_server.host in failed[0]

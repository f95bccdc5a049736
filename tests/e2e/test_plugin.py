"""The plugin never leaks: after an inner pytest run, its namespaces, users and processes are gone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks.runner import run, spawn
from portal_tasks.testing import netns
from portal_tasks.testing.flows import status, up
from portal_tasks.testing.machine import machine_lock
from portal_tasks.testing.procs import pids_of_uid, pids_with_env
from portal_tasks.testing.users import tagged_users
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

INNER = """
import json, os, pathlib, time

def test_inner(portal_server, alice):
    bob = portal_server.users["bob"]  # not the fixture: nothing resets bob, only the session teardown
    for user in (alice, bob):  # detached processes of the users, as portal leaves them
        res = user.ssh(portal_server.host, "tmux new-session -d -s t 'sleep 600'")
        assert res.ok, res
    assert bob.ssh(portal_server.host, "nohup setsid sleep 600 >/dev/null 2>&1 &").ok
    if "ted" in portal_server.lazy_roles and os.access("/usr/bin/tcsh", os.X_OK):  # a user made on first use
        ted = portal_server.user("ted")
        assert ted.ssh(portal_server.host, "tmux new-session -d -s t 'sleep 600'").ok
    pathlib.Path("run.json").write_text(json.dumps({
        "run": portal_server.run_id,
        "users": {u.name: u.uid for u in portal_server.users.values()},
        "laptops": [str(u.laptop) for u in portal_server.users.values()],
        "base": str(alice.home.parent.parent),
    }))
    if os.environ.get("INNER_MODE") == "wait":  # the outer test interrupts us here
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.1)
    assert os.environ.get("INNER_MODE") != "fail", "the inner test fails on purpose"
"""


@pytest.fixture
def needs_netns() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)


TINY = """
def test_tiny(portal_server):
    pass
"""


def test_server_none_skips_with_its_reason(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    pytester.makepyfile(test_tiny=TINY)
    result = pytester.runpytest_inprocess(*_plugin_args(request.config), "--portal-server", "none", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no portal test server (--portal-server none)*"])


def test_unknown_server_is_a_usage_error(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    pytester.makepyfile(test_tiny=TINY)
    result = pytester.runpytest_inprocess(*_plugin_args(request.config), "--portal-server", "bogus")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Unknown test server 'bogus'*netns, ssh://*docker, none*"])


ISOLATED = """
import os, pathlib, pytest

@pytest.mark.portal
def test_isolated():
    assert os.environ["HOME"] != os.environ["OUTER_HOME"]
    assert not [k for k in os.environ if k.startswith("DASK_")]
    assert "TMUX" not in os.environ and "BROWSER" not in os.environ
    assert pathlib.Path(os.environ["TMUX_TMPDIR"]).is_dir()

def test_not_marked_is_untouched():
    assert os.environ["DASK_SCHEDULER_ADDRESS"] == "tls://developer:8786"
"""


def test_marked_tests_do_not_see_the_developers_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                    request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("OUTER_HOME", os.environ.get("HOME", "/root"))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tls://developer:8786")
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setenv("BROWSER", "firefox")
    pytester.makepyfile(test_isolated=ISOLATED)
    result = pytester.runpytest_inprocess(*_plugin_args(request.config), "--portal-server", "none")
    result.assert_outcomes(passed=2)


def test_options_have_their_own_group(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    result = pytester.runpytest_inprocess(*_plugin_args(request.config), "--help")
    result.stdout.fnmatch_lines(["portal test server:", "*--portal-server=SERVER*", "*--portal-env=NAME=PATH*"])


def _plugin_args(config: pytest.Config) -> list[str]:
    """-p for the plugin when it is not installed as the `portal` entry point."""
    return [] if config.pluginmanager.get_plugin("portal") is not None else ["-p", "portal_tasks.testing.plugin"]


def _inner_env(mode: str) -> dict[str, str]:
    package_parent = str(Path(netns.__file__).resolve().parents[2])
    return {"INNER_MODE": mode, "PYTHONPATH": package_parent, "PORTAL_TEST_SERVER": "netns"}


def assert_nothing_left(info: dict) -> None:
    run_id = info["run"]
    assert not [ns for ns in netns.netns_list() if run_id in ns]
    names = [name for name, _, _ in tagged_users()]
    assert not set(info["users"]) & set(names)
    for name, uid in info["users"].items():
        # killed and waited for by the teardown; one still ending on a loaded machine gets a bounded moment
        with contextlib.suppress(Exception):
            retry_until(lambda: not pids_of_uid(uid), 10.0, 0.2)  # noqa: B023 - called in this iteration
        assert not pids_of_uid(uid), f"processes of {name} (uid {uid}) left: {pids_of_uid(uid)}"
    for laptop in info["laptops"]:
        assert not pids_with_env(netns.LAPTOP_MARK, laptop)
    assert not Path(info["base"]).exists()
    assert run_id.split("-")[1] not in run(["ip", "-o", "link"], timeout=10).stdout


@pytest.mark.usefixtures("needs_netns")
@pytest.mark.parametrize("mode", ["pass", "fail"])
def test_inner_run_leaves_nothing_behind(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                         request: pytest.FixtureRequest, mode: str) -> None:
    for key, value in _inner_env(mode).items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(*_plugin_args(request.config), "-q", "-p", "no:cacheprovider",
                                           timeout=180)
    outcome = {"pass": {"passed": 1}, "fail": {"failed": 1}}[mode]
    result.assert_outcomes(**outcome)
    info = json.loads((pytester.path / "run.json").read_text())
    if os.access("/usr/bin/tcsh", os.X_OK):  # the user made on first use is gone too
        assert any(name.startswith("portal-ted-") for name in info["users"]), info["users"]
    assert_nothing_left(info)


def _interrupted_inner(pytester: pytest.Pytester, config: pytest.Config, stop) -> dict:  # type: ignore[no-untyped-def]
    """Run the inner test in "wait" mode, call stop(proc) once it runs, return its run.json."""
    pytester.makepyfile(test_inner=INNER)
    # Started as a person would: SIGINT not ignored, even when this pytest runs as a background job.
    restore_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'pytest', *sys.argv[1:]])")
    argv = [sys.executable, "-c", restore_sigint, *_plugin_args(config), "-q", "-p", "no:cacheprovider", "-s",
            "-o", "faulthandler_timeout=60", str(pytester.path)]  # a hang in teardown shows its traceback
    proc = spawn(argv, env=_inner_env("wait"))
    info_file = pytester.path / "run.json"
    try:
        retry_until(lambda: info_file.exists() and info_file.read_text().endswith("}"), 120, 0.1,
                    what="the inner test to start")
        stop(proc)
        proc.communicate(timeout=120)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=30)
        print("inner pytest stdout:", out.decode(errors="replace"), "stderr:", err.decode(errors="replace"), sep="\n")
        raise
    return json.loads(info_file.read_text())


@pytest.mark.usefixtures("needs_netns")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_nothing_behind(pytester: pytest.Pytester, request: pytest.FixtureRequest,
                                               sig: signal.Signals) -> None:
    info = _interrupted_inner(pytester, request.config, lambda proc: proc.send_signal(sig))
    assert_nothing_left(info)


@pytest.mark.usefixtures("needs_netns")
def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(pytester: pytest.Pytester,
                                                            request: pytest.FixtureRequest) -> None:
    with contextlib.ExitStack() as held:

        def kill(proc: subprocess.Popen[bytes]) -> None:
            held.enter_context(machine_lock())  # from the kill to this sweep no other run's server sweeps
            proc.kill()  # no teardown at all

        info = _interrupted_inner(pytester, request.config, kill)
        assert [ns for ns in netns.netns_list() if info["run"] in ns], "a killed run leaves its namespaces"
        cleaned = netns.clean_leftovers(Path(info["base"]).parent)
    assert any(info["run"] in c for c in cleaned)
    assert_nothing_left(info)


SSH_INNER = """
import pytest

def test_alice_is_the_login(portal_server, alice, testinfra_host):
    assert portal_server.backend == "ssh"
    assert alice.ssh(portal_server.host, "id -un").stdout.strip() == alice.name
    assert testinfra_host(alice).user().name == alice.name
    assert "a" in portal_server.envs

def test_bob_skips(bob):
    pass
"""


def test_ssh_backend_uses_an_existing_server_and_the_users_ssh_config(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, portal_server, alice
) -> None:
    if portal_server.backend != "netns":
        pytest.skip("needs the netns server as the existing server")
    (pytester.path / "home" / ".ssh").mkdir(parents=True)
    (pytester.path / "home" / ".ssh" / "config").write_text(alice.ssh_config.read_text())
    monkeypatch.setenv("HOME", str(pytester.path / "home"))
    pytester.makepyfile(test_ssh_inner=SSH_INNER)
    result = pytester.runpytest_subprocess(
        *_plugin_args(request.config), "-p", "no:cacheprovider", "-rs",
        "--portal-server", f"ssh://{alice.name}@{portal_server.host}", "--portal-env", f"a={portal_server.envs['a']}",
        timeout=120,
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*the ssh test server has no user 'bob'*"])


REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "test_my_server.py"  # the README's "check your own server" file
#: A representative part of the e2e suite: check, bad input, --explain, cluster, up, the server itself.
ON_A_REAL_SERVER = ["test_check.py", "test_bad_input.py", "test_up_explain.py", "test_cluster.py", "test_up.py",
                    "test_server.py"]


def test_example_and_suite_pass_or_skip_with_a_reason_on_a_used_server_named_only_by_ssh_config(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, portal_server,
    alice, run_portal,
) -> None:
    """`--portal-server ssh://HOST` with no user in it, on a second server where the user already runs their
    setup, as a person checking their own server would: the user comes from their ssh config, nothing fails,
    every skip says why, and the user's running cluster is the same process afterwards."""
    if portal_server.backend != "netns" or portal_server.second_host is None:
        pytest.skip("needs the netns server (its second host) as the existing server")
    env = str(portal_server.envs["a"])
    host = portal_server.second_host
    up(run_portal, alice, host, env)  # what the user already runs there
    before = status(run_portal, alice, host)["clusters"]
    ssh_dir = pytester.path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True)
    (ssh_dir / "known_hosts").write_text((alice.laptop / ".ssh" / "known_hosts").read_text())
    (ssh_dir / "config").write_text(  # the only place naming the user
        f"Host shared\n    HostName {portal_server.second_address}\n    User {alice.name}\n"
        f"    IdentityFile {alice.key}\n    IdentitiesOnly yes\n    UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
        f"    BatchMode yes\n    ConnectTimeout 10\n")
    monkeypatch.setenv("HOME", str(ssh_dir.parent))
    monkeypatch.delenv("PORTAL_TEST_SERVER", raising=False)
    result = pytester.runpytest_subprocess(
        *_plugin_args(request.config), "-p", "no:cacheprovider", "-rs", "--portal-server", "ssh://shared",
        "--portal-env", f"a={env}", "--portal-env", f"bare={portal_server.envs['bare']}",
        str(EXAMPLE), *(str(REPO / "tests" / "e2e" / name) for name in ON_A_REAL_SERVER),
        timeout=900,
    )
    outcomes = result.parseoutcomes()
    assert not outcomes.get("failed") and not outcomes.get("errors"), result.stdout.str()[-6000:]
    assert outcomes.get("passed", 0) >= 20, outcomes
    skips = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    vague = [line for line in skips if line.rstrip().endswith(("unconditional skip", ":"))]
    assert not vague, vague
    result.stdout.fnmatch_lines(["SKIPPED*test_my_server.py*the ssh test server has no user 'bob'*"])
    result.stdout.fnmatch_lines(["SKIPPED*the ssh test server has no login node"])
    after = status(run_portal, alice, host)["clusters"]
    assert [(c["pid"], c["healthy"]) for c in after] == [(c["pid"], True) for c in before], (before, after)

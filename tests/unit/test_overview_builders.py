"""`status --all` without a network: the known hosts, the report builder, the text, the --wait value."""

from __future__ import annotations

import pytest

from portal_tasks import state
from portal_tasks.errors import UsageError
from portal_tasks.commands import overview

SNAP = {
    "facts": {"user": "alice", "uid": 1001},
    "windows": {"env-a": {"command": "bash", "marker": "env:/e/a"}, "cluster-a": {"command": "dask", "marker": ""}},
    "clusters": [{
        "env": "a", "key": "a", "address": "tls://127.0.0.1:20100", "scheduler_port": 20100, "dashboard_port": 20101,
        "workers": 2, "workers_running": 2, "threads": 2, "memory_budget": 2 << 30, "memory_limit": 1 << 30,
        "scheduler_pid": 10, "workers_pid": 11, "healthy": True,
    }],
    "jupyters": [{"env": "a", "env_key": "a", "port": 20102, "socket": None, "healthy": False, "dir": "/h/.portal/j"}],
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_hosts_are_recorded_and_hosts_with_only_forwards_count_too(cache):
    assert state.load_hosts() == {}
    state.record_host("matagorda", "/c/ssh_config")
    state.save_forwards("old-host", {})
    state.record_host("login", None)
    hosts = state.load_hosts()
    assert list(hosts) == ["login", "matagorda", "old-host"]
    assert hosts["matagorda"]["ssh_config"] == "/c/ssh_config" and hosts["old-host"] == {}


def test_the_recorded_ssh_config_is_used_and_ssh_gives_up_within_the_wait(cache):
    state.record_host("matagorda", "/c/ssh_config")
    settings = overview.host_settings(None, "matagorda", 2.0)
    assert settings.ssh_config == "/c/ssh_config" and settings.connect_timeout == 2
    assert overview.host_settings(None, "matagorda", 0.3, ssh_config="/other").ssh_config == "/other"
    assert overview.host_settings(None, "matagorda", 0.3).connect_timeout == 1  # OpenSSH counts whole seconds


def test_host_report_has_the_shape_of_status_without_private_dirs():
    rows = [{"service": "dashboard-a", "local_port": 20101, "remote": "127.0.0.1:20101",
             "url": "http://localhost:20101/status", "answers": True}]
    report = overview.host_report("matagorda", "portal", SNAP, rows)
    assert report["reachable"] and report["user"] == "alice"
    assert [w["name"] for w in report["sessions"][0]["windows"]] == ["env-a", "cluster-a"]
    assert report["clusters"][0]["dashboard_port"] == 20101 and report["clusters"][0]["pid"] == 10
    assert "dir" not in report["jupyter"][0]
    text = overview.render([report, overview.unreachable("matagorda2", "no answer within 2s")])
    assert text.splitlines()[0] == "matagorda: user alice (uid 1001)"
    assert "  cluster a: tls://127.0.0.1:20100 dashboard :20101 workers 2/2" in text
    assert "  jupyter a: 127.0.0.1:20102 NOT healthy" in text
    assert "  forward dashboard-a: http://localhost:20101/status -> 127.0.0.1:20101 answers" in text
    assert text.splitlines()[-1] == "matagorda2: unreachable (no answer within 2s)"


def test_no_session_and_nothing_known():
    report = overview.host_report("h", "portal", {"facts": {}, "windows": None}, [])
    assert report["sessions"] == [] and "  no tmux session" in overview.render([report])
    assert overview.render([]).startswith("no hosts yet")


@pytest.mark.parametrize(("wait", "host", "message"), [
    ("x", None, "--wait 'x' is not a number of seconds"),
    ("0", None, "--wait 0 is out of range"),
    (None, "matagorda", "--all asks every host you used; it does not take --host"),
])
def test_bad_wait_or_host_is_one_line(wait, host, message):
    with pytest.raises(UsageError, match=message):
        overview.check_wait(wait, host)
    assert overview.check_wait(None) == overview.DEFAULT_WAIT and overview.check_wait("0.5") == 0.5


def test_unknown_host_answers_as_unreachable_within_the_wait(cache, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host nowhere\n    HostName 127.0.0.1\n    Port 1\n")
    reports = overview.ask_all(None, ["nowhere"], wait=1.0, ssh_config=str(config))
    assert [r["reachable"] for r in reports] == [False]
    assert "Connection refused" in reports[0]["error"] or "no answer" in reports[0]["error"]


def test_a_dashboard_forward_is_probed_at_health_a_jupyter_one_at_its_url():
    from portal_tasks.services import probe_url

    assert probe_url("dashboard-a", "http://localhost:20101/status") == "http://localhost:20101/health"
    assert probe_url("jupyter-a", "http://localhost:20102/lab?token=t") == "http://localhost:20102/lab?token=t"

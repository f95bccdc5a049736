"""Bad input caught before anything connects: each value is refused in one line that names it.

(The same values against the real test server, with a running cluster that must survive them, are in
tests/e2e/test_bad_input.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import plan
from portal_tasks.config import resolve, unreadable_variable
from portal_tasks.errors import ConfigError, UsageError

GiB = 1024**3


@pytest.mark.parametrize("settings, needle", [
    ({"port_base": 80}, "port_base 80"),
    ({"port_base": 70000}, "port_base 70000"),
    ({"port_base": "lots"}, "port_base 'lots'"),
    ({"block_size": 0}, "block_size 0"),
    ({"workers": -1}, "workers -1"),  # 0 is a setting of its own (parts/cluster.validate)
    ({"threads": -3}, "threads -3"),
])
def test_config_values_out_of_range_are_refused_naming_them(settings, needle):
    with pytest.raises(ConfigError) as info:
        resolve(settings, "matagorda")
    assert needle in info.value.line() and "\n" not in info.value.line()


@pytest.mark.parametrize("name", ["x$(touch /tmp/pwned)", "a;touch /tmp/pwned", "`id`", "a b", "", "a.b", "a:b",
                                  "'quoted'", "a\nb", "a" * 65, "ünï"])
def test_session_names_outside_letters_digits_dash_underscore_are_refused(name):
    with pytest.raises(ConfigError) as info:
        resolve({"session": name}, "matagorda")
    assert repr(name) in info.value.line() and "session name" in info.value.line()


@pytest.mark.parametrize("name", ["portal", "my-work_2", "A" * 64])
def test_plain_session_names_are_kept(name):
    assert resolve({"session": name}, "matagorda").session == name


def test_a_portal_variable_of_the_wrong_type_is_named():
    assert "PORTAL_PORT_BASE='lots'" in (unreadable_variable({"PORTAL_PORT_BASE": "lots"}) or "")
    assert unreadable_variable({"PORTAL_PORT_BASE": "21000", "PORTAL_SESSION": "x"}) is None


@pytest.mark.parametrize("name, value", [("workers", "0"), ("workers", "-3"), ("workers", "two"), ("threads", "1.5")])
def test_counts_are_whole_and_positive(name, value):
    with pytest.raises(UsageError) as info:
        plan.parse_count(name, value, 1, 1024)
    assert f"--{name}" in info.value.line() and value.lstrip("-") in info.value.line()


@pytest.mark.parametrize("value", ["lots", "-4GiB", "0%", "150%", "1KiB", ""])
def test_memory_that_is_no_budget_is_refused(value):
    with pytest.raises(UsageError) as info:
        plan.parse_memory(value)
    assert f"--memory {value!r}" in info.value.line()


def test_memory_larger_than_the_host_is_refused():
    with pytest.raises(UsageError) as info:
        plan.memory_budget("1000TiB", 8 * GiB)
    assert "'1000TiB'" in info.value.line() and "8 GiB" in info.value.line()


# -- through the CLI: one line, exit 1, no traceback, and no connection attempted ---------------


@pytest.fixture
def laptop(tmp_path: Path, laptop_cache: Path) -> dict[str, str]:
    """A laptop whose only host, `far`, points at a closed loopback port: reaching it would fail loudly."""
    config = tmp_path / "ssh_config"
    config.write_text("Host far\n    HostName 127.0.0.1\n    Port 9\n    BatchMode yes\n    ConnectTimeout 2\n")
    home = tmp_path / "home"
    home.mkdir()
    # a short runtime dir (conftest's), or portal's control sockets would go to a /tmp dir outliving the test
    # every ssh portal starts goes through this one, which notes that it ran (then is the real ssh)
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "ssh").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/ssh-ran\nexec /usr/bin/ssh "$@"\n')
    (spy / "ssh").chmod(0o755)
    return {"HOME": str(home), "PORTAL_SSH_CONFIG": str(config), "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"],
            "PATH": f"{spy}:/usr/bin:/bin"}


def portal(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portal_tasks", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


@pytest.mark.parametrize("args, extra, yaml, needle", [
    (["up", "--memory", "lots"], {}, None, "lots"),
    (["up", "--memory", "-4GiB"], {}, None, "-4GiB"),
    (["up", "--workers", "0"], {}, None, "--workers 0"),
    (["up"], {}, None, "no env given"),
    (["cluster", "--threads", "-3"], {}, None, "--threads -3"),
    (["status"], {"PORTAL_PORT_BASE": "80"}, None, "port_base 80"),
    (["status"], {"PORTAL_PORT_BASE": "lots"}, None, "PORTAL_PORT_BASE='lots'"),
    (["status"], {}, "port_base: 70000\n", "port_base 70000"),
    (["status"], {}, "port_base: [20000\n", "portal.yaml"),
    (["status"], {"PORTAL_SESSION": "x$(touch /tmp/pwned)"}, None, "x$(touch /tmp/pwned)"),
    (["tmux", "--session", "a;b"], {}, None, "'a;b'"),
    (["up", "--explain"], {}, "session: '`id`'\n", "`id`"),
], ids=["memory-garbage", "memory-negative", "workers-0", "no-env", "threads-negative", "port-base-80", "port-base-garbage",
        "port-base-yaml", "yaml-malformed", "session-env", "session-option", "session-yaml-explain"])
def test_cli_refuses_in_one_line_before_connecting(tmp_path, laptop, args, extra, yaml, needle):
    if yaml is not None:
        (tmp_path / "portal.yaml").write_text(yaml)
    res = portal(*args, "--host", "far", env={**laptop, **extra}, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("portal:") and needle in lines[0], res.stderr
    assert "connect" not in res.stderr  # refused before any SSH
    assert not (tmp_path / "ssh-ran").exists()  # not even in the background (up's early login)
    assert not (tmp_path / "portal").exists() or not any((tmp_path / "portal").iterdir())


@pytest.mark.parametrize("settings, needle", [
    ({"block_size": 29}, "block_size 29 cannot hold one env's 30 ports"),
    ({"port_base": 60000}, "ends at 69999"),
    ({"port_base": 65000, "slots": 1, "block_size": 600}, "ends at 65599"),
    ({"connect_timeout": "soon"}, "connect_timeout 'soon'"),
    ({"connect_timeout": 0}, "connect_timeout 0"),
    ({"connect_timeout": float("nan")}, "connect_timeout nan"),
    ({"claims_dir": "relative/dir"}, "claims_dir 'relative/dir'"),
])
def test_port_plan_timeouts_and_claims_dir_are_checked_in_one_line(settings, needle):
    with pytest.raises(ConfigError) as info:
        resolve(settings, "matagorda")
    assert needle in info.value.line() and "\n" not in info.value.line() and info.value.hint


def test_a_plan_that_fits_is_kept_whole():
    s = resolve({"port_base": 60000, "slots": 55}, "matagorda")
    assert s.port_base + s.slots * s.block_size - 1 <= 65535 and s.slots == 55
    assert resolve({"connect_timeout": "2.5"}, "matagorda").connect_timeout == 2.5

"""Names are data, never code: env names and paths and hosts a shell would read as code are refused in one
line by every command, before anything runs (here: on localhost, with a marker file that must not appear).

The same against the real test server: tests/e2e/test_bad_input.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from portal_tasks import names
from portal_tasks.config import resolve
from portal_tasks.errors import UsageError

#: one per run, the same in every pytest-xdist worker (they must collect the same test ids)
MARK = f"/tmp/portal-mark-{os.environ.get('PYTEST_XDIST_TESTRUNUID', uuid.uuid4().hex)[:8]}"
EVIL_ENVS = [f"a;touch {MARK}", f"$(touch {MARK})", f"`touch {MARK}`", f"a|touch {MARK}", f"a&touch {MARK}",
             f"a\ntouch {MARK}", "a b", "a*", "'a'", '"a"', "a\\b", "-a", f"~/envs/$(touch {MARK})", "~/my envs/a",
             "/opt/a;b", "a!b"]
EVIL_HOSTS = [f"m;touch {MARK}", f"$(touch {MARK})", f"`touch {MARK}`", "m|x", "m&x", "m'x", 'm"x', "m*", "m\nx"]


@pytest.mark.parametrize("spec", ["a", "base", "py3.11", "my-env_2", "a+b", "~/envs/a", "/opt/x", "./venv",
                                  "~/.conda/envs/a", "/scratch/u@x/env,1"])
def test_env_names_and_paths_are_kept(spec):
    assert names.check_env(spec) == spec


@pytest.mark.parametrize("spec", EVIL_ENVS)
def test_env_with_shell_characters_is_one_line_naming_it(spec):
    with pytest.raises(UsageError) as info:
        names.check_env(spec)
    line = info.value.line()
    assert repr(spec) in line and "\n" not in line and "never sends it" in line


@pytest.mark.parametrize("host", ["matagorda", "matagorda-via-login", "alice@m.example.org", "10.0.0.1", "::1",
                                  "fe80::1%eth0", "localhost"])
def test_hosts_are_kept(host):
    assert resolve(None, host).host == host


@pytest.mark.parametrize("host", EVIL_HOSTS)
def test_host_with_shell_characters_is_refused_before_any_connection(host):
    with pytest.raises(UsageError) as info:
        resolve(None, host)
    assert repr(host) in info.value.line() and "\n" not in info.value.line()


def portal(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "portal_tasks", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=home)


@pytest.mark.parametrize("command", ["check", "up", "env", "down"])
@pytest.mark.parametrize("spec", [f"a;touch {MARK}", f"$(touch {MARK})", f"`touch {MARK}`"])
def test_every_command_refuses_an_evil_env_on_localhost_and_runs_nothing(command, spec, tmp_path):
    extra = ["--no-attach", "--no-browser"] if command == "up" else []
    res = portal(command, "--host", "localhost", "--env", spec, *extra, home=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert len(lines) == 1 and repr(spec) in lines[0], res.stderr
    assert not Path(MARK).exists()
    assert not (tmp_path / ".portal").exists(), "the helper ran"


@pytest.mark.parametrize("command", ["check", "up"])
@pytest.mark.parametrize("module", [f"python;touch {MARK}", f"$(touch {MARK})", f"`touch {MARK}`", "a b"])
def test_an_evil_module_name_is_refused_on_localhost_and_runs_nothing(command, module, tmp_path):
    extra = ["--no-attach", "--no-browser"] if command == "up" else []
    res = portal(command, "--host", "localhost", "--module", module, *extra, home=tmp_path)
    lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert res.returncode == 1 and len(lines) == 1 and repr(module) in lines[0], res.stdout + res.stderr
    assert not Path(MARK).exists() and not (tmp_path / ".portal").exists()


def test_up_refuses_an_evil_host_and_runs_nothing(tmp_path):
    res = portal("up", "--host", f"m;touch {MARK}", "--env", "a", "--no-attach", "--no-browser", home=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert [line for line in res.stderr.splitlines() if line.startswith("portal:")] == [
        f"portal: host 'm;touch {MARK}' holds ';', which a shell would read; portal never connects to it. "
        "Give a host name or an alias from your ssh config."]
    assert not Path(MARK).exists()

"""The CLI as a user meets it: task names, composition in a user's tasks.py, one-line errors."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from portal_tasks.main import program

TASKS = ["up", "down", "status", "ports", "check", "tmux", "env", "ipython", "jupyter", "cluster", "forward", "browse"]
REPO = Path(__file__).resolve().parents[2]


def portal(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "portal_tasks", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def invoke(*args, cwd):
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_portal_lists_every_task_of_the_contract(tmp_path):
    out = portal("--list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[2:] if line.strip()}
    assert set(TASKS) <= listed


def test_inv_lists_the_same_tasks_in_the_repo():
    out = invoke("--list", cwd=REPO)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[2:] if line.strip()}
    assert set(TASKS) <= listed


def test_a_users_tasks_py_composes_the_collection(tmp_path):
    (tmp_path / "tasks.py").write_text(textwrap.dedent("""
        from invoke import Collection, task
        import portal_tasks
        from portal_tasks.tasks import up

        @task
        def mine(c):
            print("mine ran")

        ns = Collection(mine)
        ns.add_collection(portal_tasks.ns, "portal")
        ns.add_task(up, "morning")
    """))
    out = invoke("--list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "portal.up" in out.stdout and "portal.check" in out.stdout and "morning" in out.stdout
    help_out = invoke("portal.cluster", "--help", cwd=tmp_path)
    assert "--memory" in help_out.stdout and "--workers" in help_out.stdout
    assert invoke("mine", cwd=tmp_path).stdout.strip() == "mine ran"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_help_and_the_common_options(task):
    out = portal(task, "--help")
    assert out.returncode == 0 and "--host" in out.stdout
    if task not in ("status", "ports", "check"):
        assert "--explain" in out.stdout


def test_unknown_host_is_one_line_naming_the_host(tmp_path):
    out = portal("check", "--host", "no-such-host.invalid", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert "no-such-host.invalid" in out.stdout + out.stderr


def test_malformed_portal_yaml_is_one_line(tmp_path):
    (tmp_path / "portal.yaml").write_text("port_base: [not, a, number\n")
    out = portal("ports", cwd=tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "portal.yaml" in out.stderr


def test_program_object_runs_without_exiting():
    with pytest.raises(SystemExit) as info:
        program.run(["portal", "--version"], exit=True)
    assert info.value.code in (0, None)


def test_up_with_a_missing_env_starts_nothing(tmp_path):
    import os

    env = {**os.environ, "HOME": str(tmp_path), "TMUX_TMPDIR": str(tmp_path)}
    out = portal("up", "--env", str(tmp_path / "no-env"), "--no-attach", "--no-browser", cwd=tmp_path, env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("portal:")] == [
        f"portal: localhost: env {tmp_path / 'no-env'} not found: no such directory. "
        f"Create it (python3 -m venv {tmp_path / 'no-env'}) or pass another --env."]
    assert not list(tmp_path.glob("tmux-*/default")), "a tmux server was started"

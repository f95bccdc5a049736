"""Activation lines and env keys, as data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import envs
from portal_tasks.errors import EnvError, UsageError


SHELLS = ["bash", "zsh", "fish", "csh", "posix"]


def test_named_env_uses_the_managers_own_hook_for_each_shell() -> None:
    conda = "/opt/conda/bin/conda"
    assert envs.activation_lines("named", "a", conda, "/bin/bash") == [
        'eval "$(/opt/conda/bin/conda shell.bash hook)"', "conda activate a"]
    assert envs.activation_lines("named", "a", conda, "-zsh")[0] == 'eval "$(/opt/conda/bin/conda shell.zsh hook)"'
    assert envs.activation_lines("named", "a", conda, "/usr/bin/fish")[0] == "/opt/conda/bin/conda shell.fish hook | source"
    assert envs.activation_lines("named", "a", conda, "/bin/tcsh")[0] == 'eval "`/opt/conda/bin/conda shell.csh hook`"'
    assert envs.activation_lines("named", "a", conda, "/bin/dash")[0] == 'eval "$(/opt/conda/bin/conda shell.posix hook)"'
    micromamba = envs.activation_lines("named", "a", "~/.local/bin/micromamba", "/usr/bin/fish")
    assert micromamba == ["~/.local/bin/micromamba shell hook --shell fish | source", "micromamba activate a"]
    assert envs.activation_lines("named", "base", "mamba", "bash") == ['eval "$(mamba shell hook --shell bash)"',
                                                                       "mamba activate base"]


@pytest.mark.parametrize("shell,script", [("bash", "source /opt/envs/a/bin/activate"),
                                          ("zsh", "source /opt/envs/a/bin/activate"),
                                          ("fish", "source /opt/envs/a/bin/activate.fish"),
                                          ("tcsh", "source /opt/envs/a/bin/activate.csh"),
                                          ("sh", ". /opt/envs/a/bin/activate")])
def test_venv_is_sourced_with_the_script_for_the_shell(shell: str, script: str) -> None:
    assert envs.activation_lines("venv", "/opt/envs/a/", None, shell) == [script]


def test_conda_prefix_is_activated_by_path() -> None:
    assert envs.activation_lines("conda-prefix", "/opt/conda/envs/x", "micromamba", "bash") == [
        'eval "$(micromamba shell hook --shell bash)"', "micromamba activate /opt/conda/envs/x"]


def test_paths_are_quoted_but_home_still_expands() -> None:
    assert envs.activation_lines("venv", "~/my env") == ["source ~/'my env'/bin/activate"]
    assert envs.activation_lines("venv", "/x/$(rm -rf ~)") == ["source '/x/$(rm -rf ~)'/bin/activate"]
    assert envs.activation_lines("named", "a;b", "conda")[-1] == "conda activate 'a;b'"


def test_named_env_without_a_manager_is_a_clear_error() -> None:
    with pytest.raises(EnvError, match="conda, mamba or micromamba"):
        envs.activation_lines("named", "a", None)


def test_shell_family() -> None:
    assert [envs.shell_family(s) for s in ("/bin/bash", "-zsh", "/usr/bin/fish", "/bin/tcsh", "csh", "/bin/dash",
                                           "/usr/bin/ksh93", None, "/usr/bin/xonsh")] == \
        ["bash", "zsh", "fish", "csh", "csh", "posix", "posix", "bash", "posix"]


def test_launch_runs_the_command_only_after_activation() -> None:
    env = envs.Env(spec="a", kind="named", location="a", manager="/c/bin/conda", shell="/bin/tcsh")
    assert env.launch("ipython") == ['eval "`/c/bin/conda shell.csh hook`"', "conda activate a && ipython"]
    assert envs.chained([], "x") == ["x"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("envs") / "my env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return str(path)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "tcsh", "csh", "dash"])
def test_venv_lines_activate_for_real_in_each_shell(shell: str, venv: str) -> None:
    """The lines typed into a window, run by that shell: the env's python comes first on the PATH after them."""
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed here (apt-get install {shell})")
    lines = envs.Env(spec=venv, kind="venv", location=venv, shell=exe).launch("python -c 'import sys; print(sys.prefix)'")
    flags = {"zsh": ["-f"], "tcsh": ["-f"], "csh": ["-f"], "fish": ["--no-config"]}.get(shell, [])
    out = subprocess.run([exe, *flags], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": os.path.dirname(venv)})
    assert out.stdout.strip().splitlines()[-1:] == [venv], (shell, lines, out.stdout, out.stderr)


def test_unknown_kind() -> None:
    with pytest.raises(UsageError, match="unknown env kind 'pip'"):
        envs.get_env_kind("pip")


def test_is_path() -> None:
    assert not envs.is_path("a")
    assert envs.is_path("/opt/a") and envs.is_path("~/a") and envs.is_path("./venv")


def test_env_key_is_tmux_safe_and_tells_paths_apart() -> None:
    assert envs.env_key("a") == "a"
    assert envs.env_key("my.env:x") == "my-env-x"
    one, two = envs.env_key("/p/one/.venv"), envs.env_key("/p/two/.venv")
    assert one.startswith("one-") and two.startswith("two-") and one != two
    assert envs.env_key("/opt/envs/a") == envs.env_key("/opt/envs/a/")
    for key in (one, two, envs.env_key("/"), envs.env_key("~")):
        assert key and "." not in key and ":" not in key


def test_guess_env() -> None:
    assert envs.guess_env("a", "conda").activation() == ['eval "$(conda shell.bash hook)"', "conda activate a"]
    assert envs.guess_env("/v", None, "/usr/bin/fish").activation() == ["source /v/bin/activate.fish"]


def test_dashboard_problem_names_the_bokeh_wanted_the_one_found_and_the_install_command():
    from portal_tasks.envs import dashboard_problem

    assert dashboard_problem("a", None) is None
    assert dashboard_problem("a", {"need": "bokeh>=3.1.0", "have": "3.4.0", "ok": True}) is None
    missing = dashboard_problem("a", {"need": "bokeh>=3.1.0", "have": None, "ok": False})
    assert missing == ("the Dask dashboard needs bokeh>=3.1.0 in env 'a' (it has no bokeh); its page would only "
                       "say so. Install it: pip install 'bokeh>=3.1.0' (or conda install 'bokeh>=3.1.0').")
    old = dashboard_problem("/e/a", {"need": "bokeh>=3.1.0", "have": "2.4.3", "ok": False})
    assert old is not None and "(it has bokeh 2.4.3)" in old


@pytest.mark.parametrize("shell", ["bash", "fish", "tcsh"])
def test_jupyters_config_path_goes_first_in_every_shell(shell: str, tmp_path: Path) -> None:
    """The JupyterLab line with portal's config dir, run by each shell (with `env` standing in for jupyter)."""
    from portal_tasks.parts.jupyter import jupyter_command

    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed here (apt-get install {shell})")
    line = jupyter_command(8888, config_dir="/p/config", shell=exe).split(" jupyter lab ")[0] + " env"
    flags = {"tcsh": ["-f"], "fish": ["--no-config"]}.get(shell, [])
    for before, expected in ((None, "/p/config"), ("/mine", "/p/config:/mine")):
        environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **({"JUPYTER_CONFIG_PATH": before} if before else {})}
        out = subprocess.run([exe, *flags], input=line + "\n", capture_output=True, text=True, timeout=60, env=environ)
        assert f"JUPYTER_CONFIG_PATH={expected}" in out.stdout.splitlines(), (shell, line, out.stdout, out.stderr)

"""Activation lines and env keys, as data."""

from __future__ import annotations

import pytest

from portal_tasks import envs
from portal_tasks.errors import EnvError, UsageError


@pytest.mark.parametrize("manager", ["conda", "mamba", "micromamba"])
def test_named_env_uses_the_manager(manager: str) -> None:
    assert envs.activation_line("named", "a", manager) == f"{manager} activate a"


def test_venv_is_sourced() -> None:
    assert envs.activation_line("venv", "/opt/envs/a") == "source /opt/envs/a/bin/activate"
    assert envs.activation_line("venv", "/opt/envs/a/") == "source /opt/envs/a/bin/activate"


def test_conda_prefix_is_activated_by_path() -> None:
    assert envs.activation_line("conda-prefix", "/opt/conda/envs/x", "micromamba") == "micromamba activate /opt/conda/envs/x"


def test_paths_are_quoted_but_home_still_expands() -> None:
    assert envs.activation_line("venv", "~/my env") == "source ~/'my env'/bin/activate"
    assert envs.activation_line("venv", "/x/$(rm -rf ~)") == "source '/x/$(rm -rf ~)'/bin/activate"
    assert envs.activation_line("named", "a;b", "conda") == "conda activate 'a;b'"


def test_named_env_without_a_manager_is_a_clear_error() -> None:
    with pytest.raises(EnvError, match="conda, mamba or micromamba"):
        envs.activation_line("named", "a", None)


def test_unknown_kind() -> None:
    with pytest.raises(UsageError, match="unknown env kind 'pip'"):
        envs.get_env_kind("pip")


def test_pick_manager_prefers_config_then_micromamba_mamba_conda() -> None:
    assert envs.pick_manager("conda", {"micromamba": "/bin/micromamba"}) == "conda"
    assert envs.pick_manager(None, {"micromamba": None, "mamba": "/m", "conda": "/c"}) == "mamba"
    assert envs.pick_manager(None, {"micromamba": None, "mamba": None, "conda": None}) is None


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
    assert envs.guess_env("a", "conda").activation() == "conda activate a"
    assert envs.guess_env("/v", None).activation() == "source /v/bin/activate"


def test_dashboard_problem_names_the_bokeh_wanted_the_one_found_and_the_install_command():
    from portal_tasks.envs import dashboard_problem

    assert dashboard_problem("a", None) is None
    assert dashboard_problem("a", {"need": "bokeh>=3.1.0", "have": "3.4.0", "ok": True}) is None
    missing = dashboard_problem("a", {"need": "bokeh>=3.1.0", "have": None, "ok": False})
    assert missing == ("the Dask dashboard needs bokeh>=3.1.0 in env 'a' (it has no bokeh); its page would only "
                       "say so. Install it: pip install 'bokeh>=3.1.0' (or conda install 'bokeh>=3.1.0').")
    old = dashboard_problem("/e/a", {"need": "bokeh>=3.1.0", "have": "2.4.3", "ok": False})
    assert old is not None and "(it has bokeh 2.4.3)" in old

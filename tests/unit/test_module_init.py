"""A fish window on a server whose module system is set up for sh alone (Debian's Lmod): the host names the
module system's fish setup, and the window reads it before `module load` (envcheck.module_init, envs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_tasks import envs
from portal_tasks.remote import envcheck


@pytest.fixture
def lmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "init").mkdir()
    for name in ("fish", "profile.fish", "bash", "tcsh"):
        (tmp_path / "init" / name).write_text("# the module system's init\n")
    monkeypatch.setenv("MODULESHOME", str(tmp_path))
    return tmp_path


def test_a_fish_window_reads_the_module_system_s_fish_setup(lmod: Path) -> None:
    assert envcheck.module_init("/usr/bin/fish", ["python/3.11"]) == str(lmod / "init" / "profile.fish")
    (lmod / "init" / "profile.fish").unlink()  # Environment Modules: its init/fish alone
    assert envcheck.module_init("/usr/bin/fish", ["python/3.11"]) == str(lmod / "init" / "fish")


@pytest.mark.parametrize("shell,loaded", [("/bin/bash", ["python/3.11"]), ("/usr/bin/zsh", ["m"]),
                                          ("/usr/bin/tcsh", ["m"]), ("/usr/bin/fish", [])])
def test_other_shells_and_no_modules_read_nothing_more(lmod: Path, shell: str, loaded: list[str]) -> None:
    assert envcheck.module_init(shell, loaded) is None


def test_no_module_system_or_no_fish_setup_reads_nothing(lmod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("fish", "profile.fish"):
        (lmod / "init" / name).unlink()
    assert envcheck.module_init("/usr/bin/fish", ["m"]) is None
    monkeypatch.delenv("MODULESHOME")
    assert envcheck.module_init("/usr/bin/fish", ["m"]) is None


def test_the_window_sources_it_before_module_load_and_the_env() -> None:
    init = "/usr/share/lmod/lmod/init/profile.fish"
    env = envs.Env(spec="/e", kind="venv", location="/e", shell="/usr/bin/fish", loads=("python/3.11",),
                   module_init=init)
    assert env.activation()[:2] == [f"source {init}", "module load python/3.11"]
    (line,) = env.launch("ipython")  # fish: one line, each step on the success of those before
    assert line.startswith(f"source {init} && module load python/3.11 && ") and line.endswith(" && ipython")
    assert envs.module_lines(("python/3.11",)) == ["module load python/3.11"]  # other shells: as before
    assert envs.module_lines((), init) == []  # no modules: nothing to set up

"""Finding conda, mamba or micromamba as the user's shell would (the blocks `conda init` writes, the usual install
places), and a named env's prefix from what is on disk, with no manager start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portal_tasks.remote import managers

#: What `conda init bash` / `fish` / `tcsh` append (copied from conda 26's own output, the prefix made a marker).
BASH_BLOCK = """
# >>> conda initialize >>>
# !! Contents within this block are managed by 'conda init' !!
__conda_setup="$('PREFIX/bin/conda' 'shell.bash' 'hook' 2> /dev/null)"
if [ $? -eq 0 ]; then
    eval "$__conda_setup"
else
    if [ -f "PREFIX/etc/profile.d/conda.sh" ]; then
        . "PREFIX/etc/profile.d/conda.sh"
    else
        export PATH="PREFIX/bin:$PATH"
    fi
fi
unset __conda_setup
# <<< conda initialize <<<
"""
FISH_BLOCK = """
# >>> conda initialize >>>
# !! Contents within this block are managed by 'conda init' !!
if test -f PREFIX/bin/conda
    eval PREFIX/bin/conda "shell.fish" "hook" $argv | source
else
    set -x PATH "PREFIX/bin" $PATH
end
# <<< conda initialize <<<
"""
TCSH_BLOCK = """
# >>> conda initialize >>>
if ( -f "PREFIX/etc/profile.d/conda.csh" ) then
    source "PREFIX/etc/profile.d/conda.csh"
else
    setenv PATH "PREFIX/bin:$PATH"
endif
# <<< conda initialize <<<
"""
MICROMAMBA_BLOCK = """
# >>> mamba initialize >>>
# !! Contents within this block are managed by 'micromamba shell init' !!
export MAMBA_EXE='@EXE@';
export MAMBA_ROOT_PREFIX='@ROOT@';
__mamba_setup="$("$MAMBA_EXE" shell hook --shell bash --root-prefix "$MAMBA_ROOT_PREFIX" 2> /dev/null)"
# <<< mamba initialize <<<
"""


def install(prefix: Path, *names: str) -> Path:
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / "bin").mkdir(exist_ok=True)
    for name in names:
        exe = prefix / "bin" / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return prefix / "bin" / names[0]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with Debian's rc files and nothing of conda; no manager on the PATH or in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# ~/.bashrc\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    for var in ("CONDA_EXE", "MAMBA_EXE", "MAMBA_ROOT_PREFIX", "CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(managers, "INSTALL_PLACES", ("~/miniforge3", "~/miniconda3"))
    monkeypatch.setattr(managers, "MICROMAMBA_PLACES", ("~/.local/bin/micromamba",))
    return home


@pytest.mark.parametrize("rc,block", [(".bashrc", BASH_BLOCK), (".config/fish/config.fish", FISH_BLOCK),
                                      (".tcshrc", TCSH_BLOCK)])
def test_the_conda_initialize_block_names_conda(home: Path, tmp_path: Path, rc: str, block: str) -> None:
    conda = install(tmp_path / "shared-conda", "conda", "mamba")
    (home / rc).parent.mkdir(parents=True, exist_ok=True)
    with open(home / rc, "a") as fh:
        fh.write(block.replace("PREFIX", str(tmp_path / "shared-conda")))
    found = managers.find(None)
    assert found == {"kind": "conda", "path": str(conda), "source": f"the conda initialize block of ~/{rc}",
                     "root": str(tmp_path / "shared-conda")}
    assert managers.find("mamba")["path"] == str(conda.parent / "mamba")  # type: ignore[index]
    assert managers.find("micromamba") is None


def test_conda_exe_comes_first_then_the_blocks_then_the_usual_places(home: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert managers.find(None) is None
    usual = install(home / "miniforge3", "conda")
    assert managers.find(None)["source"] == "~/miniforge3"  # type: ignore[index]
    blocked = install(tmp_path / "opt" / "conda", "conda")
    with open(home / ".bashrc", "a") as fh:
        fh.write(BASH_BLOCK.replace("PREFIX", str(tmp_path / "opt" / "conda")))
    assert managers.find(None)["path"] == str(blocked)  # type: ignore[index]
    monkeypatch.setenv("CONDA_EXE", str(usual))
    assert managers.find(None) == {"kind": "conda", "path": str(usual), "source": "$CONDA_EXE",
                                   "root": str(home / "miniforge3")}


def test_micromamba_from_its_block_with_its_root_prefix(home: Path, tmp_path: Path) -> None:
    exe = home / ".local" / "bin" / "micromamba"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    root = tmp_path / "mm root"
    with open(home / ".bashrc", "a") as fh:
        fh.write(MICROMAMBA_BLOCK.replace("@EXE@", str(exe)).replace("@ROOT@", str(root)))
    found = managers.find(None)
    assert found == {"kind": "micromamba", "path": str(exe), "source": "the mamba initialize block of ~/.bashrc",
                     "root": str(root)}


def test_env_manager_as_a_path(home: Path, tmp_path: Path) -> None:
    conda = install(tmp_path / "x", "conda")
    assert managers.find(str(conda)) == {"kind": "conda", "path": str(conda), "source": "env_manager",
                                         "root": str(tmp_path / "x")}
    assert managers.find(str(tmp_path / "x" / "bin" / "python")) is None  # not a manager
    assert managers.find(str(tmp_path / "nothing" / "conda")) is None


def test_named_envs_resolve_from_disk(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "conda"
    conda = install(root, "conda")
    manager = {"kind": "conda", "path": str(conda), "source": "x", "root": str(root)}
    assert managers.known_prefix("base", manager) == str(root)
    (root / "envs" / "a" / "conda-meta").mkdir(parents=True)
    assert managers.known_prefix("a", manager) == str(root / "envs" / "a")
    mine = home / ".conda" / "envs" / "a"
    (mine / "conda-meta").mkdir(parents=True)
    assert managers.known_prefix("a", manager) == str(root / "envs" / "a")  # the install's envs come first
    # envs_dirs of ~/.condarc come before both
    scratch = home / "scratch" / "envs"
    (scratch / "a" / "conda-meta").mkdir(parents=True)
    (home / ".condarc").write_text("channels:\n  - conda-forge\nenvs_dirs:\n  - ~/scratch/envs  # fast disk\n"
                                   "pkgs_dirs:\n  - ~/pkgs\n")
    assert managers.known_prefix("a", manager) == str(scratch / "a")
    # an env only environments.txt knows (created with -p somewhere else)
    elsewhere = tmp_path / "projects" / "b"
    (elsewhere / "conda-meta").mkdir(parents=True)
    (home / ".conda" / "environments.txt").write_text(f"{root}\n{elsewhere}\n")
    assert managers.known_prefix("b", manager) == str(elsewhere)
    assert managers.known_prefix("c", manager) is None
    os.rename(elsewhere, tmp_path / "gone")
    assert managers.known_prefix("b", manager) is None  # listed but gone


def test_condarc_flow_lists_and_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".condarc").write_text("envs_dirs: [~/one, '/two']\n")
    monkeypatch.setenv("CONDA_ENVS_PATH", "/three")
    assert managers.condarc_envs_dirs(str(home), None) == [str(home / "one"), "/two", "/three"]

"""The test server's users and hosts are what they claim, as a user sees them over ssh: conda from `conda init
bash`, Lmod modules, zsh/fish/tcsh login shells, a Python 3.6 `python3` (testing/roles.py, conda.py, lmod.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from portal_tasks.testing import conda, lmod, oldpython, roles
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.users import tagged_users

pytestmark = pytest.mark.e2e


def interactive_bash(user: TestUser, host: str, script: str) -> tuple[int, str]:
    """script in an interactive bash of the user (their ~/.bashrc read in full), as typed in a terminal."""
    res = user.ssh(host, f"bash -ic {shlex.quote(script)}", timeout=60)
    return res.rc, res.stdout


# -- conda ------------------------------------------------------------------------------


def test_conda_is_only_on_the_interactive_path(portal_server: TestServer, carol: TestUser) -> None:
    """`conda init bash` put its block after Debian's "not interactive: return": ssh commands never see it."""
    plain = carol.ssh(portal_server.host, "command -v conda")
    assert plain.rc != 0 and plain.stdout == "", plain
    prefix = portal_server.conda() if portal_server.conda else None
    rc, out = interactive_bash(carol, portal_server.host, "command -v conda; conda env list")
    assert rc == 0, out
    assert "\na  " in out and str(conda.env_prefix(carol.home, "a")) in out, out
    assert str(conda.env_prefix(carol.home, "b")) in out, out  # found through envs_dirs
    assert prefix is not None and "base  " in out and str(prefix) in out, out
    bashrc = (carol.home / ".bashrc").read_text()
    assert bashrc.index("*) return;;") < bashrc.index(">>> conda initialize >>>"), bashrc
    assert f"'{prefix}/bin/conda' 'shell.bash' 'hook'" in bashrc


def test_environments_txt_knows_a_and_not_b(portal_server: TestServer, carol: TestUser) -> None:
    res = carol.ssh(portal_server.host, "cat ~/.conda/environments.txt; echo ---; cat ~/.condarc")
    assert res.ok, res
    known, condarc = res.stdout.split("---\n")
    assert known.split() == [str(conda.env_prefix(carol.home, "a"))]
    assert "envs_dirs:" in condarc and f"~/{conda.ENVS_DIRS}" in condarc


@pytest.mark.parametrize("name", ["a", "b"])
def test_conda_env_has_its_own_python_with_the_test_packages(portal_server: TestServer, carol: TestUser,
                                                           name: str) -> None:
    env = conda.env_prefix(carol.home, name)
    check = "import sys, distributed, bokeh, IPython, jupyterlab; print(sys.prefix)"
    res = carol.ssh(portal_server.host, f"{env}/bin/python -c {shlex.quote(check)}; ls {env}/conda-meta; "
                    f"ls {env}/bin/activate* 2>&1 || echo no-activate")
    assert res.ok, res
    lines = res.stdout.splitlines()
    assert lines[0] == str(env), res.stdout  # its own prefix, not the cached venv's
    assert "history" in lines and lines[-1] == "no-activate", res.stdout
    for tool in ("dask", "ipython", "jupyter-lab"):
        head = carol.ssh(portal_server.host, f"head -1 {env}/bin/{tool}")
        assert head.stdout.strip() == f"#!{env}/bin/python", head


def test_conda_activate_puts_the_env_first_and_its_tools_run(portal_server: TestServer, carol: TestUser) -> None:
    env = conda.env_prefix(carol.home, "a")
    rc, out = interactive_bash(carol, portal_server.host, "conda activate a && command -v python dask jupyter-lab "
                               "&& echo $CONDA_PREFIX && dask --version && jupyter-lab --version")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[:4] == [f"{env}/bin/python", f"{env}/bin/dask", f"{env}/bin/jupyter-lab", str(env)], out
    assert len(lines) == 6, out


def test_conda_run_uses_the_env(portal_server: TestServer, carol: TestUser) -> None:
    prefix = portal_server.conda() if portal_server.conda else None
    assert prefix is not None
    res = carol.ssh(portal_server.host, f"{prefix}/bin/conda run -n a python -c 'import sys, distributed; "
                    f"print(sys.prefix)'", timeout=60)
    assert res.ok, res
    assert res.stdout.strip() == str(conda.env_prefix(carol.home, "a")), res


def test_base_has_the_installs_own_python_without_dask(portal_server: TestServer, carol: TestUser) -> None:
    rc, out = interactive_bash(carol, portal_server.host, "conda activate base && command -v python && "
                               "python -c 'import dask' 2>&1 | tail -1")
    prefix = portal_server.conda() if portal_server.conda else None
    assert rc == 0 and out.splitlines()[0] == f"{prefix}/bin/python", out
    assert "No module named 'dask'" in out, out


#: role -> how a script in that user's login shell activates conda's base with conda's own hook (@P@: its prefix):
#: csh runs an alias only from a later line than the one defining it, hence the newlines
HOOKS = {
    "zed": 'eval "$(@P@/bin/conda shell.zsh hook)"; conda activate base; echo $CONDA_PREFIX',
    "fay": "@P@/bin/conda shell.fish hook | source; conda activate base; echo $CONDA_PREFIX",
    "ted": "source @P@/etc/profile.d/conda.csh\nconda activate base\necho $CONDA_PREFIX",
}


@pytest.mark.parametrize("role", list(HOOKS))
def test_the_conda_hook_of_each_shell_activates(portal_server: TestServer, request: pytest.FixtureRequest,
                                                role: str) -> None:
    """The shared install serves every login shell (what portal's per-shell activation relies on)."""
    user: TestUser = request.getfixturevalue(role)
    prefix = portal_server.conda() if portal_server.conda else None
    assert prefix is not None
    res = user.ssh(portal_server.host, HOOKS[role].replace("@P@", str(prefix)), timeout=60)
    assert res.ok, res
    assert res.stdout.strip().splitlines()[-1] == str(prefix), res


# -- Lmod -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", lmod.HOSTS)
def test_module_load_puts_the_modules_python_first(portal_server: TestServer, portal_lmod: lmod.Lmod,
                                                   alice: TestUser, host: str) -> None:
    script = f"module load {portal_lmod.python_module} && command -v python && python -c 'import distributed'"
    res = alice.ssh(host, f"bash -lc {shlex.quote(script)}", timeout=60)
    assert res.ok, res
    assert res.stdout.strip() == f"{portal_lmod.python_bin}/python", res
    avail = alice.ssh(host, "bash -lc 'echo $MODULEPATH; module -t avail 2>&1'", timeout=60)
    assert lmod.MODULES_DIR in avail.stdout.splitlines()[0].split(":"), avail
    assert portal_lmod.python_module in avail.stdout, avail


def test_a_missing_module_fails_in_lmods_words(portal_server: TestServer, portal_lmod: lmod.Lmod,
                                               alice: TestUser) -> None:
    res = alice.ssh(portal_server.host, f"bash -lc 'module load {portal_lmod.missing_module}'", timeout=60)
    assert res.rc != 0, res
    assert "unknown" in res.stderr and portal_lmod.missing_module in res.stderr, res


def test_a_broken_module_fails_with_its_message(portal_server: TestServer, portal_lmod: lmod.Lmod,
                                                alice: TestUser) -> None:
    res = alice.ssh(portal_server.host, f"bash -lc 'module load {portal_lmod.broken_module}'", timeout=60)
    assert res.rc != 0, res
    assert lmod.BROKEN_MESSAGE in " ".join(res.stderr.split()), res


def test_modules_are_only_on_the_servers(portal_server: TestServer, portal_lmod: lmod.Lmod, alice: TestUser) -> None:
    """This machine (the laptop) and the login node keep their own /etc/lmod/modules (Debian's: empty)."""
    family = portal_lmod.python_module.split("/")[0]
    assert not (Path(lmod.MODULES_DIR) / family).exists()
    res = alice.ssh(portal_server.login_host or "login", f"ls -A {lmod.MODULES_DIR}")
    assert res.ok and family not in res.stdout.split(), res
    assert family in alice.ssh(portal_server.host, f"ls -A {lmod.MODULES_DIR}").stdout.split()


# -- login shells -----------------------------------------------------------------------

#: role -> (its shell's name, a command printing the shell's process name, then its own version variable;
#: ps first: a shell may exec its last command in its own place)
SHELLS = {
    "zed": ("zsh", "ps -o comm= -p $$; echo $ZSH_VERSION"),
    "fay": ("fish", "ps -o comm= -p $fish_pid; echo $FISH_VERSION"),
    "ted": ("tcsh", "ps -o comm= -p $$; echo $tcsh"),
}


@pytest.mark.parametrize("role", list(SHELLS))
def test_ssh_commands_run_in_the_users_login_shell(portal_server: TestServer, request: pytest.FixtureRequest,
                                                   role: str) -> None:
    user: TestUser = request.getfixturevalue(role)  # the fixture: skips where the shell is not installed
    shell, command = SHELLS[role]
    res = user.ssh(portal_server.host, command)
    assert res.ok, res
    comm, version = res.stdout.split("\n")[:2]
    assert version.strip() and comm.strip() == shell, res
    assert user.ssh(portal_server.host, "getent passwd $USER").stdout.strip().endswith(f":/usr/bin/{shell}")


@pytest.mark.parametrize("role", list(SHELLS))
def test_shell_users_have_only_the_skeleton_files(request: pytest.FixtureRequest, role: str) -> None:
    user: TestUser = request.getfixturevalue(role)
    names = {str(p.relative_to(user.home)) for p in user.home.rglob("*")}
    assert {".bashrc", ".profile"} <= names, names
    assert not names & {".zshrc", ".zprofile", ".zshenv", ".config/fish/config.fish", ".tcshrc", ".cshrc",
                        ".login"}, names


# -- Python 3.6 -------------------------------------------------------------------------


def test_old_python_is_the_python3_of_ssh_commands(portal_server: TestServer, oldpy: TestUser) -> None:
    res = oldpy.ssh(portal_server.host, "python3 --version; command -v python3; "
                    "python3 -c 'import sys, ssl, json, sqlite3; print(sys.prefix)'")
    assert res.ok, res
    version, where, prefix = res.stdout.split("\n")[:3]
    assert version.startswith("Python 3.6."), res
    assert where == f"{oldpython.DEST}/bin/python3" and prefix == str(oldpython.DEST), res
    login = oldpy.ssh(portal_server.host, "bash -lc 'python3 --version'")
    assert login.stdout.startswith("Python 3.6."), login
    assert (oldpy.home / ".bashrc").read_text().startswith(oldpython.PATH_LINE)


def test_other_users_keep_the_systems_python3(portal_server: TestServer, alice: TestUser) -> None:
    res = alice.ssh(portal_server.host, "python3 -c 'import sys; print(sys.version_info >= (3, 8))'")
    assert res.stdout.strip() == "True", res


# -- the server itself ------------------------------------------------------------------


def test_lazy_users_are_made_on_first_use_and_removed_with_the_server(request: pytest.FixtureRequest) -> None:
    from portal_tasks.testing.plugin import own_netns_server

    with own_netns_server(request, "a server of its own to close") as server:
        assert not set(roles.LAZY_ROLES) & set(server.users)
        zed = server.user("zed")
        assert server.user("zed") is zed and server.users["zed"] is zed
        assert zed.ssh(server.host, "echo $ZSH_VERSION").stdout.strip()
        names = [server.users[r].name for r in server.users]
    assert not set(names) & {name for name, _, _ in tagged_users()}
    assert not zed.home.exists()

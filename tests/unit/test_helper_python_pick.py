"""The helper runs on a Python that can run it: a host whose ``python3`` is too old (RHEL 8's 3.6) hands the
call to the newest ``python3.X`` on its PATH, or says in one line which Pythons it has and what to set.

Run for real with this machine's pyenv Pythons (2.7, 3.6, 3.7, 3.8), each skipped where it is missing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from portal_tasks.config import resolve
from portal_tasks.errors import ConfigError, RemoteCommandError, StateError
from portal_tasks.link.base import MAIN, bootstrap_program, helper_archive
from portal_tasks.link.local import LocalLink
from portal_tasks.remote import python_pick

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"


def pyenv_python(version: str) -> Path:
    """The pyenv Python VERSION (e.g. "3.6"), or a skip naming what is missing."""
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under {PYENV} (pyenv install {version})")
    return found[-1]


def tools(where: Path) -> Path:
    """A PATH directory with the shells the local link needs, and no Python."""
    return bin_dir(where, bash=Path("/bin/bash"), sh=Path("/bin/sh"))


def bin_dir(where: Path, **names: Path) -> Path:
    """A PATH directory holding ``names`` (python3=..., python3_11=...) as symlinks."""
    where.mkdir(parents=True, exist_ok=True)
    for name, target in names.items():
        (where / name.replace("_", ".")).symlink_to(target)
    return where


def run_helper(python: Path, archive: Path, verb: str, path: list[Path], home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.pathsep.join(map(str, path))}
    return subprocess.run([str(python), str(archive), verb], input="{}\n", capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "remote.pyz"
    path.write_bytes(helper_archive()[1])
    return path


@pytest.mark.parametrize("version", ["2.7", "3.6", "3.7"])
def test_any_python_reads_the_helpers_entry_and_the_bootstrap(version):
    """What an old Python runs before it hands over: the zipapp's __main__, python_pick, the bootstrap."""
    python = pyenv_python(version)
    sources = {"__main__": MAIN, "python_pick": Path(python_pick.__file__).read_text(), "bootstrap": bootstrap_program()}
    for name, text in sources.items():
        out = subprocess.run([str(python), "-c", "import sys; compile(sys.stdin.read(), sys.argv[1], 'exec')", name],
                             input=text, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"Python {version} cannot read {name}: {out.stderr}"


def test_every_helper_module_is_read_by_the_oldest_python_it_names():
    """The helper says it needs Python 3.NEEDS; each of its modules compiles there."""
    python = pyenv_python("%d.%d" % python_pick.NEEDS)
    with zipfile.ZipFile(io.BytesIO(helper_archive()[1])) as zf:
        for name in zf.namelist():
            if name.endswith(".py"):
                out = subprocess.run([str(python), "-c", "import sys; compile(sys.stdin.read(), sys.argv[1], 'exec')",
                                      name], input=zf.read(name).decode(), capture_output=True, text=True, timeout=30)
                assert out.returncode == 0, f"{name} on Python {python_pick.NEEDS}: {out.stderr}"


@pytest.mark.parametrize("version", ["3.6", "3.7", "2.7"])
def test_a_too_old_python_hands_the_call_to_the_newest_on_the_path(version, archive, tmp_path):
    old = pyenv_python(version)
    newer = bin_dir(tmp_path / "newer", python3_8=Path(sys.executable), python3_5=old)
    out = run_helper(old, archive, "probe", [bin_dir(tmp_path / "old", python3=old), newer], tmp_path)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)["result"]
    assert facts["python"] == sys.version.split()[0] and facts["python_path"] == str(newer / "python3.8")
    assert python_pick.AGAIN not in out.stdout


def test_a_newer_python_that_cannot_start_is_passed_over(archive, tmp_path):
    old = pyenv_python("3.6")
    broken = bin_dir(tmp_path / "broken", python3_13=tmp_path / "nowhere")
    (tmp_path / "nowhere").write_text("#!/no/such/interpreter\n")
    (tmp_path / "nowhere").chmod(0o755)
    newer = bin_dir(tmp_path / "newer", python3_8=Path(sys.executable))
    out = run_helper(old, archive, "probe", [broken, newer], tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["result"]["python_path"] == str(newer / "python3.8"), out


def test_a_host_with_only_old_pythons_says_so_in_one_json_line(archive, tmp_path):
    old = pyenv_python("3.6")
    path = [bin_dir(tmp_path / "old", python3=old, python3_6=old),
            bin_dir(tmp_path / "other", python3_7=pyenv_python("3.7"))]
    out = run_helper(old, archive, "ping", path, tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    reply = json.loads(out.stdout)
    assert reply["ok"] is False and reply["kind"] == "PythonTooOld"
    version = subprocess.run([str(old), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    assert reply["error"] == (f"portal's helper needs Python 3.8 or newer; this server has Python {version} ({old}) "
                              f"and python3.7 ({tmp_path}/other/python3.7).")


def test_with_no_newer_python_on_the_path_a_conda_env_of_the_user_runs_it(archive, tmp_path):
    """RHEL 8 with only 3.6 installed, and the user's conda env (its own Python 3.8+) in ~/.conda/envs."""
    old = pyenv_python("3.6")
    env_bin = bin_dir(tmp_path / ".conda" / "envs" / "a" / "bin", python3_8=Path(sys.executable))
    bin_dir(tmp_path / "miniconda3" / "bin", python3_7=pyenv_python("3.7"))  # too old: passed over
    path_new = bin_dir(tmp_path / "onpath", python3_9=Path(sys.executable))
    out = run_helper(old, archive, "probe", [bin_dir(tmp_path / "old", python3=old)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"]["python_path"] == str(env_bin / "python3.8")
    out = run_helper(old, archive, "probe", [tmp_path / "old", path_new], tmp_path)  # the PATH's comes first
    assert json.loads(out.stdout)["result"]["python_path"] == str(path_new / "python3.9"), out.stdout + out.stderr


def test_a_python_that_claims_a_newer_name_but_is_old_ends_the_search(archive, tmp_path):
    """python3.12 that is really 3.6: handed over once, then the line (never an exec loop)."""
    old = pyenv_python("3.6")
    out = run_helper(old, archive, "ping", [bin_dir(tmp_path / "liar", python3_12=old)], tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["kind"] == "PythonTooOld", out.stdout + out.stderr


@pytest.fixture
def old_host(tmp_path, monkeypatch):
    """This machine as a host whose python3 is 3.6 first on the PATH (the laptop's own Python elsewhere)."""
    old = pyenv_python("3.6")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return old, bin_dir(tmp_path / "old", python3=old)


def test_through_the_link_an_old_python3_still_runs_the_helper_on_a_newer_one(old_host, tmp_path, monkeypatch):
    _, old_bin = old_host
    newer = bin_dir(tmp_path / "newer", python3_11=Path(sys.executable))
    monkeypatch.setenv("PATH", os.pathsep.join([str(old_bin), str(newer), str(tools(tmp_path / "tools"))]))
    link = LocalLink(resolve(None, "localhost"))
    facts = link.helper("probe", {})  # the bootstrap (first call), on 3.6, then the helper on 3.11
    assert facts["python_path"] == str(newer / "python3.11")
    assert link.helper("probe", {})["python_path"] == str(newer / "python3.11")  # the helper itself


def test_through_the_link_no_python_new_enough_is_one_line_naming_the_setting(old_host, tmp_path, monkeypatch):
    old, old_bin = old_host
    monkeypatch.setenv("PATH", os.pathsep.join([str(old_bin), str(tools(tmp_path / "tools"))]))
    link = LocalLink(resolve({"host_python": str(old)}, "localhost"))
    with pytest.raises(ConfigError) as info:
        link.helper("probe", {})
    line = info.value.line()
    assert line.startswith("localhost: portal's helper needs Python 3.8 or newer; this server has Python 3.6")
    assert "host_python" in line and "hosts: {localhost: {host_python:" in line and "\n" not in line
    for call in (link._install_helper, lambda: link.lock("t").__enter__()):  # the other ways in say the same
        with pytest.raises(ConfigError, match="needs Python 3.8 or newer"):
            call()


def test_a_helper_traceback_is_its_last_line_and_the_whole_under_debug(tmp_path, monkeypatch, caplog):
    """A helper that crashes (here: a Python whose helper cannot start) is one line: the exception."""
    monkeypatch.setenv("HOME", str(tmp_path))
    broken = tmp_path / "python3"
    broken.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                      "echo '  File \"x.py\", line 6' >&2\necho 'KeyError: plan' >&2\nexit 1\n")
    broken.chmod(0o755)
    link = LocalLink(resolve({"host_python": str(broken)}, "localhost"))
    with caplog.at_level("DEBUG", logger="portal"), pytest.raises(RemoteCommandError) as info:
        link.helper("ping", {})
    assert info.value.message == "portal's helper (ping) failed: KeyError: plan"
    assert "--debug" in info.value.line() and "Traceback" not in info.value.line()
    assert 'File "x.py", line 6' in caplog.text
    with pytest.raises(StateError) as locked:  # a held call (the lock) says the same
        link.lock("t").__enter__()
    assert "(KeyError: plan)" in locked.value.line() and "Traceback" not in locked.value.line()


@pytest.mark.parametrize("dirs, expected", [
    ({"/a": ["python3", "python3.6"], "/b": ["python3.11", "python3.9", "python3.11-config"]},
     [(11, "/b/python3.11"), (9, "/b/python3.9"), (6, "/a/python3.6")]),
    ({"/a": ["python3.12"], "/b": ["python3.12", "python3.13"]}, [(13, "/b/python3.13"), (12, "/a/python3.12")]),
    ({"/a": ["python3.8m", "python3.x", "python2.7"]}, []),
])
def test_the_pythons_on_the_path_newest_first_first_on_path_wins(dirs, expected):
    found = python_pick.pythons(list(dirs) + ["/missing"], listdir=lambda d: dirs[d] if d in dirs else
                                (_ for _ in ()).throw(OSError(d)), runnable=lambda p: True)
    assert found == expected
    assert python_pick.choice(found) == (expected[0][1] if expected and expected[0][0] >= 8 else None)

"""The env check is kept per env until the env's python or packages change (a warm `up` then runs no
python of the env), and a named env's prefix is kept until it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.remote import envcheck


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    return prefix


def counting(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = envcheck.subprocess.run

    def run(argv: Any, *a: Any, **kw: Any) -> Any:
        calls.append(argv)
        return real(argv, *a, **kw)

    monkeypatch.setattr(envcheck.subprocess, "run", run)
    return calls


def test_a_second_check_runs_no_python_until_a_package_comes(home: Path, venv: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    first = envcheck.env_check({"env": str(venv)})
    assert first["modules"]["distributed"] is False and len(calls) == 1
    assert envcheck.env_check({"env": str(venv)}) == first and len(calls) == 1  # kept
    (site,) = venv.glob("lib/python*/site-packages")
    time.sleep(0.01)
    (site / "distributed").mkdir()  # a package installed: the directory's entry is new
    (site / "distributed" / "__init__.py").write_text("")
    again = envcheck.env_check({"env": str(venv)})
    assert len(calls) == 2 and again["modules"]["distributed"] is True


def test_what_is_kept_lies_in_the_private_state(home: Path, venv: Path) -> None:
    envcheck.env_check({"env": str(venv)})
    kept = list(home.glob(".portal/hosts/*/envs/*.json"))
    assert len(kept) == 1 and (kept[0].stat().st_mode & 0o077) == 0
    assert (kept[0].parent.stat().st_mode & 0o077) == 0


def test_a_kept_named_env_whose_prefix_is_gone_is_asked_again(home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An env only `conda env list` knows (not under any envs dir, not in environments.txt): its answer is kept
    and asked again once the env is gone."""
    monkeypatch.setenv("HOME", str(home))
    prefix = tmp_path / "elsewhere" / "a"
    (prefix / "conda-meta").mkdir(parents=True)
    conda = tmp_path / "opt" / "conda" / "bin" / "conda"
    conda.parent.mkdir(parents=True)
    log = tmp_path / "asked"
    conda.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                     f"[ -d {prefix} ] && echo '{{\"envs\": [\"{prefix}\"]}}' || echo '{{\"envs\": []}}'\n")
    conda.chmod(0o755)
    monkeypatch.setenv("CONDA_EXE", str(conda))
    assert envcheck._resolve_named("a", None)[:2] == ("named", str(prefix))
    assert envcheck._resolve_named("a", None)[:2] == ("named", str(prefix))
    assert log.read_text().splitlines() == ["env list --json"]  # kept
    os.rename(prefix, tmp_path / "gone")
    with pytest.raises(envcheck.Failure, match=r"env 'a' not found \(conda env list shows: none\)"):
        envcheck._resolve_named("a", None)
    assert len(log.read_text().splitlines()) == 2

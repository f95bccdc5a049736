"""mypy over the whole package as pyproject.toml's [tool.mypy] says (strict, the helper's modules included)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_passes_over_the_whole_package() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it comes with pip install -e '.[test]')")
    res = subprocess.run([sys.executable, "-m", "mypy", "portal_tasks"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

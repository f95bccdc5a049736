"""examples/test_my_server.py, the README's check of a shared server, run on this session's test server too
(test_plugin.py runs the same file against an ssh:// server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[2] / "examples" / "test_my_server.py"
_spec = importlib.util.spec_from_file_location("example_test_my_server", _path)
assert _spec is not None and _spec.loader is not None
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)

pytestmark = pytest.mark.e2e
# its fixtures and tests, as they are: pytest collects them from this module's names
globals().update({name: value for name, value in vars(_example).items() if not name.startswith("_")})

"""Fixtures of the unit tests of the host-side helper."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from portal_tasks.remote import common, hostpaths


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home for the helper: ~/.portal (0700) and this server's directory in it (not made yet)."""
    monkeypatch.setattr(common, "STATE_DIR", hostpaths.portal_dir(str(tmp_path)))
    monkeypatch.setattr(common, "SERVER_DIR", hostpaths.server_dir(str(tmp_path), platform.node()))
    (tmp_path / ".portal").mkdir(mode=0o700)
    return tmp_path


@pytest.fixture(autouse=True)
def laptop_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each unit test's laptop cache (forwards, hosts, known helpers) of its own, never the developer's."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    # and its control sockets' directory: short, so a link never falls back to a /tmp/portal-UID-DIGEST of its own
    # that would outlive the test
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    return path

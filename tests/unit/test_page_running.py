"""`up --page` reuses a running page only while the recorded page process runs: a dead page's port may be
anyone's now, and the URL carries the page's secret."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import state
from portal_tasks.page import server


def test_a_dead_pages_url_is_never_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with socket.create_server(("127.0.0.1", 0)) as squatter:  # whoever holds the dead page's port now
        squatter.settimeout(0.5)
        url = f"http://127.0.0.1:{squatter.getsockname()[1]}/s3cr3t/"
        (state.cache_dir() / server.RUNNING).write_text(json.dumps({"pid": dead.pid, "url": url}))
        assert server.running_url() is None
        with pytest.raises(TimeoutError):
            squatter.accept()  # nobody connected: the secret went nowhere


def test_a_running_pages_url_is_checked_and_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    asked: list[str] = []
    monkeypatch.setattr(server, "_answers_as_page", lambda url: asked.append(url) or True)
    url = "http://127.0.0.1:1/s3cr3t/"
    (state.cache_dir() / server.RUNNING).write_text(json.dumps({"pid": os.getpid(), "url": url}))
    assert server.running_url() == url and asked == [url]

"""The host-side helper, run for real on this machine through the local link."""

import os
import socket
import zipfile
import io

import pytest

from portal_tasks.config import resolve
from portal_tasks.errors import RemoteCommandError
from portal_tasks.link.base import helper_archive
from portal_tasks.link.local import LocalLink


@pytest.fixture
def link(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return LocalLink(resolve(None, "localhost"))


def test_archive_is_stdlib_only_and_stable():
    digest, data = helper_archive()
    assert helper_archive() == (digest, data)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "__main__.py" in names and "portal_remote/main.py" in names
    for name in names:
        text = zipfile.ZipFile(io.BytesIO(data)).read(name).decode()
        assert "portal_tasks" not in text.replace("portal_tasks/remote", ""), name


def test_helper_installs_itself_privately_and_answers(link, tmp_path):
    facts = link.helper("probe", {"listeners": True})
    assert facts["uid"] == os.getuid() and facts["home"] == str(tmp_path)
    portal_dir = tmp_path / ".portal"
    assert oct(portal_dir.stat().st_mode & 0o777) == "0o700"


def test_probe_sees_a_loopback_listener_with_its_pid(link):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        found = [e for e in link.helper("probe", {"listeners": True})["listeners"] if e["port"] == port]
    assert found and found[0]["addr"] == "127.0.0.1" and found[0]["pid"] == os.getpid()


def test_unknown_verb_is_an_error_not_a_crash(link):
    with pytest.raises(RemoteCommandError, match="unknown verb"):
        link.helper("no-such-verb")


def test_missing_remote_python_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    link = LocalLink(resolve({"remote_python": "python-not-here"}, "localhost"))
    with pytest.raises(RemoteCommandError, match="remote_python"):
        link.helper("ping")


def test_lock_is_exclusive(link):
    import threading

    order = []

    def second():
        with link.lock("t"):
            order.append("second")

    with link.lock("t"):
        t = threading.Thread(target=second)
        t.start()
        t.join(0.5)
        order.append("first-released")
    t.join(10)
    assert order == ["first-released", "second"]

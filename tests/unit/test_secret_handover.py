"""Secrets on the laptop: the browser gets a private redirect page, debug logs are redacted."""

from __future__ import annotations

import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from portal_tasks.runner import redact
from portal_tasks.commands import browse

URL = "http://localhost:20002/lab?token=0123456789abcdef0123456789abcdef0123456789abcdef"


def test_a_dashboard_url_goes_to_the_browser_as_it_is():
    assert browse.browser_url("http://localhost:20001/status") == "http://localhost:20001/status"
    assert not browse.carries_secret("http://localhost:20001/status?tokenizer=1")


def test_a_url_with_a_token_becomes_a_private_redirect_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    handed = browse.browser_url(URL)
    assert handed.startswith("file://") and "token=" not in handed and "0123456789abcdef" not in handed
    page = Path(urllib.parse.urlsplit(handed).path)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    text = page.read_text()
    assert f'content="0; url={URL}"' in text and 'name="referrer" content="no-referrer"' in text
    assert browse.browser_url(URL) == handed  # one page per service, rewritten


def test_the_redirect_page_escapes_what_it_embeds():
    text = browse.redirect_page('http://localhost:1/lab?token=a"><script>')
    assert "<script>" not in text and "&quot;&gt;&lt;script&gt;" in text


def test_browse_hands_the_browser_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    opened: list[str] = []
    monkeypatch.setattr(browse.webbrowser, "open", opened.append)
    browse.open_urls(["http://localhost:20001/status", URL])
    assert opened[0] == "http://localhost:20001/status" and opened[1].startswith("file://")
    assert not any("token=" in u or "0123456789abcdef" in u for u in opened)


@pytest.mark.parametrize("text, secret", [
    ("ssh h -- curl 'http://localhost:1/lab?token=abcdef012345'", "abcdef012345"),
    ("Authorization: token abcdef012345", "abcdef012345"),
    ('{"token": "abcdef012345"}', "abcdef012345"),
    ("x -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY----- y", "MIGHAgEAMBMG"),
])
def test_debug_logs_are_redacted(text, secret):
    assert secret not in redact(text)


def test_explain_opens_a_token_url_through_a_private_page_not_an_argv(tmp_path: Path) -> None:
    url = "http://localhost:21302/lab?token=s3cr3t"
    line = browse.explain_open(url, tmp_path / "open")
    webbrowser_argv = line.rsplit("&& ", 1)[1]
    assert "s3cr3t" not in webbrowser_argv and webbrowser_argv.startswith("python3 -m webbrowser file://")
    # pasted into a shell (webbrowser swapped for printing what it was given), the page redirects to the URL
    out = subprocess.run(["bash", "-c", line.replace("python3 -m webbrowser", "echo")], capture_output=True, text=True)
    page = Path(urllib.parse.urlsplit(out.stdout.strip()).path)
    assert oct(page.stat().st_mode & 0o777) == "0o600" and oct(page.parent.stat().st_mode & 0o777) == "0o700"
    assert page.read_text() == browse.redirect_page(url)
    assert browse.explain_open("http://localhost:21301/status", tmp_path) == \
        "python3 -m webbrowser http://localhost:21301/status"

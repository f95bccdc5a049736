"""`browse`: open the laptop's browser (Python's webbrowser, so $BROWSER is honoured) at the forwarded URLs.

A URL that carries a secret (Jupyter's ``?token=``) never goes into the browser's argv, which every
user of the laptop can read: the browser gets a private page (0600, in a 0700 directory) that
redirects to it, as Jupyter itself does when it opens a browser.
"""

from __future__ import annotations

import hashlib
import html
import os
import shlex
import urllib.parse
import webbrowser
from pathlib import Path

import platformdirs

from .. import state
from ..remote.files import write_atomic
from ..target import Explained, Target
from .forward import running

#: Query keys whose value opens something: such a URL is handed over through a redirect page.
SECRET_KEYS = ("token",)


def carries_secret(url: str) -> bool:
    return any(key in SECRET_KEYS for key, _ in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def redirect_page(url: str) -> str:
    """A page that sends the browser on to ``url`` at once (and says where, without the secret)."""
    shown = html.escape(urllib.parse.urlsplit(url)._replace(query="").geturl())
    target = html.escape(url, quote=True)
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">"
            f"<meta http-equiv=\"refresh\" content=\"0; url={target}\"><title>portal</title></head>"
            f"<body><p>Opening <a href=\"{target}\">{shown}</a> ...</p></body></html>\n")


def pages_dir() -> Path:
    """The private directory of redirect pages (0700, the user's own)."""
    path = state.cache_dir() / "open"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_redirect(url: str, name: str) -> Path:
    """A private page (0600, in a 0700 directory) named ``name`` that sends the browser on to ``url``."""
    page = pages_dir() / name
    write_atomic(str(page), redirect_page(url).encode())
    return page


def redirect_name(url: str) -> str:
    """The redirect page's file name for ``url`` (one per service: the same page is rewritten)."""
    base = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
    return f"open-{hashlib.sha256(base.encode()).hexdigest()[:12]}.html"


def browser_url(url: str) -> str:
    """What the browser's argv gets for ``url``: the URL itself, or a file:// redirect page for a URL with a token."""
    if not carries_secret(url):
        return url
    return write_redirect(url, redirect_name(url)).as_uri()


def explain_open(url: str, directory: Path) -> str:
    """The pasteable line that opens ``url`` as :func:`open_urls` does (pure): a URL with a token goes
    through a private redirect page written by the shell's builtin printf, never through an argv."""
    if not carries_secret(url):
        return shlex.join(["python3", "-m", "webbrowser", url])
    page = directory / redirect_name(url)
    q = shlex.quote
    return (f"mkdir -p {q(str(directory))} && chmod 700 {q(str(directory))} && "
            f"(umask 077 && printf '%s' {q(redirect_page(url))} > {q(str(page))}) && "
            f"python3 -m webbrowser {q(page.as_uri())}")


def remembered_urls(target: Target) -> list[str]:
    """The remembered forwarded URLs: dashboards first, then JupyterLab (for --explain: asks nothing)."""
    forwards = state.load_forwards(target.host)
    ordered = sorted(forwards.items(), key=lambda item: (not item[0].startswith("dashboard"), item[0]))
    return [str(entry["url"]) for _, entry in ordered if entry.get("url")]


def urls(target: Target) -> list[str]:
    """The forwarded URLs of services the host confirms are the user's own, right now: dashboards first,
    JupyterLab with the token of the server that runs now (a remembered one may be of an older start)."""
    forwards = state.load_forwards(target.host)
    found = []
    for service in sorted(running(target), key=lambda s: (s.kind != "dashboard", s.name)):
        entry = forwards.get(service.name)
        if entry and entry.get("remote") == service.remote:
            found.append(service.url(int(entry["local_port"])))
    return found


def open_urls(found: list[str]) -> None:
    for url in found:
        print(f"opening {url}")
        webbrowser.open(browser_url(url))


def run(target: Target, found: list[str] | None = None) -> list[str]:
    if found is None:
        if target.link.name == "local":
            from .forward import forward_all as forward

            found = [f.url for f in forward(target)]
        else:
            found = urls(target)
    if not found:
        print(f"nothing to open: no forwarded dashboard or Jupyter of yours for {target.host}; run `portal up` first.")
    open_urls(found)
    return found


def explain(target: Target) -> Explained:
    found = remembered_urls(target) or ["http://localhost:PORT/status"]
    directory = Path(platformdirs.user_cache_dir("portal")) / "open"  # pages_dir() would make it: explain changes nothing
    return Explained(local=[explain_open(url, directory) for url in found])

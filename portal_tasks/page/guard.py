"""Which requests the page lets in (pure).

The page listens on the laptop's loopback, where every local user and every web page the browser
shows can reach it. So: a path that does not begin with the launch's secret gets 404; a Host header
other than the page's own address gets 403 (DNS rebinding); a POST must come from the page itself
(its Origin) with a JSON body (a cross-site form cannot send one without a CORS preflight, which the
page never answers).
"""

from __future__ import annotations

import hmac
import secrets

#: What every answer carries: nothing cached, no referrer (the secret is in the URL), no framing,
#: and only the page's own scripts, styles and requests.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
}


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def own_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def route(path: str, secret: str) -> str | None:
    """The part of ``path`` after ``/SECRET/`` ("" for the page itself), or None when the secret is wrong.

    ``/SECRET`` without the slash is None too: the page's relative requests would lose the secret.
    """
    path = path.split("?", 1)[0]
    first, slash, rest = path[1:].partition("/")
    if not path.startswith("/") or not hmac.compare_digest(first.encode(), secret.encode()) or not slash:
        return None
    return rest


def host_ok(host_header: str | None, port: int) -> bool:
    return (host_header or "").strip().lower() in own_hosts(port)


def post_ok(origin: str | None, content_type: str | None, port: int) -> bool:
    """A POST from the page itself: its own Origin, a JSON body."""
    if (origin or "") not in {f"http://{h}" for h in own_hosts(port)}:
        return False
    return (content_type or "").split(";")[0].strip().lower() == "application/json"

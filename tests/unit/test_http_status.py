"""The helper's HTTP health check: the status of a GET, read from a real server's status line alone."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from portal_tasks.remote import common


class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.path == "/api/status" and self.headers.get("Authorization") == "token right"
        body = b'{"started": "now"}' if ok else b"no"
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _status(port: int, token: str) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return common.http_status(sock, "/api/status", {"Authorization": "token " + token})


def test_the_status_of_a_get_with_its_headers(server: int) -> None:
    assert _status(server, "right") == 200
    assert _status(server, "wrong") == 403


def test_no_http_answer_is_none() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def answer(text: bytes) -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(text)

        for text in (b"SSH-2.0-OpenSSH_9.2\r\n", b""):  # another protocol; a connection closed at once
            thread = threading.Thread(target=answer, args=(text,))
            thread.start()
            assert _status(srv.getsockname()[1], "right") is None
            thread.join(5)

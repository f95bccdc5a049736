"""`portal up` in a terminal ends attached to the tmux session on the host; detaching returns."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from portal_tasks import plan
from portal_tasks.testing.plugin import portal_env

pytestmark = pytest.mark.e2e


def read_until(fd: int, needle: bytes, seconds: float) -> bytes:
    """Read the terminal until needle shows up or time runs out (bounded)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and needle not in seen:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_up_in_a_terminal_attaches_and_detach_returns(portal_server, alice):
    env = str(portal_server.envs["a"])
    window = f"ipython-{plan.env_key(env)}".encode()
    main, sub = pty.openpty()
    os.set_blocking(main, True)
    environment = {**os.environ, **portal_env(alice), "TERM": "xterm", "BROWSER": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "portal_tasks", "up", "--host", portal_server.host, "--env", env],
                            stdin=sub, stdout=sub, stderr=sub, env=environment, cwd=str(alice.laptop),
                            start_new_session=True)
    os.close(sub)
    try:
        screen = read_until(main, b"[portal]", 180)  # tmux's status line: attached
        assert b"[portal]" in screen and window in screen, screen[-2000:].decode(errors="replace")
        assert proc.poll() is None, "portal should now be the attached tmux client"
        # detach as another terminal of the user would (keys typed into a pty can race tmux's start)
        detached = alice.ssh(portal_server.host, "tmux detach-client -s =portal")
        assert detached.rc == 0, detached.stderr
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    listed = alice.ssh(portal_server.host, "tmux list-windows -t =portal -F '#{window_name}'")
    assert window.decode() in listed.stdout.split()  # detached, still running on the host

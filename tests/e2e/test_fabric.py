"""The whole flow once on the Fabric transport (paramiko; for laptops without a usable OpenSSH)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from portal_tasks.testing.plugin import portal_env

pytestmark = pytest.mark.e2e
FABRIC = {"PORTAL_TRANSPORT": "fabric"}


def test_up_status_down_over_fabric(portal_server, alice, run_portal, listening_sockets):
    host, env = portal_server.host, str(portal_server.envs["a"])
    check = run_portal(alice, "check", "--host", host, "--env", env, env=FABRIC)
    assert check.rc == 0 and "over fabric" in check.stdout, check.stdout + check.stderr

    # `up` stays in the foreground holding Fabric's forwards; read its URL, load it, then stop it
    proc = subprocess.Popen([sys.executable, "-m", "portal_tasks", "up", "--host", host, "--env", env,
                             "--no-browser"], env=portal_env(alice, FABRIC), cwd=str(alice.laptop),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"(http://localhost:\d+/status)", line)
            url = found.group(1) if found else None
        assert url, "".join(seen)
        with urllib.request.urlopen(url, timeout=20) as resp:
            assert resp.status == 200
        assert proc.poll() is None, "up must stay while its Fabric forwards are in use"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    status = run_portal(alice, "status", "--host", host, "--json", env=FABRIC)
    report = json.loads(status.stdout)
    assert report["clusters"] and report["clusters"][0]["healthy"], status.stderr
    down = run_portal(alice, "down", "--host", host, env=FABRIC)
    assert down.rc == 0, down.stdout + down.stderr
    assert listening_sockets(alice) == []

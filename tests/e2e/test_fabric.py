"""The whole flow once on the Fabric transport (paramiko; for laptops without a usable OpenSSH)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.testing.flows import skip_if_running
from portal_tasks.testing.plugin import portal_env

pytestmark = pytest.mark.e2e
FABRIC = {"PORTAL_TRANSPORT": "fabric"}


def test_up_status_down_over_fabric(portal_server, alice, run_portal, listening_sockets):
    host, env = portal_server.host, str(portal_server.envs["a"])
    skip_if_running(run_portal, portal_server, alice, env, "ends with `down`")
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


def _strict_config(alice: Any, known: Path) -> Path:
    """alice's ssh config, but StrictHostKeyChecking yes and its own (empty) known_hosts file."""
    text = re.sub(r"(?m)^(\s*)UserKnownHostsFile .*$", rf"\1UserKnownHostsFile {known}", alice.ssh_config.read_text())
    text = re.sub(r"(?m)^(\s*)StrictHostKeyChecking .*$", r"\1StrictHostKeyChecking yes", text)
    assert f"UserKnownHostsFile {known}" in text and "StrictHostKeyChecking yes" in text, text
    path = alice.laptop / "ssh_config_strict"
    path.write_text(text)
    return path


def _one_line(res: Any) -> str:
    out = res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert res.rc == 1 and len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def test_fabric_checks_host_keys_as_openssh_does(portal_server, alice, run_portal, tmp_path):
    host = portal_server.host
    known = alice.laptop / ".ssh" / "known_hosts_strict"
    config = _strict_config(alice, known)
    argv = ["status", "--host", host, "--ssh-config", str(config)]
    try:
        unknown = _one_line(run_portal(alice, *argv, env=FABRIC))
        assert "not in known_hosts" in unknown and "fabric_accept_new_host_key" in unknown, unknown
        assert not known.exists() or not known.read_text().strip()  # nothing learned silently
        openssh = subprocess.run(["ssh", "-F", str(config), host, "true"], capture_output=True, text=True, timeout=30,
                             check=False)
        assert openssh.returncode == 255 and "verification failed" in openssh.stderr, openssh.stderr  # same verdict

        accepted = run_portal(alice, *argv, env={**FABRIC, "PORTAL_FABRIC_ACCEPT_NEW_HOST_KEY": "1"})
        assert accepted.rc == 0, accepted.stdout + accepted.stderr
        learned = known.read_text().split()
        real = [line.split()[1:3] for line in (alice.laptop / ".ssh" / "known_hosts").read_text().splitlines()
                if portal_server.address in line.split()[0].split(",")]
        assert learned[0] == portal_server.address and learned[1:3] in real, (learned, real)
        assert run_portal(alice, *argv, env=FABRIC).rc == 0  # known now: no option needed
        if portal_server.via_login_host and portal_server.login_address:  # every ProxyJump hop is checked too
            hop = _one_line(run_portal(alice, "status", "--host", portal_server.via_login_host, "--ssh-config",
                                       str(config), env=FABRIC))
            assert "not in known_hosts" in hop and portal_server.login_address in hop, hop
        assert subprocess.run(["ssh", "-F", str(config), host, "true"], timeout=30, check=False).returncode == 0

        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
        known.write_text(f"{portal_server.address} {' '.join((tmp_path / 'other.pub').read_text().split()[:2])}\n")
        changed = _one_line(run_portal(alice, *argv, env={**FABRIC, "PORTAL_FABRIC_ACCEPT_NEW_HOST_KEY": "1"}))
        assert "does not match" in changed and "ssh-keygen -R" in changed, changed
    finally:
        config.unlink(missing_ok=True)
        known.unlink(missing_ok=True)

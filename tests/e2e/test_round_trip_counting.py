"""Round trips counted in the test host's sshd log, and the delaying relay in front of its sshd."""

from __future__ import annotations

import time

import pytest

from portal_tasks.testing.relay import DelayRelay, relayed_alias
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.trips import LogWindow, Trips, sshd_log

pytestmark = pytest.mark.e2e

N = 4


@pytest.fixture
def log(portal_server: TestServer):
    try:
        return sshd_log(portal_server.run_id)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _master(user: TestUser, host: str) -> list[str]:
    """Start an OpenSSH master for user (no session); returns the options that use it."""
    ctl = str(user.runtime / "bench-ctl-%C")
    res = user.ssh(host, options=["-o", "ControlMaster=yes", "-o", f"ControlPath={ctl}", "-o", "ControlPersist=60",
                                  "-f", "-N"])
    assert res.ok, res
    return ["-o", "ControlMaster=no", "-o", f"ControlPath={ctl}"]


def test_n_commands_over_a_master_are_n_sessions_and_no_connection(portal_server, alice, bob, log) -> None:
    with LogWindow(log, alice.name) as before_master:
        over = _master(alice, portal_server.host)
    assert before_master.trips == Trips(connections=1, sessions=0)
    with LogWindow(log, alice.name) as window:
        for _ in range(N):
            assert alice.ssh(portal_server.host, "true", options=over).ok
        assert alice.ssh(portal_server.host, options=[*over, "-O", "check"]).ok  # local to the master: not counted
        assert bob.ssh(portal_server.host, "true").ok  # another user: not counted
    assert window.trips == Trips(connections=0, sessions=N)


def test_a_plain_ssh_is_one_connection_and_one_session(portal_server, alice, log) -> None:
    with LogWindow(log, alice.name) as window:
        assert alice.ssh(portal_server.host, "true", options=["-o", "ControlPath=none"]).ok
    assert window.trips == Trips(connections=1, sessions=1)
    assert window.trips.total == 2


def test_ssh_through_the_delay_relay_reaches_the_host_and_pays_the_delay(portal_server, alice, log) -> None:
    delay = 0.05
    with DelayRelay(portal_server.address, 22, delay) as relay, \
            relayed_alias(alice.ssh_config, "matagorda-slow", relay, portal_server.address) as slow:
        with LogWindow(log, alice.name) as window:
            start = time.perf_counter()
            res = alice.ssh(slow, "id -un", options=["-o", "ControlPath=none"])
            seconds = time.perf_counter() - start
    assert res.ok and res.stdout.strip() == alice.name, res
    assert window.trips == Trips(connections=1, sessions=1)
    # TCP handshake, banners + key exchange, auth, channel open + exec: at least 4 round trips of 2 × delay
    assert seconds >= 4 * 2 * delay
    assert "matagorda-slow" not in alice.ssh_config.read_text()  # the alias is gone again

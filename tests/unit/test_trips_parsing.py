"""Round trips counted in an sshd log (portal_tasks.testing.trips): lines as OpenSSH 9.2 writes them."""

from __future__ import annotations

from pathlib import Path

from portal_tasks.testing.trips import LogWindow, Trips, count

#: a master (no session), three `ssh -S ctl host true`, a forward, then one plain `ssh host true`; bob once
LOG = """\
Connection from 10.231.8.1 port 38464 on 10.231.8.2 port 22 rdomain ""
Accepted key ED25519 SHA256:MU7UgeAnIJAi9gphrURGiDVr7bk0KGUj3hLkLuHE/jw found at /home/x/.ssh/authorized_keys:1
Postponed publickey for portal-alice-e4eb from 10.231.8.1 port 38464 ssh2 [preauth]
Accepted key ED25519 SHA256:MU7UgeAnIJAi9gphrURGiDVr7bk0KGUj3hLkLuHE/jw found at /home/x/.ssh/authorized_keys:1
Accepted publickey for portal-alice-e4eb from 10.231.8.1 port 38464 ssh2: ED25519 SHA256:MU7UgeAnIJAi9gphrURGiDVr7bk0KGUj3hLkLuHE/jw
User child is on pid 7751
debug1: server_input_channel_open: ctype session rchan 2 win 2097152 max 32768
debug1: session_input_channel_req: session 0 req exec
Starting session: command for portal-alice-e4eb from 10.231.8.1 port 38464 id 0
Close session: user portal-alice-e4eb from 10.231.8.1 port 38464 id 0
Starting session: command for portal-alice-e4eb from 10.231.8.1 port 38464 id 0
Close session: user portal-alice-e4eb from 10.231.8.1 port 38464 id 0
Starting session: command on pts/3 for portal-alice-e4eb from 10.231.8.1 port 38464 id 0
Close session: user portal-alice-e4eb from 10.231.8.1 port 38464 id 0
debug1: server_input_channel_open: ctype direct-tcpip rchan 1 win 2097152 max 32768
debug1: server_request_direct_tcpip: originator 127.0.0.1 port 37412, target 127.0.0.1 port 22
debug1: server_input_channel_open: ctype direct-streamlocal@openssh.com rchan 4 win 2097152 max 32768
Connection from 10.231.8.1 port 38476 on 10.231.8.2 port 22 rdomain ""
Accepted publickey for portal-alice-e4eb from 10.231.8.1 port 38476 ssh2: ED25519 SHA256:MU7U
Starting session: command for portal-alice-e4eb from 10.231.8.1 port 38476 id 0
Received disconnect from 10.231.8.1 port 38476:11: disconnected by user
Accepted publickey for portal-bob-e4eb from 10.231.8.1 port 38480 ssh2: ED25519 SHA256:abc
Starting session: subsystem 'sftp' for portal-bob-e4eb from 10.231.8.1 port 38480 id 0
"""


def test_counts_one_users_connections_and_sessions() -> None:
    got = count(LOG.splitlines(), "portal-alice-e4eb")
    assert (got.connections, got.sessions) == (2, 4)
    assert got.kinds == ("command", "command", "command", "command")  # the tty is not part of the kind


def test_forward_channels_are_counted_for_every_user() -> None:
    assert count(LOG.splitlines(), "portal-alice-e4eb").forwards == 2
    assert count(LOG.splitlines(), "portal-bob-e4eb") == Trips(connections=1, sessions=1, forwards=2)


def test_every_user_when_none_is_named() -> None:
    got = count(LOG.splitlines())
    assert (got.connections, got.sessions, got.forwards, got.total) == (3, 5, 2, 10)
    assert got.kinds[-1] == "subsystem 'sftp'"


def test_a_user_whose_name_is_a_prefix_of_another_is_not_mixed_up() -> None:
    assert count(LOG.splitlines(), "portal-alice").sessions == 0


def test_describe_and_add() -> None:
    t = Trips(1, 3, 0) + Trips(0, 1, 1)
    assert t.total == 6
    assert t.describe() == "6 = 1 connection + 4 sessions + 1 forward channel"


def test_log_window_counts_only_what_was_added(tmp_path: Path) -> None:
    log = tmp_path / "sshd.log"
    lines = LOG.splitlines(keepends=True)
    log.write_text("".join(lines[:12]))  # the master and two sessions, before the window
    with LogWindow(log, "portal-alice-e4eb", settle=0) as window:
        with open(log, "a") as f:
            f.writelines(lines[12:])
    assert window.trips == Trips(connections=1, sessions=2, forwards=2)

"""Round trips to a test host, counted from outside portal: in the host's sshd log.

The test hosts' sshd runs with ``LogLevel VERBOSE`` and ``-E LOGFILE``. OpenSSH (9.x) writes there

    Accepted publickey for USER from ADDR port N ssh2: ED25519 SHA256:...      one per new connection
    Starting session: command for USER from ADDR port N id K                  one per session channel

and the second line comes once for every ``ssh -S CTL host CMD`` over a master (the session
channel's exec request), for every helper call, and for a plain ``ssh host CMD`` (which also
writes the first line). ``ssh -O check`` and ``ssh -O forward -L`` stay in the laptop's master
and write nothing: they cost no round trip to the host. A connection through a forward (e.g. a
check that a kept forward still answers) opens a ``direct-tcpip`` (or ``direct-streamlocal``)
channel, which sshd names only at ``LogLevel DEBUG1``, and without the user:

    debug1: server_input_channel_open: ctype direct-tcpip rchan 3 win 2097152 max 32768

``DEBUG_LOGS`` is the sshd config block that turns it on (``TripCountingServer`` is the netns test
server with it). So, for one user during one command,

    round trips = new connections + session channels + forward channels

(a new connection costs a few network round trips of its own: TCP, key exchange, auth; it is
counted as one; forward channels are counted for every user, so measure one user at a time). ``LogWindow`` marks the log's end before a command and counts what the command
added; it reads only the lines for its user, so other users' traffic in the same run does not count.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from portal_tasks.testing.netns import BASE_ROOT, PREFIX, NetnsServer

#: session types OpenSSH names: "command", "shell", "subsystem 'sftp'", "forced-command (config) '...'"
SESSION = re.compile(r"Starting session: (?P<kind>.+?)(?: on (?P<tty>\S+))? for (?P<user>\S+) from \S+ port \d+ id \d+")
FORWARD = re.compile(r"server_input_channel_open: ctype (?P<kind>direct-tcpip|direct-streamlocal\S*) ")
CONNECTION = re.compile(r"Accepted (?:publickey|password|keyboard-interactive\S*|key) for (?P<user>\S+) from \S+ port \d+")


@dataclass(frozen=True)
class Trips:
    """What one user's command cost on the host: new SSH connections and session channels."""

    connections: int = 0
    sessions: int = 0
    forwards: int = 0  # channels through forwards (any user's; only in a DEBUG1 log)
    kinds: tuple[str, ...] = field(default=(), compare=False)  # the session kinds, in order

    @property
    def total(self) -> int:
        return self.connections + self.sessions + self.forwards

    def __add__(self, other: Trips) -> Trips:
        return Trips(self.connections + other.connections, self.sessions + other.sessions,
                     self.forwards + other.forwards, self.kinds + other.kinds)

    def describe(self) -> str:
        """e.g. "5 = 1 connection + 3 sessions + 1 forward channel"."""
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'s' * (count != 1)}"
        return f"{self.total} = {n(self.connections, 'connection')} + {n(self.sessions, 'session')} + " \
               f"{n(self.forwards, 'forward channel')}"


def count(lines: Iterable[str], user: str | None = None) -> Trips:
    """Connections and sessions of user (every user when None) in sshd log lines."""
    connections = sessions = forwards = 0
    kinds: list[str] = []
    for line in lines:
        m = SESSION.search(line)
        if m and (user is None or m.group("user") == user):
            sessions += 1
            kinds.append(m.group("kind"))
            continue
        m = CONNECTION.search(line)
        if m and (user is None or m.group("user") == user):
            connections += 1
            continue
        if FORWARD.search(line):
            forwards += 1
    return Trips(connections, sessions, forwards, tuple(kinds))


class LogWindow:
    """``with LogWindow(log, user) as w: command()`` then ``w.trips``: what the command added to log.

    sshd writes a line when a session starts, while the command still runs; leaving the block waits a
    moment (``settle``) for lines of the command's last session to reach the file."""

    def __init__(self, log: Path, user: str | None = None, *, settle: float = 0.2) -> None:
        self.log, self.user, self.settle = Path(log), user, settle
        self.start = 0
        self.trips = Trips()

    def __enter__(self) -> LogWindow:
        self.start = self.log.stat().st_size
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(self.settle)
        with open(self.log, "rb") as f:
            f.seek(self.start)
            text = f.read().decode("utf-8", "replace")
        self.trips = count(text.splitlines(), self.user)


def sshd_log(run_id: str, label: str = "matagorda", base_root: Path | None = None) -> Path:
    """The sshd log of netns test host `label` of run `run_id` (raises FileNotFoundError when absent)."""
    path = (base_root or BASE_ROOT) / f"{PREFIX}{run_id}" / "sshd" / label / "sshd.log"
    if not path.exists():
        raise FileNotFoundError(f"no sshd log at {path} (only the netns test server writes one)")
    return path


#: appended to the test host's sshd config: DEBUG1 after authentication (forward channels get a line)
DEBUG_LOGS = "Match all\n    LogLevel DEBUG1\n"


class TripCountingServer(NetnsServer):
    """The netns test server whose sshds also log forward channels (``DEBUG_LOGS``)."""

    sshd_extra = DEBUG_LOGS

"""What every benchmark gets: the test server, its users, and timed `portal` / `ssh` calls from their laptops.

Each user's `portal` and `ssh` runs in a session of its own (``OWN_SESSION``), as a command typed in a terminal
of its own does. The kernel's autogroup scheduling shares the CPU out per session: run from the benchmark's
own session, twenty users' laptops would share one twentieth of what one laptop gets here (while on the
server each user's windows are sessions of their own), where in truth each laptop is a machine of its own.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from portal_tasks.remote.tmux import window_target
from portal_tasks.runner import Result, run
from portal_tasks.testing.flows import http_get
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.trips import LogWindow, Trips


#: each user's laptop commands in a session of their own (see the module's docstring)
OWN_SESSION = True


@dataclass
class Bench:
    """One run: the server, the env, and how small to keep things (``quick`` for the smoke test)."""

    server: TestServer
    quick: bool = False
    env_name: str = "a"
    notes: list[str] = field(default_factory=list)
    #: the host's sshd log, where round trips are counted (None: they are not, e.g. a server of another backend)
    sshd_log: Path | None = None

    @property
    def env(self) -> str:
        return str(self.server.envs[self.env_name])

    @property
    def python(self) -> str:
        """The env's python on the host."""
        return f"{self.env}/bin/python"

    @property
    def host(self) -> str:
        return self.server.host

    def user(self, role: str = "alice") -> TestUser:
        return self.server.user(role)

    def extra_users(self) -> list[TestUser]:
        """Every user but notmux (its host has no tmux)."""
        return [u for r, u in self.server.users.items() if r != "notmux"]

    def portal(self, user: TestUser, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Result:
        """The `portal` CLI as user on their laptop (a new python, as a person runs it)."""
        return run([sys.executable, "-m", "portal_tasks", *args], timeout=timeout, env=portal_env(user, env),
                   cwd=str(user.laptop), new_session=OWN_SESSION)

    def up(self, user: TestUser, *extra: str, timeout: float = 300, host: str | None = None) -> tuple[float, Result]:
        """Seconds of `portal up --no-attach --no-browser` and its result (raises when it failed)."""
        start = time.perf_counter()
        res = self.portal(user, "up", "--host", host or self.host, "--env", self.env, "--no-attach", "--no-browser",
                          *extra, timeout=timeout)
        seconds = time.perf_counter() - start
        if not res.ok:
            raise RuntimeError(f"portal up as {user.name} failed (rc {res.rc}): {res.stderr[-1500:]}")
        return seconds, res

    @contextmanager
    def trips(self, user: TestUser) -> Iterator[list[Trips]]:
        """``with b.trips(user) as t: ...`` then ``t[0]``: the round trips user's block made to the host,
        counted in its sshd log (``t`` stays empty without a log). Measure one user at a time."""
        out: list[Trips] = []
        if self.sshd_log is None:
            yield out
            return
        window = LogWindow(self.sshd_log, user.name)
        with window:
            yield out
        out.append(window.trips)

    def counted_up(self, user: TestUser, *extra: str, timeout: float = 300,
                   host: str | None = None) -> tuple[float, Trips | None, Result]:
        """`up` as in up(), and its round trips to the host (None without an sshd log)."""
        with self.trips(user) as trips:
            seconds, res = self.up(user, *extra, timeout=timeout, host=host)
        return seconds, (trips[0] if trips else None), res

    def ssh_true(self, user: TestUser, host: str | None = None) -> float:
        """Seconds of one plain `ssh host true` over a fresh connection (no control master)."""
        argv = user.ssh_argv(host or self.host, "true", options=["-o", "ControlMaster=no", "-o", "ControlPath=none"])
        start = time.perf_counter()
        res = run(argv, timeout=30, new_session=OWN_SESSION)
        seconds = time.perf_counter() - start
        if not res.ok:
            raise RuntimeError(f"ssh true failed: {res.tail()}")
        return seconds

    def host_python(self, user: TestUser, script: str, *, args: list[str] | None = None,
                    environment: dict[str, str] | None = None, timeout: float = 120) -> Result:
        """Run ``python -c script args`` with the env's python on the host as user (plain ssh).

        ``-c``, not a script on stdin: multiprocessing's spawn (Dask's nannies) re-imports ``__main__``.
        """
        assigns = [f"{k}={v}" for k, v in (environment or {}).items()]
        command = shlex.join([*(["env", *assigns] if assigns else []), self.python, "-c", script, *(args or [])])
        res = run(user.ssh_argv(self.host, command), timeout=timeout)
        if not res.ok:
            raise RuntimeError(f"host python as {user.name} failed (rc {res.rc}): {res.stderr[-1500:]}")
        return res

    def reset(self, user: TestUser) -> None:
        """Nothing of user's runs any more, on the host or the laptop (as between tests)."""
        if self.server.reset_user is None:
            raise RuntimeError("this test server cannot reset users")
        self.server.reset_user(user)


WINDOW = re.compile(r"IPython in env .* started in window (ipython-\S+) with the cluster's address")
#: what portal's IPython shows once its startup lines ran (``client`` connected, or a line saying why not), read
#: below its banner (the typed command line above it holds the same words)
BANNER, PROMPT, NO_CLIENT = "An enhanced Interactive Python", "In [1]:", "portal: no Dask client yet ("


def ipython_ready(b: Bench, user: TestUser, output: str, start: float, wait: float, every: float = 0.5) -> float | None:
    """Seconds from ``start`` until the user's IPython window (named in `up`'s output) shows its prompt with
    ``client`` connected: what the by-hand side waits for (`up` returns once IPython runs in its window and the
    cluster is ready). Looked at every ``every`` s (a tmux process each); None when it did not within ``wait``
    or connected no client."""
    found = WINDOW.search(output)
    if found is None or b.server.admin_run is None:
        return None
    argv = ["tmux", "capture-pane", "-p", "-t", window_target("portal", found.group(1))]
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        _, banner, below = b.server.admin_run(argv, user=user, timeout=30).stdout.rpartition(BANNER)
        if banner and NO_CLIENT in below:
            return None
        if banner and PROMPT in below:  # no banner yet: IPython still imports
            return time.perf_counter() - start
        time.sleep(every)
    return None


def first_line(argv: list[str], stdin: str | None = None, timeout: float = 120) -> tuple[float, str, int | None, str]:
    """Run argv (a fresh ssh), feed it ``stdin``; seconds until its first line of output, that line, its exit
    code and the tail of its stderr (the rest of its output is read but not timed)."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else None, stdout=subprocess.PIPE,
                                stderr=errors, text=True, start_new_session=OWN_SESSION)
        try:
            assert proc.stdout is not None
            if stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            line = proc.stdout.readline()  # bounded by the script itself (its waits end), then by the kill below
            seconds = time.perf_counter() - start
            proc.stdout.read()
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        return seconds, line, proc.returncode, errors.read()[-1500:]


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float, what: str) -> None:
    """Read ``proc``'s output (an ssh's terminal) until ``marker`` shows; raises ``what`` with the output's tail
    when it ends or ``timeout`` passes first."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while marker not in out:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError(f"{what}: {out[-1500:].decode(errors='replace')}")
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait(5)
                continue
            out += chunk


def lab_answers(url: str) -> bool:
    """JupyterLab is ready on the laptop: GET /lab?token=... through the forward gives 200 (as the e2e tests check)."""
    try:
        return http_get(url, timeout=5)[0] == 200
    except OSError:
        return False


def laptop_path(user: TestUser, *parts: str) -> Path:
    return Path(user.laptop, *parts)

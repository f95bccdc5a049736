"""jupyter-forward (PyPI 2022.9.10), the baseline of (7): in a venv of its own on the laptop, run as a person
without conda runs it against the test host, timed until JupyterLab answers through its forward.

What 2022.9.10 does (read in its source; nothing of it is in this repository): a Fabric ``Connection(host)``
(paramiko; the laptop's ``~/.ssh/config``, the key given with ``-i``), ``$SHELL -lc "which jupyter"`` as its
sanity check (without ``--conda-env`` nothing is activated: jupyter must be on the login shell's PATH; with it,
``source activate ENV`` or ``conda activate ENV``, conda's commands), a log file in ``$TMPDIR`` or
``~/.jupyter_forward``, ``jupyter lab --no-browser --ip=$(hostname -f) > LOG 2>&1`` over a pty, ``cat LOG`` in a
loop until "is running at:", a ``forward_local`` from ``--port`` to the URL's host and port, a fixed 3 s wait,
``$BROWSER`` at ``localhost:PORT/?token=...`` and ``tail -f LOG`` until interrupted (^C).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.context import Bench, lab_answers
from portal_tasks.runner import run
from portal_tasks.testing.envs import ENVS_ROOT
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.procs import kill_and_wait, pids_of_uid
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.trips import Trips
from portal_tasks.testing.waiting import WaitTimeout, retry_until

VERSION = "2022.9.10"
REQUIREMENT = f"jupyter-forward=={VERSION}"
#: the laptop's venv of jupyter-forward, beside the test envs; built by the bench when missing
VENV = ENVS_ROOT.parent / "jf-venv"
COMPLETE_MARK = ".portal-complete"
#: how long one start may take before it counts as failed (portal's own JupyterLab wait is 90 s)
START_SECONDS = 180.0
#: the login file that puts the env on the PATH of the host's login shells while jupyter-forward runs
PROFILE = ".bash_profile"
TOKEN = re.compile(r"/lab\?token=([0-9a-f]+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotRun(Exception):
    """jupyter-forward could not be run or did not get JupyterLab to answer; the message says why."""


def _mark() -> str:
    return json.dumps({"req": REQUIREMENT, "python": sys.version})


def program(build: bool) -> Path:
    """The venv's ``jupyter-forward``; the venv is built (``pip install``, needs PyPI) when missing and build is
    True, else NotRun says it is not there."""
    binary = VENV / "bin" / "jupyter-forward"
    mark = VENV / COMPLETE_MARK
    if mark.exists() and mark.read_text() == _mark():
        return binary
    if not build:
        raise NotRun(f"not installed in {VENV} (a full run installs {REQUIREMENT} there)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".jf-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs wait for one builder
        if mark.exists() and mark.read_text() == _mark():
            return binary
        for argv in ([sys.executable, "-m", "venv", "--clear", str(VENV)],
                     [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", REQUIREMENT]):
            print(f"bench: {shlex.join(argv)}", file=sys.stderr, flush=True)
            res = run(argv, timeout=900, env={"PIP_NO_INPUT": "1"})
            if not res.ok:
                raise NotRun(f"`{shlex.join(argv)}` failed (rc {res.rc}): {res.tail()}")
        mark.write_text(_mark())
    return binary


def command(binary: Path, host: str, port: int, key: Path) -> list[str]:
    """The argv a person types: host, the laptop port to forward to, the key (no conda env: there is none)."""
    return [str(binary), host, "--port", str(port), "--identity", str(key)]


def profile_text(env: str) -> str:
    """The host's login file while jupyter-forward runs: the user's ~/.profile, then the env's bin first on PATH."""
    return (f'[ -f "$HOME/.profile" ] && . "$HOME/.profile"\n'
            f"PATH={shlex.quote(env + '/bin')}:$PATH; export PATH  # jupyter-forward: JupyterLab of the venv\n")


def unsupported(b: Bench, user: TestUser) -> str | None:
    """Why this test server cannot host the baseline (None: it can)."""
    if b.server.host_path is None:
        return "the test server does not show the host's files and processes (its JupyterLab log, the login file)"
    if user.ssh_config != user.laptop / ".ssh" / "config":
        return f"the laptop's ssh config {user.ssh_config} is not HOME/.ssh/config, where Fabric reads it"
    return None


def _host(b: Bench, path: Path) -> Path:
    assert b.server.host_path is not None
    return b.server.host_path(str(path))


@contextmanager
def on_login_path(b: Bench, user: TestUser) -> Iterator[None]:
    """The env's JupyterLab on the PATH of user's login shells on the host (the login file goes after)."""
    path = _host(b, user.home / PROFILE)
    if path.exists():
        raise NotRun(f"{user.name} already has a ~/{PROFILE} on the host; not replacing it")
    path.write_text(profile_text(b.env))
    os.chown(path, user.uid, -1)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Started:
    """One cold start by jupyter-forward."""

    ready: float  # seconds until GET /lab?token= answered 200 through its forward on the laptop
    shown: float | None  # seconds until it printed the URL (after its fixed 3 s wait), None: not seen
    lab_ended: bool  # True: its JupyterLab on the host ended when it was interrupted
    trips: Trips | None


class _Output:
    """jupyter-forward's output, read in a thread: the lines, and when the URL line came."""

    def __init__(self, proc: subprocess.Popen[str], start: float) -> None:
        self.lines: list[str] = []
        self.shown: float | None = None
        self._proc, self._start = proc, start
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if self.shown is None and "Jupyter Lab URL:" in line:
                self.shown = time.perf_counter() - self._start
            self.lines.append(line.rstrip())

    def tail(self, n: int = 6) -> str:
        """Its last lines that say something (no colours, no rules of stars), joined."""
        said = [ANSI.sub("", x).strip("* ") for x in self.lines]
        return "; ".join([x for x in said if x][-n:])  # no "|": it goes into a table cell


def _token(b: Bench, user: TestUser) -> str | None:
    """The token JupyterLab wrote to jupyter-forward's log on the host, the moment it is there."""
    for log in sorted(_host(b, user.home / ".jupyter_forward").glob("log_*.txt")):
        found = TOKEN.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
    return None


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """^C, as a person stops it (it then closes its ssh connection); by pid, harder if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill_and_wait([proc.pid])
            proc.wait(5)


def _end_on_host(user: TestUser) -> bool:
    """Wait (bounded) for what jupyter-forward started on the host to end; end what is left by pid.
    True when nothing was left. The user was reset before the start: every process of theirs is its."""
    try:
        retry_until(lambda: not pids_of_uid(user.uid), 10, 0.1, what="jupyter-forward's processes on the host")
        return True
    except WaitTimeout:
        left = pids_of_uid(user.uid)
        kill_and_wait(left)
        return False


def cold(b: Bench, user: TestUser, binary: Path) -> Started:
    """jupyter-forward from a laptop with nothing of user's running, until JupyterLab answers through its
    forward; then ^C, and the host is cleaned. The user is reset by the caller before and after."""
    port = free_port()
    env = {**os.environ, **portal_env(user, {"BROWSER": "true", "COLUMNS": "200", "TERM": "dumb"})}
    env.pop("SSH_AUTH_SOCK", None)  # the test key only (jupyter-forward asks Fabric to forward an agent)
    with on_login_path(b, user), b.trips(user) as counted:
        start = time.perf_counter()
        proc = subprocess.Popen(command(binary, b.host, port, user.key), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=str(user.laptop), start_new_session=True)  # no terminal: no password prompt
        out = _Output(proc, start)
        ready, exited = None, None
        try:
            deadline = start + START_SECONDS
            url = None
            while time.perf_counter() < deadline and proc.poll() is None:
                if url is None:
                    token = _token(b, user)
                    url = f"http://127.0.0.1:{port}/lab?token={token}" if token else None
                if url is not None and lab_answers(url):
                    ready = time.perf_counter() - start
                    break
                time.sleep(0.02)
            exited = proc.poll()
            if ready is not None:  # what a person gets: the URL it prints after its fixed wait
                with suppress(WaitTimeout):  # not printed: shown stays None
                    retry_until(lambda: out.shown is not None or proc.poll() is not None, 15, 0.05)
        finally:
            _interrupt(proc)
            out.thread.join(5)
            lab_ended = _end_on_host(user)
    if ready is None:
        why = f"exited (rc {exited})" if exited is not None else f"JupyterLab did not answer within {START_SECONDS:g} s"
        raise NotRun(f"{why}: {out.tail()}")
    return Started(ready, out.shown, lab_ended, counted[0] if counted else None)

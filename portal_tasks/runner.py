"""The one place that starts processes: run an argv, return a Result."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

log = logging.getLogger("portal")

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.DOTALL)
_TOKEN = re.compile(r"(token[\"']?\s*[=: ]\s*[\"']?)[A-Za-z0-9_\-.~%]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with PEM blocks and token values blanked, for debug logs."""
    return _TOKEN.sub(r"\1***", _PEM.sub(r"-----BEGIN \1----- *** -----END \1-----", text))


@dataclass(frozen=True)
class Result:
    """What a finished command left: its argv, exit code and output."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines of stderr (else stdout), for error messages."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return " / ".join(text[-lines:])


def run(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = False,
) -> Result:
    """Run argv to completion; never raises for a non-zero exit (the caller decides).

    A missing program gives rc 127 and a timeout rc 124, as a shell would. ``new_session``: argv runs in a
    session of its own (setsid), as a command typed in a terminal of its own does.
    """
    log.debug("run: %s", redact(shlex.join(argv)))
    full_env = None if env is None else {**os.environ, **env}
    binary = isinstance(input, bytes)
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=not binary,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
            start_new_session=new_session,
        )
    except FileNotFoundError as exc:
        return Result(tuple(argv), 127, "", f"{argv[0]}: command not found ({exc.strerror})")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Result(tuple(argv), 124, out, err + f"\ntimed out after {timeout:g}s")
    if binary:
        return Result(tuple(argv), proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start argv detached from our stdio (for long-lived helpers such as a lock holder)."""
    log.debug("spawn: %s", redact(shlex.join(argv)))
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env
    )


def run_daemon(argv: Sequence[str], *, timeout: float | None = None, interactive: bool = False) -> Result:
    """Run a command that forks a daemon (``ssh -f``): its output goes to a file, not a pipe,
    so the daemon keeping the descriptor open cannot hang us. ``interactive`` keeps our stdin
    (for a password or 2FA prompt)."""
    log.debug("run (daemon): %s", redact(shlex.join(argv)))
    with tempfile.TemporaryFile(mode="w+") as errfile:
        try:
            proc = subprocess.Popen(list(argv), stdin=None if interactive else subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=errfile)
        except FileNotFoundError as exc:
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found ({exc.strerror})")
        # a blocking wait sees the exit at once (Popen.wait(timeout) polls, up to 50 ms late: the time an
        # `ssh -f` master takes to connect would grow by that); a timer ends it when it takes too long
        fired: list[bool] = []

        def too_long() -> None:
            fired.append(True)
            proc.kill()

        late = threading.Timer(timeout, too_long) if timeout is not None else None
        if late is not None:
            late.daemon = True
            late.start()
        try:
            rc = proc.wait()
        finally:
            if late is not None:
                late.cancel()
        if fired:
            rc = 124
        errfile.seek(0)
        return Result(tuple(argv), rc, "", errfile.read())


def start_detached(argv: Sequence[str], *, output: str) -> int:
    """Start argv in a session of its own (it outlives us and our terminal), its output appended to
    the file ``output`` (0600); returns its pid."""
    log.debug("start detached: %s", shlex.join(argv))
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True)
    finally:
        os.close(fd)
    return proc.pid

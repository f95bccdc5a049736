"""Find and end processes by owner or by a marker in their environment (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing.waiting import WaitTimeout, retry_until


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pids_of_uid(uid: int, *, zombies: bool = False) -> list[int]:
    """Processes whose real, effective or saved uid is uid (zombies only if asked: they run nothing)."""
    found = []
    for pid in _all_pids():
        try:
            status = _status(pid)
        except OSError:
            continue  # exited meanwhile
        ours = uid in [int(x) for x in status.get("Uid", "").split()[:3]]
        if ours and (zombies or not status.get("State", "").startswith("Z")):
            found.append(pid)
    return found


def pids_with_env(name: str, value: str) -> list[int]:
    """Processes started with NAME=VALUE in their environment (how the fixtures mark laptop processes)."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def pid_alive(pid: int) -> bool:
    """True while pid runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_uid(uid: int, gid: int | None = None, seconds: float = 10.0) -> None:
    """End every process of uid, including detached ones (tmux servers, dask), and wait until none is left.

    A `kill -KILL -1` run as that user reaches all of its processes at once, so forking
    parents (a nanny restarting workers) cannot outrun a scan of /proc.
    """
    if uid == 0:
        raise ValueError("refusing to kill the processes of root")
    kill_pids(pids_of_uid(uid), signal.SIGTERM)
    ids = [f"--reuid={uid}", f"--regid={gid if gid is not None else uid}", "--clear-groups"]

    def none_left() -> bool:
        left = pids_of_uid(uid)
        if left:
            run(["setpriv", *ids, "kill", "-KILL", "-1"], timeout=10)
            kill_pids(left)
        return not pids_of_uid(uid)

    try:
        retry_until(none_left, seconds, 0.1, what=f"processes of uid {uid} to end")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; still running: {pids_of_uid(uid)}") from None


def kill_and_wait(pids: list[int], seconds: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left, and wait for the pids to be gone."""
    kill_pids(pids, signal.SIGTERM)
    try:
        retry_until(lambda: not any(pid_alive(p) for p in pids), min(2.0, seconds), 0.05)
    except WaitTimeout:
        kill_pids(pids)
        retry_until(lambda: not any(pid_alive(p) for p in pids), seconds, 0.05, what=f"pids {pids} to end")


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[list[int]]:
    """SIGSTOP pids for the block (a host that hangs), SIGCONT them after it, also when it fails."""
    try:
        kill_pids(pids, signal.SIGSTOP)
        yield pids
    finally:
        kill_pids(pids, signal.SIGCONT)

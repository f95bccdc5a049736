"""Test users on this machine: created with a tag naming their owner pid, deleted without a trace."""

from __future__ import annotations

import os
import pwd
import re
import shutil
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing.procs import kill_uid, pid_alive
from portal_tasks.testing.server import TestServerError
from portal_tasks.testing.waiting import retry_until

TAG = "portal-testing"  # first word of the GECOS field of every user made here
_TAG_RE = re.compile(rf"^{TAG} pid=(\d+) run=(\S+)$")


def _must(argv: list[str], what: str) -> None:
    res = run(argv, timeout=60)
    if not res.ok:
        raise TestServerError(f"{what} failed (rc {res.rc}): {res.tail()}", hint=f"Try `{' '.join(argv)}` by hand.")


def create_user(name: str, home: Path, run_id: str, shell: str = "/bin/bash") -> pwd.struct_passwd:
    """A user with a home dir, a usable password field for key logins (`*`, not locked `!`)."""
    _must(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", shell, "--user-group",
         "--password", "*", "--comment", f"{TAG} pid={os.getpid()} run={run_id}", name],
        f"useradd {name}",
    )
    home.chmod(0o700)
    return pwd.getpwnam(name)


def delete_user(name: str) -> None:
    """Kill the user's processes, remove its files in /tmp and /dev/shm, then `userdel -r`."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return
    if not entry.pw_gecos.startswith(TAG):
        raise TestServerError(f"refusing to delete user {name}: not made by the test server (GECOS {entry.pw_gecos!r})")
    kill_uid(entry.pw_uid, entry.pw_gid)
    remove_files_of_uid(entry.pw_uid)

    def deleted() -> bool:
        # rc 8: a zombie of the user is not reaped yet; rc 12: home already gone, user deleted anyway
        res = run(["userdel", "--remove", name], timeout=60)
        if res.rc not in (0, 8, 12):
            raise TestServerError(f"userdel {name} failed (rc {res.rc}): {res.tail()}")
        return res.rc != 8

    retry_until(deleted, 15, 0.2, what=f"userdel {name}", retry_on=())


def remove_files_of_uid(uid: int, places: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")) -> None:
    """Top-level entries a user left in shared temp dirs (tmux sockets, scratch space)."""
    for place in places:
        try:
            entries = list(Path(place).iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.lstat().st_uid != uid:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
            except OSError:
                continue


def tagged_users() -> list[tuple[str, int, str]]:
    """(name, owner pid, run id) of every user the test server made, on this machine."""
    out = []
    for entry in pwd.getpwall():
        m = _TAG_RE.match(entry.pw_gecos)
        if m:
            out.append((entry.pw_name, int(m.group(1)), m.group(2)))
    return out


def leftover_users() -> list[str]:
    """Users made by a test run whose pytest process is gone."""
    return [name for name, pid, _ in tagged_users() if not pid_alive(pid)]

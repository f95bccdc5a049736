"""Test users: made on this machine with a tag naming their owner pid, deleted without a trace; and the users
of one netns run with their laptops (`RunUsers`: a key, an ssh config for the run's hosts, known_hosts)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from portal_tasks.runner import run
from portal_tasks.testing import roles as roles_mod
from portal_tasks.testing.errors import each_tried
from portal_tasks.testing.procs import kill_and_wait, kill_uid, pid_alive, pids_with_env
from portal_tasks.testing.server import TestServerError, TestUser, close_masters
from portal_tasks.testing.waiting import retry_until

if TYPE_CHECKING:
    from portal_tasks.testing.hosts import Nets

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


# -- the users of one netns run, and their laptops ---------------------------------------------

LAPTOP_MARK = "PORTAL_TEST_LAPTOP"  # env var naming the laptop dir of processes the fixtures start


def ssh_config(user: str, key: Path, known_hosts: Path, nets: Nets) -> str:
    """A laptop's ~/.ssh/config: the hosts' aliases at this run's addresses, the user's key, strict known_hosts."""
    return f"""\
# the laptop of {user}: made by the portal test server
Host matagorda
    HostName {nets.host}
Host login
    HostName {nets.login}
Host matagorda-via-login
    HostName {nets.inner}
    ProxyJump login
Host matagorda2
    HostName {nets.second}
Host *
    User {user}
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts}
    StrictHostKeyChecking accept-new
    BatchMode yes
    ConnectTimeout 10
    ServerAliveInterval 5
"""


class RunUsers:
    """The users one run makes (`portal-ROLE-TOKEN`, homes under base/home) and their laptops (base/laptop/ROLE,
    with a key and an ssh config for the run's nets; a short XDG_RUNTIME_DIR under runtime/ROLE)."""

    def __init__(self, run_id: str, token: str, base: Path, runtime: Path) -> None:
        self.run_id, self.token, self.base, self.runtime = run_id, token, base, runtime
        self.names: list[str] = []
        self.laptops: list[Path] = []
        self.known_hosts: list[str] = []  # the hosts' key lines, for laptops made later (lazy roles)
        self._keep: dict[Path, set[str]] = {}  # a home's or laptop's entries as made: reset keeps them

    def name(self, role: str) -> str:
        return f"portal-{role}-{self.token}"

    @property
    def notmux_bin(self) -> Path:
        return self.base / "notmux-bin"

    def make_notmux_bin(self) -> Path:
        """A PATH directory with everything of /usr/bin except tmux (the PATH of user notmux)."""
        d = self.notmux_bin
        d.mkdir(mode=0o755)
        for entry in Path("/usr/bin").iterdir():
            if entry.name != "tmux":
                (d / entry.name).symlink_to(entry)
        return d

    def add_known_host(self, line: str) -> None:
        """A host's key line, in every laptop's known_hosts (and those made later)."""
        self.known_hosts.append(line)
        for laptop in self.laptops:
            with open(laptop / ".ssh" / "known_hosts", "a") as f:
                f.write(line)

    def make(self, role: str, nets: Nets, envs: dict[str, Path], spec: roles_mod.Role | None = None) -> TestUser:
        """The user of role on the hosts and their laptop; a lazy role's `spec` (roles.py) shapes the account."""
        name, notmux_bin = self.name(role), self.notmux_bin
        home = self.base / "home" / name
        home.parent.mkdir(mode=0o755, exist_ok=True)
        entry = create_user(name, home, self.run_id, shell=spec.shell if spec else "/bin/bash")
        self.names.append(name)
        uid, gid = entry.pw_uid, entry.pw_gid
        laptop = self.base / "laptop" / role
        (laptop / ".ssh").mkdir(mode=0o700, parents=True)
        laptop.chmod(0o700)
        self.laptops.append(laptop)
        runtime = self.runtime / role
        runtime.mkdir(mode=0o700)
        key = laptop / ".ssh" / "id_ed25519"
        _must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(key)],
              f"ssh-keygen for {name}")
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        private = home / "private"  # for "another user cannot read it" checks
        private.mkdir(mode=0o700)
        (private / "secret.txt").write_text(f"{name}'s secret\n")
        if role == "notmux":
            line = f"PATH={notmux_bin}:/usr/sbin; export PATH  # this user's host has no tmux\n"
            for rc in (".bashrc", ".profile"):
                f = home / rc
                old = f.read_text() if f.exists() else ""
                f.write_text(line + old + line if rc == ".profile" else line + old)
        for path in [home, *home.rglob("*")]:
            os.lchown(path, uid, gid)
        known_hosts = laptop / ".ssh" / "known_hosts"
        known_hosts.write_text("".join(self.known_hosts))
        config = laptop / ".ssh" / "config"
        config.write_text(ssh_config(name, key, known_hosts, nets))
        config.chmod(0o600)
        if spec is not None and spec.prepare is not None:
            spec.prepare(roles_mod.Home(name=name, uid=uid, gid=gid, home=home, envs=envs))
        self._keep[home] = set(os.listdir(home))
        self._keep[laptop] = set(os.listdir(laptop))
        return TestUser(role=role, name=name, uid=uid, home=home, key=key, ssh_config=config, laptop=laptop,
                        runtime=runtime)

    def drop_files(self, user: TestUser, host_tmps: list[tuple[str, ...]]) -> None:
        """Between tests, once the user's processes are gone: what they wrote in this machine's temp dirs, in
        each host's own (`host_tmps`: places as this process reaches them), and in their home and laptop."""
        uid = pwd.getpwnam(user.name).pw_uid
        remove_files_of_uid(uid)
        for places in host_tmps:
            remove_files_of_uid(uid, places)
        for d in (user.home, user.laptop, user.runtime):
            for name in set(os.listdir(d)) - self._keep.get(d, set()):
                p = d / name
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def close_laptops(self) -> list[str]:
        """Every laptop's ssh masters and marked processes ended; returns what failed."""
        return each_tried(list(self.laptops), lambda laptop: close_laptop(laptop, self.runtime / laptop.name),
                          lambda laptop: f"closing laptop {laptop}")

    def delete(self) -> list[str]:
        """Delete every user of the run (`userdel -r`); returns what failed."""
        self.laptops.clear()
        return each_tried(self.names, delete_user, lambda name: f"deleting user {name}")


def close_laptop(laptop: Path, runtime: Path | None = None) -> None:
    """Ask ssh masters with a control socket in this laptop to exit, then end marked processes."""
    close_masters(*([laptop, runtime] if runtime else [laptop]))
    pids = pids_with_env(LAPTOP_MARK, str(laptop))
    if pids:
        kill_and_wait(pids)

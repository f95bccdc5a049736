"""The netns test server: hosts `matagorda`, `login` and `matagorda2`, each with a real sshd, its users and SLURM.

`NetnsServer` puts one run together from its nouns and takes it apart again:

    hosts.py        the hosts (network namespaces with their own /tmp and hostname), their nets and sshds
    users.py        the users (useradd, GECOS naming the run) and their laptops (key, ssh config)
    slurm_hosts.py  SLURM on the hosts, on demand: a compute node, munged, slurmctld, slurmd (slurm.py)
    envs.py         the test envs every user runs (built once per machine); roles.py, conda.py, lmod.py,
                    oldpython.py: the users and hosts made as people have them
    machine.py      what runs side by side on one machine share: where their dirs go, the lock

Everything a run makes is named after its pytest pid and a token (`portal-t-PID-TOKEN-matagorda`, user
`portal-alice-TOKEN`), so runs side by side (pytest-xdist's workers) do not collide, and the next run
removes what a killed one left (`clean_leftovers`: its pid is gone).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing import conda as conda_mod
from portal_tasks.testing import lmod as lmod_mod
from portal_tasks.testing import roles as roles_mod
from portal_tasks.testing import users as users_mod
from portal_tasks.testing.envs import ensure_envs
from portal_tasks.testing.hosts import (  # NETS, Nets, sshd_pids: imported from here too
    NETNS_RE,
    NETS,
    SSHD,
    Hosts,
    Nets,
    delete_netns,
    netns_list,
    sshd_pids,
)
from portal_tasks.testing.machine import BASE_ROOT, PREFIX, RUNTIME_ROOT, machine_lock
from portal_tasks.testing.procs import pid_alive
from portal_tasks.testing.server import TestServer, TestServerError, TestServerUnavailable, TestUser
from portal_tasks.testing.slurm import SlurmCluster
from portal_tasks.testing.slurm_hosts import HostsSlurm
from portal_tasks.testing.users import LAPTOP_MARK, RunUsers

__all__ = ["BASE_ROOT", "LAPTOP_MARK", "NETS", "PREFIX", "NetnsServer", "Nets", "clean_leftovers", "netns_list",
           "sshd_pids", "unavailable"]

ROLES = ("alice", "bob", "notmux")


def unavailable() -> str | None:
    """Why the netns server cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return f"the netns test server needs Linux (this is {sys.platform}); use --portal-server ssh://HOST"
    if os.geteuid() != 0:
        return "the netns test server needs root (network namespaces, users); run as root or use --portal-server ssh://HOST"
    for tool in ("ip", "ssh", "ssh-keygen", "useradd", "userdel", "setpriv", "ss", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"the netns test server needs `{tool}` on PATH"
    if not os.access(SSHD, os.X_OK):
        return f"the netns test server needs {SSHD} (apt-get install openssh-server)"
    return None


def clean_leftovers(base_root: Path = BASE_ROOT) -> list[str]:
    """Remove namespaces, users and run dirs of earlier runs whose pytest process is dead (one sweep on the
    machine at a time: parallel servers would each try to delete the same user)."""
    with machine_lock():
        return _clean_leftovers(base_root)


def _clean_leftovers(base_root: Path) -> list[str]:
    cleaned = []
    for ns in netns_list():
        m = NETNS_RE.match(ns)
        if m and not pid_alive(int(m.group(1))):
            delete_netns(ns)
            cleaned.append(f"netns {ns}")
    for name in users_mod.leftover_users():
        users_mod.delete_user(name)
        cleaned.append(f"user {name}")
    for d in [*base_root.glob(f"{PREFIX}*"), *RUNTIME_ROOT.glob(f"{PREFIX}*")]:
        m = re.match(rf"^{PREFIX}(\d+)-[0-9a-f]+$", d.name)
        if m and d.is_dir() and not pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            cleaned.append(f"dir {d}")
    return cleaned


def token_taken(token: str) -> bool:
    """Whether a live or dead run on this machine has token (in its namespaces, users or interfaces)."""
    if any((m := NETNS_RE.match(ns)) and m.group(2) == token for ns in netns_list()):
        return True
    if any(run_id.endswith(f"-{token}") for _, _, run_id in users_mod.tagged_users()):
        return True
    return f"pt{token}" in run(["ip", "-o", "link"], timeout=10).stdout


class NetnsServer:
    """Builds the hosts, users and sshds of one run; close() removes all of it."""

    name = "netns"
    #: appended to every host's sshd config (trips.py: more logging)
    sshd_extra = ""

    def __init__(self, spec: str = "netns", *, base_root: Path | None = None, extra_users: int = 0) -> None:
        self.spec = spec
        #: roles beyond alice/bob/notmux (user01, user02, ...), e.g. for many-users benchmarks
        self.roles = ROLES + tuple(f"user{i:02d}" for i in range(1, extra_users + 1))
        self.base_root = base_root or BASE_ROOT
        self._name_after(secrets.token_hex(2))
        self._envs: dict[str, Path] = {}
        self._lmod: lmod_mod.Lmod | None = None
        self.server: TestServer | None = None

    def _name_after(self, token: str) -> None:
        """The run's names: its pid and token (in its namespaces, dirs, interfaces and users)."""
        self.token = token
        self.run_id = f"{os.getpid()}-{token}"
        self.base = self.base_root / f"{PREFIX}{self.run_id}"
        self.runtime = RUNTIME_ROOT / f"{PREFIX}{self.run_id}"  # short paths for unix sockets
        self.hosts = Hosts(self.run_id, token, self.base)
        self.users = RunUsers(self.run_id, token, self.base, self.runtime)
        self.slurm = HostsSlurm(self.hosts, f"portal{token}")

    @property
    def nets(self) -> Nets | None:
        return self.hosts.nets

    # -- setup --------------------------------------------------------------------------
    def start(self) -> TestServer:
        reason = unavailable()
        if reason:
            raise TestServerUnavailable(reason)
        clean_leftovers(self.base_root)
        while token_taken(self.token):  # names of a live or dead run: another token
            self._name_after(secrets.token_hex(2))
        envs = self._envs = ensure_envs()
        self.base.mkdir(mode=0o755, parents=True)
        self.base.chmod(0o755)
        self.runtime.mkdir(mode=0o700)
        nets = self.hosts.network()
        notmux_bin = self.users.make_notmux_bin()
        users = {role: self.users.make(role, nets, envs) for role in self.roles}
        names = [f"portal-*-{self.token}"]  # the users of this run, those made later (lazy roles) too
        notmux = f"Match User {users['notmux'].name}\n    SetEnv PATH={notmux_bin}:/usr/sbin\n"
        if lmod_mod.unavailable() is None:
            self._lmod = lmod_mod.write_modules(self.base / "lmod-modules", envs["a"])
        waits = [  # the sshds start side by side; then each is waited for
            self._sshd("matagorda", [nets.host, nets.inner], names, notmux),
            self._sshd("login", [nets.login], names),
            self._sshd("matagorda2", [nets.second], names, notmux),
        ]
        for wait in waits:
            self.users.add_known_host(wait())
        self.server = TestServer(
            backend="netns",
            address=nets.host,
            login_address=nets.login,
            via_login_address=nets.inner,
            second_host="matagorda2",
            second_address=nets.second,
            between=(self.hosts.between_interface, *nets.between),
            envs=dict(envs.items()),  # Path values; an ssh:// server may name envs instead
            users=users,
            run_id=self.run_id,
            admin_run=self.hosts.admin_run,
            host_path=self.hosts.host_path,
            reset_user=self.reset_user,
            start_slurm=self.start_slurm,
            stop_slurm=self.stop_slurm,
            lazy_roles=tuple(roles_mod.LAZY_ROLES),
            make_user=self.make_user,
            conda=conda_mod.ensure_conda,
            lmod=self._lmod,
        )
        return self.server

    def _sshd(self, label: str, listen: list[str], allow: list[str], extra: str = "") -> Callable[[], str]:
        lmod = self._lmod.modules if self._lmod is not None and label in self._lmod.hosts else None
        return self.hosts.start_sshd(label, listen, allow, extra + self.sshd_extra, lmod)

    def make_user(self, role: str) -> TestUser:
        """A user of a lazy role (roles.py), made now; TestServerUnavailable where it cannot be made here."""
        spec = roles_mod.role(role)
        reason = spec.unavailable()
        if reason:
            raise TestServerUnavailable(f"user {role!r}: {reason}")
        if self.nets is None:
            raise TestServerError("start the netns test server before making its users")
        return self.users.make(role, self.nets, self._envs, spec)

    # -- SLURM (on demand) --------------------------------------------------------------
    def start_slurm(self) -> SlurmCluster:
        """Start the run's SLURM (slurm_hosts.py); once."""
        return self.slurm.start()

    def stop_slurm(self) -> None:
        """Stop the run's SLURM and remove its node (idempotent; the server itself stays)."""
        self.slurm.stop()

    # -- use ----------------------------------------------------------------------------
    def reset_user(self, user: TestUser) -> None:
        """Between tests: end the user's processes (hosts and laptop) and jobs, and drop what they wrote."""
        users_mod.close_laptop(user.laptop, user.runtime)
        self.slurm.cancel_jobs_of(user.name)  # a job left pending would start in the next test
        entry = pwd.getpwnam(user.name)
        users_mod.kill_uid(entry.pw_uid, entry.pw_gid)
        self.slurm.wait_no_jobs_of(user.name)
        host_path = self.hosts.host_path  # each host's own /tmp and /var/tmp, and the user's claims in them
        self.users.drop_files(user, [(str(host_path("/tmp", label) / "portal-ports"), str(host_path("/tmp", label)),
                                      str(host_path("/var/tmp", label))) for label in self.hosts.anchor])

    # -- teardown -----------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything start() made, as far as it got. Idempotent; raises after trying all."""
        errors = self.users.close_laptops()
        try:
            self.slurm.stop()
        except Exception as exc:  # noqa: BLE001 - collected and raised below
            errors.append(f"stopping SLURM: {exc}")
        errors += self.hosts.stop()
        errors += self.users.delete()
        errors += self.hosts.remove()
        for d in (self.base, self.runtime):
            if d.exists():
                try:
                    shutil.rmtree(d)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"removing {d}: {exc}")
        if errors:
            raise TestServerError("teardown left things behind: " + "; ".join(errors))

    def __enter__(self) -> TestServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What a test host is, whatever backend made it: the server, its users, their laptops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from portal_tasks.runner import Result, run
from portal_tasks.testing.errors import TestServerError, TestServerUnavailable

if TYPE_CHECKING:
    from portal_tasks.testing.lmod import Lmod
    from portal_tasks.testing.slurm import SlurmCluster

#: the errors live in testing/errors.py (so slurm.py needs nothing of this module); imported from here too
__all__ = ["TestServer", "TestServerError", "TestServerUnavailable", "TestUser", "close_masters"]


def close_masters(*places: Path) -> None:
    """Ask every OpenSSH master whose control socket lies under places to exit (`ssh -O exit`)."""
    for place in places:
        if not place.exists():
            continue
        for sock in place.rglob("*"):
            if sock.is_socket():
                run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "portal-test"], timeout=10)


@dataclass(frozen=True)
class TestUser:
    """A user on the test host and the "laptop" (client home dir) they connect from."""

    __test__ = False

    role: str  # alice, bob, notmux; carol, zed, fay, ted, oldpy (roles.py)
    name: str  # login name on the host
    uid: int
    home: Path  # home directory on the host
    key: Path  # private key on the laptop
    ssh_config: Path  # the laptop's ssh config (Host matagorda, login, matagorda-via-login)
    laptop: Path  # the laptop's HOME (client side)
    runtime: Path  # the laptop's XDG_RUNTIME_DIR: short, so control sockets fit the ~104-byte limit

    def ssh_argv(self, host: str, *command: str, options: Sequence[str] = ()) -> list[str]:
        """The plain OpenSSH argv for running command on host as this user, with this laptop's config."""
        return ["ssh", "-F", str(self.ssh_config), *options, host, "--", *command]

    def ssh(self, host: str, *command: str, timeout: float = 30, options: Sequence[str] = ()) -> Result:
        return run(self.ssh_argv(host, *command, options=options), timeout=timeout)


@dataclass
class TestServer:
    """The compute host as tests see it: ssh aliases, addresses, envs and users."""

    __test__ = False

    backend: str
    host: str = "matagorda"  # ssh alias, direct
    address: str = ""
    login_host: str | None = "login"  # ssh alias of the login node
    login_address: str | None = None
    via_login_host: str | None = "matagorda-via-login"  # alias going through ProxyJump login
    via_login_address: str | None = None  # reachable from the login node only
    #: ssh alias of a second server sharing the homes (NFS-like) with its own network, /tmp and hostname
    second_host: str | None = None
    second_address: str | None = None
    #: the servers' own net: (host's interface on it, host's address, second host's address), or None
    between: tuple[str, str, str] | None = None
    #: the test envs by name: a Path (a venv or conda env's prefix), or on ssh:// a str naming an env the host's
    #: conda resolves (`--portal-env a`); give `str(server.envs[name])` to `--env`
    envs: dict[str, Path | str] = field(default_factory=dict)
    users: dict[str, TestUser] = field(default_factory=dict)  # by role
    run_id: str = ""
    #: admin_run(argv, *, host=None, user=None, **run_kwargs): argv on a host (default: host) inside its
    #: namespaces (its sockets, its /tmp), as root or as user; None when not possible
    admin_run: Callable[..., Result] | None = field(default=None, repr=False)
    #: host_path(path, host=None): where this process reaches a host's path (e.g. its /tmp); None: it cannot
    host_path: Callable[..., Path] | None = field(default=None, repr=False)
    #: kills a user's processes on the host and resets their state between tests; None: not allowed
    reset_user: Callable[[TestUser], None] | None = field(default=None, repr=False)
    #: start_slurm() -> SlurmCluster: starts the host's SLURM (once; compute nodes, controller on host);
    #: stop_slurm() stops it and removes the nodes; None: this backend has no SLURM of its own
    start_slurm: Callable[[], SlurmCluster] | None = field(default=None, repr=False)
    stop_slurm: Callable[[], None] | None = field(default=None, repr=False)
    #: roles user(role) makes on first use (roles.py: carol, zed, fay, ted, oldpy), by make_user(role)
    lazy_roles: tuple[str, ...] = ()
    make_user: Callable[[str], TestUser] | None = field(default=None, repr=False)
    #: conda() -> Path: the prefix of the hosts' shared conda install (conda.py; installed once per machine
    #: on first use); None: this backend has none of its own
    conda: Callable[[], Path] | None = field(default=None, repr=False)
    #: the hosts' environment modules (lmod.py: python_module, missing_module, broken_module); None: no Lmod
    lmod: Lmod | None = None

    def user(self, role: str) -> TestUser:
        """The user of role; a lazy role is made now the first time (TestServerUnavailable: not here)."""
        if role in self.users:
            return self.users[role]
        if role in self.lazy_roles and self.make_user is not None:
            self.users[role] = self.make_user(role)
            return self.users[role]
        have = [*self.users, *(r for r in self.lazy_roles if r not in self.users)]
        raise TestServerUnavailable(
            f"the {self.backend} test server has no user {role!r} (has: {', '.join(have) or 'none'})"
        )

"""The netns test server: hosts `matagorda`, `login` and `matagorda2`, each with a real sshd.

Each host is a network namespace whose sshd runs in its own mount and UTS namespaces: the
host has its own /tmp and /var/tmp (tmpfs: tmux sockets, port block claims, scratch space), its own
hostname, /etc/hosts line and /etc/machine-id. Users, homes (/home, shared as over NFS) and
processes are shared with the root namespace, which plays the laptop and keeps the real /tmp.
Addresses are 10.231.X.0/24 nets:

    root (laptop) 10.231.X.1   <-> matagorda  10.231.X.2
    root (laptop) 10.231.X+1.1 <-> login      10.231.X+1.2
    login         10.231.X+2.1 <-> matagorda  10.231.X+2.2   (the laptop has no way in)
    root (laptop) 10.231.X+3.1 <-> matagorda2 10.231.X+3.2   (a second server sharing the homes)
    matagorda     10.231.X+4.1 <-> matagorda2 10.231.X+4.2   (the servers' own net: workers on matagorda2)
    matagorda     10.231.X+5.1 <-> node1      10.231.X+5.2   (the batch system's net: SLURM's compute node)

The SLURM part (slurm.py) is made only when a test asks (`start_slurm`, the `portal_slurm` fixture): the
compute node `node1` is a namespace like the hosts (own /tmp, hostname; shared homes; no sshd), running
slurmd; matagorda runs munged and slurmctld, and both see the run's config as /etc/slurm/slurm.conf.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal_tasks.runner import Result, run, spawn
from portal_tasks.testing import conda as conda_mod
from portal_tasks.testing import lmod as lmod_mod
from portal_tasks.testing import roles as roles_mod
from portal_tasks.testing import slurm as slurm_mod
from portal_tasks.testing import users as users_mod
from portal_tasks.testing.envs import ensure_envs
from portal_tasks.testing.machine import machine_lock
from portal_tasks.testing.procs import kill_and_wait, pid_alive, pids_with_env
from portal_tasks.testing.server import TestServer, TestServerError, TestServerUnavailable, TestUser, close_masters
from portal_tasks.testing.waiting import retry_until

NETS = 6  # /24 nets a run uses (of the 8 from each 10.231.X it picks)
PREFIX = "portal-t-"  # every namespace and run dir made here starts with it
NETNS_RE = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-([a-z0-9]+)$")
SSHD = "/usr/sbin/sshd"
ROLES = ("alice", "bob", "notmux")
HOST_OF_ALIAS = {"matagorda": "matagorda", "matagorda-via-login": "matagorda", "login": "login",
                 "matagorda2": "matagorda2"}  # ssh alias -> host (namespace label)
#: run by `sh -c` inside a host's fresh mount + UTS namespaces ($0 label, $1 dir, $2 log, then the command):
#: its own /tmp and /var/tmp, hostname, /etc/hosts line, machine-id, an empty /etc/portal in place of this machine's
#: admin settings, the run's modulefiles over Lmod's /etc/lmod/modules where the host has them (lmod.py),
#: then exec the command (sshd, or a sleep holding a node's namespaces: the pid stays its)
HOST_SETUP = """set -e
exec 2>>"$2"
mount -t tmpfs -o mode=1777,nosuid,nodev "portal-$0-tmp" /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev "portal-$0-vartmp" /var/tmp
printf '%s\\n' "$0" > /proc/sys/kernel/hostname
mount --bind "$1/hosts" /etc/hosts
if [ -e /etc/machine-id ]; then mount --bind "$1/machine-id" /etc/machine-id; fi
mount --bind "$1/etc-portal" /etc/portal
if [ -d "$1/lmod-modules" ] && [ -d /etc/lmod/modules ]; then mount --bind "$1/lmod-modules" /etc/lmod/modules; fi
shift 2
exec "$@"
"""
HOST_ETC_PORTAL = "/etc/portal"
LAPTOP_MARK = "PORTAL_TEST_LAPTOP"  # env var naming the laptop dir of processes the fixtures start
BASE_ROOT = Path(os.environ.get("PORTAL_TEST_BASE", "/home"))
RUNTIME_ROOT = Path("/run")


@dataclass(frozen=True)
class Nets:
    """The /24 nets of one run (NETS of them from 10.231.X)."""

    x: int

    def addr(self, net: int, host: int) -> str:
        return f"10.231.{self.x + net}.{host}"

    @property
    def host(self) -> str:  # matagorda as the laptop reaches it
        return self.addr(0, 2)

    @property
    def login(self) -> str:
        return self.addr(1, 2)

    @property
    def inner(self) -> str:  # matagorda as only the login node reaches it
        return self.addr(2, 2)

    @property
    def second(self) -> str:  # matagorda2
        return self.addr(3, 2)

    @property
    def between(self) -> tuple[str, str]:  # matagorda and matagorda2 on their own net
        return self.addr(4, 1), self.addr(4, 2)

    @property
    def node(self) -> tuple[str, str]:  # matagorda and the SLURM compute node node1 on the batch system's net
        return self.addr(5, 1), self.addr(5, 2)


def _must(argv: list[str], what: str | None = None, timeout: float = 60) -> Result:
    res = run(argv, timeout=timeout)
    if not res.ok:
        raise TestServerError(
            f"{what or argv[0]} failed (rc {res.rc}): {res.tail()}", hint=f"Command: {' '.join(argv)}"
        )
    return res


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


def netns_list() -> list[str]:
    res = run(["ip", "netns", "list"], timeout=10)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def _netns_pids(ns: str) -> list[int]:
    res = run(["ip", "netns", "pids", ns], timeout=10)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _delete_netns(ns: str) -> None:
    pids = _netns_pids(ns)
    if pids:
        kill_and_wait(pids)
    res = run(["ip", "netns", "del", ns], timeout=30)
    if not res.ok and ns in netns_list():
        raise TestServerError(f"ip netns del {ns} failed: {res.tail()}")


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
            _delete_netns(ns)
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


def _token_taken(token: str) -> bool:
    """Whether a live or dead run on this machine has token (in its namespaces, users or interfaces)."""
    if any((m := NETNS_RE.match(ns)) and m.group(2) == token for ns in netns_list()):
        return True
    if any(run_id.endswith(f"-{token}") for _, _, run_id in users_mod.tagged_users()):
        return True
    return f"pt{token}" in run(["ip", "-o", "link"], timeout=10).stdout


def _pick_nets() -> Nets:
    """NETS free 10.231.X.0/24 nets: no address or route of this machine in them."""
    used = run(["ip", "-o", "-4", "addr"], timeout=10).stdout + run(["ip", "-4", "route"], timeout=10).stdout
    start = secrets.randbelow(31)
    for i in range(31):
        x = 8 * ((start + i) % 31)
        if not any(f"10.231.{x + n}." in used for n in range(NETS)):
            return Nets(x)
    raise TestServerError("no free 10.231.X.0/24 nets left for the test server", hint="Remove stale veths.")


def _host_files(d: Path, label: str) -> None:
    """The files HOST_SETUP binds into host `label`'s namespaces, in its dir d."""
    (d / "hosts").write_text(Path("/etc/hosts").read_text() + f"127.0.1.1\t{label}\n")
    (d / "machine-id").write_text(secrets.token_hex(16) + "\n")
    for name in ("hosts", "machine-id"):
        (d / name).chmod(0o644)
    (d / "etc-portal").mkdir(mode=0o755)
    # the mount point of each host's own admin settings; made once, empty, and left (a run of another
    # process may have it mounted: removing it would detach their hosts' settings)
    Path(HOST_ETC_PORTAL).mkdir(mode=0o755, exist_ok=True)


def _ssh_config(user: str, key: Path, known_hosts: Path, nets: Nets) -> str:
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


def _sshd_config(d: Path, listen: list[str], allow: list[str], extra: str = "") -> str:
    listen_lines = "\n".join(f"ListenAddress {a}:22" for a in listen)
    return f"""\
# sshd of the portal test server
{listen_lines}
HostKey {d}/ssh_host_ed25519_key
PidFile {d}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
AllowUsers {' '.join(allow)}
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
MaxStartups 200:30:400
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp
{extra}"""


class NetnsServer:
    """Builds the namespaces, users and sshds of one run; close() removes all of it."""

    name = "netns"

    def __init__(self, spec: str = "netns", *, base_root: Path | None = None, extra_users: int = 0) -> None:
        self.spec = spec
        #: roles beyond alice/bob/notmux (user01, user02, ...), e.g. for many-users benchmarks
        self.roles = ROLES + tuple(f"user{i:02d}" for i in range(1, extra_users + 1))
        self.base_root = base_root or BASE_ROOT
        self._name_after(secrets.token_hex(2))
        self.nets: Nets | None = None
        self._slurm: slurm_mod.SlurmDaemons | None = None
        self._slurm_cluster: slurm_mod.SlurmCluster | None = None
        self._etc_slurm_bound = False
        #: compute node label -> (its namespace, the process holding its namespaces once started)
        self._nodes: dict[str, tuple[str, subprocess.Popen[bytes] | None]] = {}
        self._netns: list[str] = []
        self._users: list[str] = []
        self._sshd: list[subprocess.Popen[bytes]] = []
        #: host name -> pid of its sshd, whose net, mount and UTS namespaces are the host's
        self._anchor: dict[str, int] = {}
        self._laptops: list[Path] = []
        self._known_hosts: list[str] = []  # the hosts' key lines, for laptops made later (lazy roles)
        self._keep: dict[Path, set[str]] = {}
        self._envs: dict[str, Path] = {}
        self._lmod: lmod_mod.Lmod | None = None
        self.server: TestServer | None = None

    # -- setup --------------------------------------------------------------------------
    def start(self) -> TestServer:
        reason = unavailable()
        if reason:
            raise TestServerUnavailable(reason)
        clean_leftovers(self.base_root)
        while _token_taken(self.token):  # names of a live or dead run: another token
            self._name_after(secrets.token_hex(2))
        envs = self._envs = ensure_envs()
        self.base.mkdir(mode=0o755, parents=True)
        self.base.chmod(0o755)
        self.runtime.mkdir(mode=0o700)
        nets = self.nets = self._network()
        notmux_bin = self._notmux_bin()
        users = {role: self._user(role) for role in self.roles}
        names = [f"portal-*-{self.token}"]  # the users of this run, those made later (lazy roles) too
        notmux = f"Match User {users['notmux'].name}\n    SetEnv PATH={notmux_bin}:/usr/sbin\n"
        if lmod_mod.unavailable() is None:
            self._lmod = lmod_mod.write_modules(self.base / "lmod-modules", envs["a"])
        waits = [  # the sshds start side by side; then each is waited for
            self._sshd_in(self.ns_host, "matagorda", [nets.host, nets.inner], names, notmux),
            self._sshd_in(self.ns_login, "login", [nets.login], names),
            self._sshd_in(self.ns_second, "matagorda2", [nets.second], names, notmux),
        ]
        for wait in waits:
            wait()
        self.server = TestServer(
            backend="netns",
            address=nets.host,
            login_address=nets.login,
            via_login_address=nets.inner,
            second_host="matagorda2",
            second_address=nets.second,
            between=(self.between_interface, *nets.between),
            envs=dict(envs.items()),  # Path values; an ssh:// server may name envs instead
            users=users,
            run_id=self.run_id,
            admin_run=self.admin_run,
            host_path=self.host_path,
            reset_user=self.reset_user,
            start_slurm=self.start_slurm,
            stop_slurm=self.stop_slurm,
            lazy_roles=tuple(roles_mod.LAZY_ROLES),
            make_user=self.make_user,
            conda=conda_mod.ensure_conda,
            lmod=self._lmod,
        )
        return self.server

    def _name_after(self, token: str) -> None:
        """The names of this run's namespaces, dirs, interfaces and users: its pid and token."""
        self.token = token
        self.run_id = f"{os.getpid()}-{token}"
        self.base = self.base_root / f"{PREFIX}{self.run_id}"
        self.runtime = RUNTIME_ROOT / f"{PREFIX}{self.run_id}"  # short paths for unix sockets
        self.ns_host = f"{PREFIX}{self.run_id}-matagorda"
        self.ns_login = f"{PREFIX}{self.run_id}-login"
        self.ns_second = f"{PREFIX}{self.run_id}-matagorda2"
        #: matagorda's interface on the net it shares with matagorda2 (its scheduler_interface for workers there)
        self.between_interface = f"pt{token}n0"
        #: matagorda's interface on the batch system's net (its scheduler_interface for SLURM jobs on node1)
        self.node_interface = f"pt{token}c0"

    def make_user(self, role: str) -> TestUser:
        """A user of a lazy role (roles.py), made now; TestServerUnavailable where it cannot be made here."""
        spec = roles_mod.role(role)
        reason = spec.unavailable()
        if reason:
            raise TestServerUnavailable(f"user {role!r}: {reason}")
        return self._user(role, spec)

    def _add_netns(self, ns: str) -> None:
        res = run(["ip", "netns", "add", ns], timeout=30)
        if not res.ok:
            raise TestServerUnavailable(f"cannot create network namespaces here ({res.tail(1)})",
                                        hint="A container needs CAP_SYS_ADMIN; or use --portal-server ssh://HOST.")
        self._netns.append(ns)
        _must(["ip", "-n", ns, "link", "set", "lo", "up"])

    @staticmethod
    def _veth(ns0: str | None, name0: str, addr0: str, ns1: str, name1: str, addr1: str) -> None:
        """A veth pair: name0 (in ns0, or the root namespace) with addr0 <-> name1 in ns1 with addr1, /24s."""
        n0 = ["-n", ns0] if ns0 else []
        _must(["ip", *n0, "link", "add", name0, "type", "veth", "peer", "name", name1, "netns", ns1])
        _must(["ip", *n0, "addr", "add", f"{addr0}/24", "dev", name0])
        _must(["ip", *n0, "link", "set", name0, "up"])
        _must(["ip", "-n", ns1, "addr", "add", f"{addr1}/24", "dev", name1])
        _must(["ip", "-n", ns1, "link", "set", name1, "up"])

    def _network(self) -> Nets:
        for ns in (self.ns_host, self.ns_login, self.ns_second):
            self._add_netns(ns)
        with machine_lock():  # the nets are free until their addresses are on the veths: pick and take them
            return self._veths(_pick_nets())

    def _veths(self, nets: Nets) -> Nets:
        t = self.token
        # (namespace of end 0 or None for root, name 0, addr 0, namespace of end 1, name 1, addr 1)
        pairs = [
            (None, f"pt{t}h0", nets.addr(0, 1), self.ns_host, f"pt{t}h1", nets.host),
            (None, f"pt{t}l0", nets.addr(1, 1), self.ns_login, f"pt{t}l1", nets.login),
            (self.ns_login, f"pt{t}j0", nets.addr(2, 1), self.ns_host, f"pt{t}j1", nets.inner),
            (None, f"pt{t}s0", nets.addr(3, 1), self.ns_second, f"pt{t}s1", nets.second),
            (self.ns_host, self.between_interface, nets.between[0], self.ns_second, f"pt{t}n1", nets.between[1]),
        ]
        for pair in pairs:
            self._veth(*pair)
        # Packets from the laptop to the inner net go to the login node, which does not forward
        # them: "No route to host", and nothing leaves through the machine's default route.
        # The route lives on the veth and goes away with it.
        _must(["ip", "route", "add", f"{nets.addr(2, 0)}/24", "dev", f"pt{t}l0"])
        return nets

    def _notmux_bin(self) -> Path:
        """A PATH directory with everything of /usr/bin except tmux."""
        d = self.notmux_bin
        d.mkdir(mode=0o755)
        for entry in Path("/usr/bin").iterdir():
            if entry.name != "tmux":
                (d / entry.name).symlink_to(entry)
        return d

    @property
    def notmux_bin(self) -> Path:
        return self.base / "notmux-bin"

    def _user(self, role: str, spec: roles_mod.Role | None = None) -> TestUser:
        assert self.nets is not None
        nets, notmux_bin = self.nets, self.notmux_bin
        name = f"portal-{role}-{self.token}"
        home = self.base / "home" / name
        home.parent.mkdir(mode=0o755, exist_ok=True)
        entry = users_mod.create_user(name, home, self.run_id, shell=spec.shell if spec else "/bin/bash")
        self._users.append(name)
        uid, gid = entry.pw_uid, entry.pw_gid
        laptop = self.base / "laptop" / role
        (laptop / ".ssh").mkdir(mode=0o700, parents=True)
        laptop.chmod(0o700)
        self._laptops.append(laptop)
        runtime = self.runtime / role
        runtime.mkdir(mode=0o700)
        key = laptop / ".ssh" / "id_ed25519"
        _must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(key)])
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
        known_hosts.write_text("".join(self._known_hosts))
        config = laptop / ".ssh" / "config"
        config.write_text(_ssh_config(name, key, known_hosts, nets))
        config.chmod(0o600)
        if spec is not None and spec.prepare is not None:
            spec.prepare(roles_mod.Home(name=name, uid=uid, gid=gid, home=home, envs=self._envs))
        self._keep[home] = set(os.listdir(home))
        self._keep[laptop] = set(os.listdir(laptop))
        return TestUser(role=role, name=name, uid=uid, home=home, key=key, ssh_config=config, laptop=laptop,
                        runtime=runtime)

    def _sshd_in(self, ns: str, label: str, listen: list[str], allow: list[str],
                 extra: str = "") -> Callable[[], None]:
        """Start the sshd of host `label` in its own namespaces; returns the wait for it to listen."""
        d = self.base / "sshd" / label
        d.mkdir(mode=0o700, parents=True)
        _must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", label, "-f", str(d / "ssh_host_ed25519_key")])
        cfg = d / "sshd_config"
        cfg.write_text(_sshd_config(d, listen, allow, extra))
        _host_files(d, label)
        if self._lmod is not None and label in self._lmod.hosts:
            (d / "lmod-modules").symlink_to(self._lmod.modules)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        _must([SSHD, "-t", "-f", str(cfg)], f"checking {cfg}")
        log = d / "sshd.log"
        # unshare and sh exec, so the Popen pid ends up being sshd, inside the host's namespaces
        proc = spawn(["ip", "netns", "exec", ns, "unshare", "--mount", "--uts", "--propagation", "private",
                      "sh", "-c", HOST_SETUP, label, str(d), str(log), SSHD, "-D", "-f", str(cfg), "-E", str(log)])
        self._sshd.append(proc)

        def listening() -> bool:
            if proc.poll() is not None:
                text = log.read_text() if log.exists() else ""
                raise TestServerError(f"sshd of {label} exited with rc {proc.returncode}: {text[-500:]}")
            out = run(["ip", "netns", "exec", ns, "ss", "-Htln"], timeout=10).stdout
            return all(f"{a}:22" in out for a in listen)

        def wait() -> None:
            retry_until(listening, 20, 0.05, what=f"sshd of {label} to listen on {', '.join(listen)}", retry_on=())
            self._anchor[label] = proc.pid
            pub = (d / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            line = f"{','.join(listen)} {' '.join(pub)}\n"
            self._known_hosts.append(line)
            for laptop in self._laptops:
                with open(laptop / ".ssh" / "known_hosts", "a") as f:
                    f.write(line)

        return wait

    # -- SLURM (on demand) --------------------------------------------------------------
    def start_slurm(self) -> slurm_mod.SlurmCluster:
        """Start the run's SLURM (compute node node1, munged, slurmctld on matagorda, slurmd); once."""
        if self._slurm_cluster is not None:
            return self._slurm_cluster
        reason = slurm_mod.unavailable()
        if reason:
            raise TestServerUnavailable(reason)
        if self.nets is None or "matagorda" not in self._anchor:
            raise TestServerError("start the netns test server before its SLURM")
        try:
            return self._start_slurm(self.nets)
        except BaseException:
            self.stop_slurm()
            raise

    def _start_slurm(self, nets: Nets) -> slurm_mod.SlurmCluster:
        started = time.monotonic()
        node = "node1"
        host_addr, node_addr = nets.node
        self._node_host(node, nets)
        layout = slurm_mod.SlurmLayout(self.base / "slurm")
        name = f"portal{self.token}"
        slurm_mod.write_layout(layout, slurm_mod.slurm_conf(layout, name, ("matagorda", host_addr),
                                                            [(node, node_addr)]))
        Path(slurm_mod.ETC_SLURM).mkdir(mode=0o755, exist_ok=True)  # the mount point; left, as /etc/portal
        self._etc_slurm_bound = True  # before: a half-made bind is undone too
        for label in ("matagorda", node):
            _must(["nsenter", f"--target={self._anchor[label]}", "--mount", "--", "mount", "--bind",
                   str(layout.etc), slurm_mod.ETC_SLURM], f"binding {layout.etc} over /etc/slurm on {label}")
        self._slurm = slurm_mod.SlurmDaemons(layout, self._enter("matagorda"), {node: self._enter(node)})
        self._slurm.start()
        self._slurm_cluster = slurm_mod.SlurmCluster(
            cluster_name=name, partition=slurm_mod.PARTITION, nodes=(node,), node_addresses=(node_addr,),
            scheduler_interface=self.node_interface, scheduler_address=host_addr, conf=layout.conf,
            pids=self._slurm.pids(), start_seconds=time.monotonic() - started)
        return self._slurm_cluster

    def _enter(self, label: str) -> list[str]:
        return ["nsenter", f"--target={self._anchor[label]}", "--net", "--mount", "--uts", "--"]

    def _node_host(self, label: str, nets: Nets) -> None:
        """Compute node `label`: a namespace on the batch system's net with matagorda, its own /tmp and
        hostname (HOST_SETUP), held by a sleep (its anchor); no sshd."""
        ns = f"{PREFIX}{self.run_id}-{label}"
        self._add_netns(ns)
        self._nodes[label] = (ns, None)
        host_addr, node_addr = nets.node
        self._veth(self.ns_host, self.node_interface, host_addr, ns, f"pt{self.token}c1", node_addr)
        d = self.base / "nodes" / label
        d.mkdir(mode=0o755, parents=True)
        _host_files(d, label)
        with open(d / "hosts", "a") as f:
            f.write(f"{host_addr}\tmatagorda\n")
        host_hosts, line = self.base / "sshd" / "matagorda" / "hosts", f"{node_addr}\t{label}\n"
        if line not in host_hosts.read_text():
            with open(host_hosts, "a") as f:  # in place: matagorda has this very file bound as /etc/hosts
                f.write(line)
        log = d / "setup.log"
        # nsenter --net, not `ip netns exec`: that one mounts a sysfs without /sys/fs/cgroup, and slurmd
        # exits without it
        anchor = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", "--", "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", HOST_SETUP, label, str(d), str(log), "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._nodes[label] = (ns, anchor)

        def ready() -> bool:
            if anchor.poll() is not None:
                raise TestServerError(f"setting up node {label} failed (rc {anchor.returncode}): "
                                      f"{log.read_text()[-500:] if log.exists() else ''}")
            return Path(f"/proc/{anchor.pid}/comm").read_text().strip() == "sleep"

        retry_until(ready, 20, 0.02, what=f"node {label}'s namespaces", retry_on=(OSError,))
        self._anchor[label] = anchor.pid

    def stop_slurm(self) -> None:
        """Stop the run's SLURM and remove its node namespaces (idempotent; the server itself stays)."""
        errors: list[str] = []
        if self._slurm is not None:
            try:
                self._slurm.stop()
            except Exception as exc:  # noqa: BLE001 - the nodes go anyway
                errors.append(f"stopping SLURM: {exc}")
            self._slurm = None
        self._slurm_cluster = None
        for label, (ns, anchor) in list(self._nodes.items()):
            self._anchor.pop(label, None)
            try:
                _delete_netns(ns)  # ends the anchor, slurmd's job steps and what jobs left running
                if anchor is not None:
                    anchor.wait(5)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"removing node {label}: {exc}")
                continue
            self._netns.remove(ns)
            del self._nodes[label]
            shutil.rmtree(self.base / "nodes" / label, ignore_errors=True)
        if self._etc_slurm_bound and "matagorda" in self._anchor:  # so a later start_slurm binds afresh
            run(["nsenter", f"--target={self._anchor['matagorda']}", "--mount", "--", "umount", "-q",
                 slurm_mod.ETC_SLURM], timeout=10)
        self._etc_slurm_bound = False
        slurm_mod.remove_layout(slurm_mod.SlurmLayout(self.base / "slurm"))
        if errors:
            raise TestServerError("SLURM teardown: " + "; ".join(errors))

    # -- use ----------------------------------------------------------------------------
    def _pid_of(self, host: str | None) -> int:
        label = HOST_OF_ALIAS.get(host or "matagorda", host or "")
        try:
            return self._anchor[label]
        except KeyError:
            raise TestServerError(f"the netns test server has no host {host!r}",
                                  hint=f"Hosts: {', '.join(HOST_OF_ALIAS)}.") from None

    def admin_run(self, argv: list[str], *, host: str | None = None, user: TestUser | None = None,
                  **kwargs: Any) -> Result:
        """Run argv on host (default matagorda) inside its namespaces (its sockets, /tmp, hostname).

        As root, or as user (their uid, groups and login environment, in their home)."""
        enter = ["nsenter", f"--target={self._pid_of(host)}", "--net", "--mount", "--uts"]
        if user is None:
            return run([*enter, "--", *argv], **kwargs)
        entry = users_mod.pwd.getpwnam(user.name)
        return run([*enter, f"--wd={entry.pw_dir}", "--", "setpriv", f"--reuid={entry.pw_uid}",
                    f"--regid={entry.pw_gid}", "--init-groups", "--reset-env", "--", *argv], **kwargs)

    def host_path(self, path: str, host: str | None = None) -> Path:
        """Where root in the root namespace reaches `path` of host (e.g. its /tmp/portal-ports).

        Through /proc/PID/root: do not follow absolute symlinks found there (they resolve here)."""
        return Path(f"/proc/{self._pid_of(host)}/root") / path.lstrip("/")

    def reset_user(self, user: TestUser) -> None:
        """Between tests: end the user's processes (host and laptop) and drop what they wrote."""
        self._close_laptop(user.laptop, user.runtime)
        if self._slurm is not None:  # a job left pending would start in the next test
            self._slurm.cancel_jobs_of(user.name)
        entry = users_mod.pwd.getpwnam(user.name)
        users_mod.kill_uid(entry.pw_uid, entry.pw_gid)
        if self._slurm is not None:
            self._slurm.wait_no_jobs_of(user.name)
        users_mod.remove_files_of_uid(entry.pw_uid)
        for label in self._anchor:  # each host's own /tmp and /var/tmp, and the user's claims in them
            tmp = self.host_path("/tmp", label)
            users_mod.remove_files_of_uid(entry.pw_uid, (str(tmp / "portal-ports"), str(tmp),
                                                         str(self.host_path("/var/tmp", label))))
        for d in (user.home, user.laptop, user.runtime):
            for name in set(os.listdir(d)) - self._keep.get(d, set()):
                p = d / name
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def _close_laptop(self, laptop: Path, runtime: Path | None = None) -> None:
        """Ask ssh masters with a control socket in this laptop to exit, then end marked processes."""
        close_masters(*([laptop, runtime] if runtime else [laptop]))
        pids = pids_with_env(LAPTOP_MARK, str(laptop))
        if pids:
            kill_and_wait(pids)

    # -- teardown -----------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything start() made, as far as it got. Idempotent; raises after trying all."""
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - collected and raised below
                errors.append(f"{what}: {exc}")

        for laptop in self._laptops:
            attempt(f"closing laptop {laptop}", self._close_laptop, laptop, self.runtime / laptop.name)
        attempt("stopping SLURM", self.stop_slurm)
        for proc in self._sshd:
            attempt("stopping sshd", kill_and_wait, [proc.pid])
            attempt("reaping sshd", proc.wait, 5)
        self._sshd.clear()
        self._anchor.clear()
        for ns in list(self._netns):
            attempt(f"stopping processes in {ns}", lambda n: kill_and_wait(_netns_pids(n)), ns)
        for name in list(self._users):
            attempt(f"deleting user {name}", users_mod.delete_user, name)
            self._users.remove(name)
        for ns in list(self._netns):
            attempt(f"deleting {ns}", _delete_netns, ns)
            self._netns.remove(ns)
        for d in (self.base, self.runtime):
            if d.exists():
                attempt(f"removing {d}", shutil.rmtree, d)
        self._laptops.clear()
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


def sshd_pids(run_id: str, label: str) -> list[int]:
    """The sshd processes (the listener and every connection's) of test host `label` of run `run_id`."""
    res = _must(["ip", "netns", "pids", f"{PREFIX}{run_id}-{label}"], timeout=10)
    found = []
    for pid in res.stdout.split():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
        if comm.startswith("sshd"):
            found.append(int(pid))
    return found

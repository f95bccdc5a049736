"""The netns test server's hosts: `matagorda`, `login` and `matagorda2` with a real sshd, and compute nodes.

Each host is a network namespace whose process (sshd; a node's `sleep`, its anchor) runs in its own mount
and UTS namespaces: the host has its own /tmp and /var/tmp (tmpfs: tmux sockets, port block claims,
scratch space), its own hostname, /etc/hosts line and /etc/machine-id. Users, homes (/home, shared as over
NFS) and processes are shared with the root namespace, which plays the laptop and keeps the real /tmp.
Addresses are 10.231.X.0/24 nets:

    root (laptop) 10.231.X.1   <-> matagorda  10.231.X.2
    root (laptop) 10.231.X+1.1 <-> login      10.231.X+1.2
    login         10.231.X+2.1 <-> matagorda  10.231.X+2.2   (the laptop has no way in)
    root (laptop) 10.231.X+3.1 <-> matagorda2 10.231.X+3.2   (a second server sharing the homes)
    matagorda     10.231.X+4.1 <-> matagorda2 10.231.X+4.2   (the servers' own net: workers on matagorda2)
    matagorda     10.231.X+5.1 <-> node1      10.231.X+5.2   (the batch system's net: SLURM's compute node)

A node (`add_node`, for slurm_hosts.py) is a host without sshd. Several runs side by side each pick
their X under the machine's lock (machine.py) and name everything after their run id.
"""

from __future__ import annotations

import pwd
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal_tasks.runner import Result, run, spawn
from portal_tasks.testing.errors import each_tried
from portal_tasks.testing.machine import PREFIX, machine_lock
from portal_tasks.testing.procs import kill_and_wait
from portal_tasks.testing.server import TestServerError, TestServerUnavailable, TestUser
from portal_tasks.testing.waiting import retry_until

NETS = 6  # /24 nets a run uses (of the 8 from each 10.231.X it picks)
NETNS_RE = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-([a-z0-9]+)$")
SSHD = "/usr/sbin/sshd"
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


def must(argv: list[str], what: str | None = None, timeout: float = 60) -> Result:
    res = run(argv, timeout=timeout)
    if not res.ok:
        raise TestServerError(
            f"{what or argv[0]} failed (rc {res.rc}): {res.tail()}", hint=f"Command: {' '.join(argv)}"
        )
    return res


def netns_list() -> list[str]:
    res = run(["ip", "netns", "list"], timeout=10)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    res = run(["ip", "netns", "pids", ns], timeout=10)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def delete_netns(ns: str) -> None:
    pids = netns_pids(ns)
    if pids:
        kill_and_wait(pids)
    res = run(["ip", "netns", "del", ns], timeout=30)
    if not res.ok and ns in netns_list():
        raise TestServerError(f"ip netns del {ns} failed: {res.tail()}")


def pick_nets() -> Nets:
    """NETS free 10.231.X.0/24 nets: no address or route of this machine in them (hold the machine's lock
    until their addresses are on veths: until then another run could pick them too)."""
    used = run(["ip", "-o", "-4", "addr"], timeout=10).stdout + run(["ip", "-4", "route"], timeout=10).stdout
    start = secrets.randbelow(31)
    for i in range(31):
        x = 8 * ((start + i) % 31)
        if not any(f"10.231.{x + n}." in used for n in range(NETS)):
            return Nets(x)
    raise TestServerError("no free 10.231.X.0/24 nets left for the test server", hint="Remove stale veths.")


def host_files(d: Path, label: str) -> None:
    """The files HOST_SETUP binds into host `label`'s namespaces, in its dir d."""
    (d / "hosts").write_text(Path("/etc/hosts").read_text() + f"127.0.1.1\t{label}\n")
    (d / "machine-id").write_text(secrets.token_hex(16) + "\n")
    for name in ("hosts", "machine-id"):
        (d / name).chmod(0o644)
    (d / "etc-portal").mkdir(mode=0o755)
    # the mount point of each host's own admin settings; made once, empty, and left (a run of another
    # process may have it mounted: removing it would detach their hosts' settings)
    Path(HOST_ETC_PORTAL).mkdir(mode=0o755, exist_ok=True)


def sshd_config(d: Path, listen: list[str], allow: list[str], extra: str = "") -> str:
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


def sshd_pids(run_id: str, label: str) -> list[int]:
    """The sshd processes (the listener and every connection's) of test host `label` of run `run_id`."""
    res = must(["ip", "netns", "pids", f"{PREFIX}{run_id}-{label}"], timeout=10)
    found = []
    for pid in res.stdout.split():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
        if comm.startswith("sshd"):
            found.append(int(pid))
    return found


class Hosts:
    """The namespaces of one run (`run_id`, `token`), their nets and the processes holding them; files in `base`."""

    def __init__(self, run_id: str, token: str, base: Path) -> None:
        self.run_id, self.token, self.base = run_id, token, base
        self.nets: Nets | None = None
        #: matagorda's interface on the net it shares with matagorda2 (its scheduler_interface for workers there)
        self.between_interface = f"pt{token}n0"
        #: matagorda's interface on the batch system's net (its scheduler_interface for SLURM jobs on node1)
        self.node_interface = f"pt{token}c0"
        self._netns: list[str] = []
        self._sshd: list[subprocess.Popen[bytes]] = []
        #: compute node label -> (its namespace, the process holding its namespaces once started)
        self._nodes: dict[str, tuple[str, subprocess.Popen[bytes] | None]] = {}
        #: host label -> pid of its sshd (a node's: its anchor), whose net, mount and UTS namespaces are the host's
        self.anchor: dict[str, int] = {}

    def ns(self, label: str) -> str:
        return f"{PREFIX}{self.run_id}-{label}"

    # -- the network -------------------------------------------------------------------------
    def _add_netns(self, ns: str) -> None:
        res = run(["ip", "netns", "add", ns], timeout=30)
        if not res.ok:
            raise TestServerUnavailable(f"cannot create network namespaces here ({res.tail(1)})",
                                        hint="A container needs CAP_SYS_ADMIN; or use --portal-server ssh://HOST.")
        self._netns.append(ns)
        must(["ip", "-n", ns, "link", "set", "lo", "up"])

    @staticmethod
    def _veth(ns0: str | None, name0: str, addr0: str, ns1: str, name1: str, addr1: str) -> None:
        """A veth pair: name0 (in ns0, or the root namespace) with addr0 <-> name1 in ns1 with addr1, /24s."""
        n0 = ["-n", ns0] if ns0 else []
        must(["ip", *n0, "link", "add", name0, "type", "veth", "peer", "name", name1, "netns", ns1])
        must(["ip", *n0, "addr", "add", f"{addr0}/24", "dev", name0])
        must(["ip", *n0, "link", "set", name0, "up"])
        must(["ip", "-n", ns1, "addr", "add", f"{addr1}/24", "dev", name1])
        must(["ip", "-n", ns1, "link", "set", name1, "up"])

    def network(self) -> Nets:
        """The namespaces of matagorda, login and matagorda2 and the nets between them (the diagram above)."""
        host, login, second = self.ns("matagorda"), self.ns("login"), self.ns("matagorda2")
        for ns in (host, login, second):
            self._add_netns(ns)
        t = self.token
        with machine_lock():  # the nets are free until their addresses are on the veths: pick and take them
            nets = pick_nets()
            pairs = [  # (namespace of end 0 or None for root, name 0, addr 0, namespace of end 1, name 1, addr 1)
                (None, f"pt{t}h0", nets.addr(0, 1), host, f"pt{t}h1", nets.host),
                (None, f"pt{t}l0", nets.addr(1, 1), login, f"pt{t}l1", nets.login),
                (login, f"pt{t}j0", nets.addr(2, 1), host, f"pt{t}j1", nets.inner),
                (None, f"pt{t}s0", nets.addr(3, 1), second, f"pt{t}s1", nets.second),
                (host, self.between_interface, nets.between[0], second, f"pt{t}n1", nets.between[1]),
            ]
            for pair in pairs:
                self._veth(*pair)
            # Packets from the laptop to the inner net go to the login node, which does not forward
            # them: "No route to host", and nothing leaves through the machine's default route.
            # The route lives on the veth and goes away with it.
            must(["ip", "route", "add", f"{nets.addr(2, 0)}/24", "dev", f"pt{t}l0"])
        self.nets = nets
        return nets

    # -- sshd ---------------------------------------------------------------------------------
    def start_sshd(self, label: str, listen: list[str], allow: list[str], extra: str = "",
                   lmod_modules: Path | None = None) -> Callable[[], str]:
        """Start the sshd of host `label` in its own namespaces; returns the wait for it to listen, which
        returns the host's known_hosts line."""
        d = self.base / "sshd" / label
        d.mkdir(mode=0o700, parents=True)
        must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", label, "-f", str(d / "ssh_host_ed25519_key")])
        cfg = d / "sshd_config"
        cfg.write_text(sshd_config(d, listen, allow, extra))
        host_files(d, label)
        if lmod_modules is not None:
            (d / "lmod-modules").symlink_to(lmod_modules)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        must([SSHD, "-t", "-f", str(cfg)], f"checking {cfg}")
        log = d / "sshd.log"
        # unshare and sh exec, so the Popen pid ends up being sshd, inside the host's namespaces
        proc = spawn(["ip", "netns", "exec", self.ns(label), "unshare", "--mount", "--uts", "--propagation", "private",
                      "sh", "-c", HOST_SETUP, label, str(d), str(log), SSHD, "-D", "-f", str(cfg), "-E", str(log)])
        self._sshd.append(proc)

        def listening() -> bool:
            if proc.poll() is not None:
                text = log.read_text() if log.exists() else ""
                raise TestServerError(f"sshd of {label} exited with rc {proc.returncode}: {text[-500:]}")
            out = run(["ip", "netns", "exec", self.ns(label), "ss", "-Htln"], timeout=10).stdout
            return all(f"{a}:22" in out for a in listen)

        def wait() -> str:
            retry_until(listening, 20, 0.05, what=f"sshd of {label} to listen on {', '.join(listen)}", retry_on=())
            self.anchor[label] = proc.pid
            pub = (d / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            return f"{','.join(listen)} {' '.join(pub)}\n"

        return wait

    # -- compute nodes ------------------------------------------------------------------------
    def add_node(self, label: str) -> None:
        """Compute node `label`: a namespace on the batch system's net with matagorda, its own /tmp and
        hostname (HOST_SETUP), held by a sleep (its anchor); no sshd."""
        assert self.nets is not None, "the network comes first"
        ns = self.ns(label)
        self._add_netns(ns)
        self._nodes[label] = (ns, None)
        host_addr, node_addr = self.nets.node
        self._veth(self.ns("matagorda"), self.node_interface, host_addr, ns, f"pt{self.token}c1", node_addr)
        d = self.base / "nodes" / label
        d.mkdir(mode=0o755, parents=True)
        host_files(d, label)
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
        self.anchor[label] = anchor.pid

    def remove_nodes(self) -> list[str]:
        """Remove every compute node (its namespace, what ran there, its files); returns what failed."""
        errors = []
        for label, (ns, anchor) in list(self._nodes.items()):
            self.anchor.pop(label, None)
            try:
                delete_netns(ns)  # ends the anchor, slurmd's job steps and what jobs left running
                if anchor is not None:
                    anchor.wait(5)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"removing node {label}: {exc}")
                continue
            self._netns.remove(ns)
            del self._nodes[label]
            shutil.rmtree(self.base / "nodes" / label, ignore_errors=True)
        return errors

    # -- use ----------------------------------------------------------------------------------
    def enter(self, label: str) -> list[str]:
        """The argv prefix that runs a command as root in host `label`'s namespaces."""
        return ["nsenter", f"--target={self.anchor[label]}", "--net", "--mount", "--uts", "--"]

    def pid_of(self, host: str | None) -> int:
        label = HOST_OF_ALIAS.get(host or "matagorda", host or "")
        try:
            return self.anchor[label]
        except KeyError:
            raise TestServerError(f"the netns test server has no host {host!r}",
                                  hint=f"Hosts: {', '.join(HOST_OF_ALIAS)}.") from None

    def admin_run(self, argv: list[str], *, host: str | None = None, user: TestUser | None = None,
                  **kwargs: Any) -> Result:
        """Run argv on host (default matagorda) inside its namespaces (its sockets, /tmp, hostname).

        As root, or as user (their uid, groups and login environment, in their home)."""
        enter = ["nsenter", f"--target={self.pid_of(host)}", "--net", "--mount", "--uts"]
        if user is None:
            return run([*enter, "--", *argv], **kwargs)
        entry = pwd.getpwnam(user.name)
        return run([*enter, f"--wd={entry.pw_dir}", "--", "setpriv", f"--reuid={entry.pw_uid}",
                    f"--regid={entry.pw_gid}", "--init-groups", "--reset-env", "--", *argv], **kwargs)

    def host_path(self, path: str, host: str | None = None) -> Path:
        """Where root in the root namespace reaches `path` of host (e.g. its /tmp/portal-ports).

        Through /proc/PID/root: do not follow absolute symlinks found there (they resolve here)."""
        return Path(f"/proc/{self.pid_of(host)}/root") / path.lstrip("/")

    # -- teardown -----------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """End the sshds and every process in the namespaces (the namespaces stay); returns what failed."""
        def stop_sshd(proc: subprocess.Popen[bytes]) -> None:
            kill_and_wait([proc.pid])
            proc.wait(5)

        errors = each_tried(self._sshd, stop_sshd, lambda proc: f"stopping sshd {proc.pid}")
        self.anchor.clear()
        for ns in self._netns:  # the namespaces stay (remove() deletes them)
            errors += each_tried([ns], lambda ns: kill_and_wait(netns_pids(ns)),
                                 lambda ns: f"stopping processes in {ns}")
        return errors

    def remove(self) -> list[str]:
        """Delete the namespaces (and with them the veths and the route); returns what failed."""
        self._nodes.clear()
        return each_tried(self._netns, delete_netns, lambda ns: f"deleting {ns}")

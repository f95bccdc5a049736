"""A real SLURM for the netns test server: one munged, slurmctld on matagorda, slurmd on compute nodes.

The pure part builds the per-run files (`SlurmLayout`, `slurm_conf`); `SlurmDaemons` starts and stops
the daemons, each inside the namespaces of its host (given as an `nsenter` prefix by slurm_hosts.py), with
pids it owns: of the machine's own SLURM and munge (if any) only the munge key is used. Users on the
hosts see this run's config as /etc/slurm/slurm.conf (a bind mount in the hosts' mount namespaces),
so plain `sbatch`, `squeue` and `scancel` work in an ssh session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from portal_tasks.runner import Result, run
from portal_tasks.testing.procs import kill_and_wait, pid_alive
from portal_tasks.testing.errors import TestServerError
from portal_tasks.testing.waiting import retry_until

BINARIES = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/bin/scontrol")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_USER = "munge"
ETC_SLURM = "/etc/slurm"  # where the hosts see this run's config dir
PARTITION = "debug"
CTLD_PORT = 6817  # ports are per network namespace: runs side by side do not collide
SLURMD_PORT = 6818
NODE_CPUS = 2
NODE_MEMORY_MB = 4096  # what a node offers; memory is not a consumable (CR_Core), so jobs share it


def unavailable() -> str | None:
    """Why SLURM cannot run in the test server here, or None."""
    if os.geteuid() != 0:
        return "the test SLURM needs root"
    for binary in BINARIES:
        if not os.access(binary, os.X_OK):
            return f"the test SLURM needs {binary} (apt-get install slurmctld slurmd slurm-client munge)"
    if not MUNGE_KEY.exists():
        return f"the test SLURM needs the munge key {MUNGE_KEY} (apt-get install munge makes one)"
    try:
        pwd.getpwnam(MUNGE_USER)
    except KeyError:
        return f"the test SLURM needs the user {MUNGE_USER} (apt-get install munge makes it)"
    return None


@dataclass(frozen=True)
class SlurmCluster:
    """What tests know of the run's SLURM."""

    cluster_name: str
    partition: str  # the default (and only) partition
    nodes: tuple[str, ...]  # compute node names, also their test-server host labels (admin_run host=...)
    node_addresses: tuple[str, ...]  # their addresses on the net they share with the controller host
    #: the controller host (matagorda) on that net: its interface (portal's `scheduler_interface` for workers
    #: on the nodes) and address
    scheduler_interface: str
    scheduler_address: str
    conf: Path  # the slurm.conf as this process reaches it (inside the run dir)
    node_cpus: int = NODE_CPUS  # each node's
    node_memory_mb: int = NODE_MEMORY_MB  # each node's RealMemory: a job's --mem may not exceed it
    #: daemon name ("munged", "slurmctld", "slurmd:NODE") -> pid, as seen from the root namespace
    pids: dict[str, int] = field(default_factory=dict, compare=False)
    start_seconds: float = field(default=0.0, compare=False)  # how long starting it took

    @property
    def node(self) -> str:
        return self.nodes[0]

    @property
    def node_address(self) -> str:
        return self.node_addresses[0]


@dataclass(frozen=True)
class SlurmLayout:
    """The files of one run's SLURM and munge, under one directory."""

    root: Path

    @property
    def etc(self) -> Path:  # bound over /etc/slurm on the hosts
        return self.root / "etc"

    @property
    def conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def munge(self) -> Path:  # owned by munge (munged checks it): socket, pid, log, seed
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge / "munge.socket"

    @property
    def state(self) -> Path:  # StateSaveLocation, slurmctld's
        return self.root / "state"

    @property
    def spool(self) -> Path:  # SlurmdSpoolDir/<node>
        return self.root / "spool"

    @property
    def logs(self) -> Path:
        return self.root / "log"


def munged_argv(layout: SlurmLayout) -> list[str]:
    m = layout.munge
    return ["/usr/sbin/munged", "--foreground", f"--socket={layout.munge_socket}", f"--key-file={MUNGE_KEY}",
            f"--log-file={m / 'munged.log'}", f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'munged.seed'}",
            "--num-threads=4"]


def slurm_conf(layout: SlurmLayout, cluster_name: str, controller: tuple[str, str],
               nodes: Sequence[tuple[str, str]]) -> str:
    """slurm.conf (Debian's slurm 22.05) of a small cluster: controller (name, address), nodes [(name, address)]."""
    ctl_name, ctl_addr = controller
    node_lines = "\n".join(
        f"NodeName={name} NodeAddr={addr} CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN"
        for name, addr in nodes
    )
    return f"""\
# slurm.conf of the portal test server (one run)
ClusterName={cluster_name}
SlurmctldHost={ctl_name}({ctl_addr})
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={layout.munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={layout.state}
SlurmdSpoolDir={layout.spool}/%n
SlurmctldPidFile={layout.root}/slurmctld.pid
SlurmdPidFile={layout.root}/slurmd-%n.pid
SlurmctldLogFile={layout.logs}/slurmctld.log
SlurmdLogFile={layout.logs}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in the test hosts' namespaces
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# short timeouts: a test run is minutes long
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=60
TmpFS=/tmp
{node_lines}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def write_layout(layout: SlurmLayout, conf: str) -> None:
    """Make the run's dirs (munge's owned by munge, as munged insists) and write slurm.conf."""
    for d in (layout.root, layout.etc, layout.state, layout.spool, layout.logs, layout.munge):
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
    munge = pwd.getpwnam(MUNGE_USER)
    os.chown(layout.munge, munge.pw_uid, munge.pw_gid)
    layout.conf.write_text(conf)
    layout.conf.chmod(0o644)


def _log_tail(path: Path, chars: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no {path.name})"


class SlurmDaemons:
    """munged, slurmctld and each node's slurmd of one run, started in their hosts' namespaces."""

    def __init__(self, layout: SlurmLayout, controller_enter: list[str], node_enter: dict[str, list[str]]) -> None:
        #: argv prefixes that run a command in the controller host's / each node's namespaces (as root)
        self.layout = layout
        self.controller_enter = controller_enter
        self.node_enter = node_enter
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """argv with stdio on a log file (a daemon in the foreground must not block on a full pipe)."""
        with open(self.layout.logs / f"{name.replace(':', '-')}.out", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def _alive_or_raise(self, name: str, log: Path) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            out = _log_tail(self.layout.logs / f"{name.replace(':', '-')}.out", 400)
            raise TestServerError(f"{name} exited with rc {proc.returncode}: {out} {_log_tail(log)}")

    def ctl(self, *argv: str, timeout: float = 20) -> Result:
        """A SLURM command as root on the controller host (plain, with its /etc/slurm)."""
        return run([*self.controller_enter, *argv], timeout=timeout)

    def start(self, nodes_seconds: float = 60) -> None:
        self._start_munged()
        self._start_slurmctld()
        for node in self.node_enter:
            self._spawn(f"slurmd:{node}", [*self.node_enter[node], "/usr/sbin/slurmd", "-D", "-N", node,
                                           "-f", str(self.layout.conf)])
        self._wait_nodes_idle(nodes_seconds)

    def _start_munged(self) -> None:
        munge = pwd.getpwnam(MUNGE_USER)
        as_munge = ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--init-groups", "--"]
        self._spawn("munged", [*self.controller_enter, *as_munge, *munged_argv(self.layout)])
        sock, log = self.layout.munge_socket, self.layout.munge / "munged.log"

        def ready() -> bool:
            self._alive_or_raise("munged", log)
            return sock.is_socket()

        retry_until(ready, 20, 0.05, what=f"munged to listen on {sock}", retry_on=())

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", [*self.controller_enter, "/usr/sbin/slurmctld", "-D", "-f", str(self.layout.conf)])
        log = self.layout.logs / "slurmctld.log"

        def ready() -> bool:
            self._alive_or_raise("slurmctld", log)
            return self.ctl("scontrol", "ping", timeout=10).stdout.count("UP") > 0

        retry_until(ready, 30, 0.2, what="slurmctld to answer `scontrol ping`", retry_on=())

    def _wait_nodes_idle(self, seconds: float) -> None:
        want = set(self.node_enter)

        def idle() -> bool:
            for node in want:
                self._alive_or_raise(f"slurmd:{node}", self.layout.logs / f"slurmd-{node}.log")
            out = self.ctl("sinfo", "-h", "-N", "-o", "%N %T", timeout=10).stdout
            states = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
            return all(states.get(node, "").strip() == "idle" for node in want)

        try:
            retry_until(idle, seconds, 0.2, what=f"nodes {', '.join(sorted(want))} to be idle in sinfo", retry_on=())
        except AssertionError as exc:
            raise TestServerError(f"{exc}; slurmctld log: {_log_tail(self.layout.logs / 'slurmctld.log')}") from None

    def _running(self) -> bool:
        ctld = self.procs.get("slurmctld")
        return ctld is not None and ctld.poll() is None

    def cancel_jobs_of(self, user: str) -> None:
        """scancel every job of user (their processes may be killed meanwhile: see wait_no_jobs_of)."""
        if self._running():
            self.ctl("scancel", f"--user={user}", timeout=15)

    def wait_no_jobs_of(self, user: str, seconds: float = 20) -> None:
        """Wait (bounded) until squeue shows no job of user (none pending, running or completing)."""
        if self._running():
            retry_until(lambda: not self.ctl("squeue", "-h", f"--user={user}", "-o", "%i").stdout.strip(),
                        seconds, 0.1, what=f"the jobs of {user} to leave squeue")

    def stop(self, seconds: float = 15) -> None:
        """`scontrol shutdown` (slurmctld and every slurmd), then end by pid whatever is left; munged last."""
        slurm = [proc for name, proc in self.procs.items() if name != "munged"]
        if self._running():
            self.ctl("scontrol", "shutdown", timeout=10)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and any(proc.poll() is None for proc in slurm):
                time.sleep(0.05)
        for name in sorted(self.procs, key=lambda n: n == "munged"):  # munged last: shutdown needs it
            proc = self.procs.pop(name)
            if pid_alive(proc.pid):
                kill_and_wait([proc.pid])
            proc.wait(5)


def remove_layout(layout: SlurmLayout) -> None:
    if layout.root.exists():
        shutil.rmtree(layout.root)

"""SLURM on the netns server's hosts, made only when a test asks (`start_slurm`, the `portal_slurm` fixture).

The compute node `node1` is a host like the others (hosts.py: own /tmp, hostname; shared homes; no sshd)
running slurmd; matagorda runs munged and slurmctld (slurm.py), and both see the run's config as
/etc/slurm/slurm.conf (a bind mount in their mount namespaces). Everything is the run's own (ports are
per network namespace, the munge socket and state are under the run's dir): servers side by side each
run a SLURM of their own.
"""

from __future__ import annotations

import time
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing import slurm as slurm_mod
from portal_tasks.testing.hosts import Hosts, must
from portal_tasks.testing.server import TestServerError, TestServerUnavailable

NODE = "node1"


class HostsSlurm:
    """The SLURM of one run's hosts; `start()` once, `stop()` idempotent (the hosts stay)."""

    def __init__(self, hosts: Hosts, name: str) -> None:
        self.hosts = hosts
        self.name = name  # the cluster's name
        self.layout = slurm_mod.SlurmLayout(hosts.base / "slurm")
        self.daemons: slurm_mod.SlurmDaemons | None = None
        self.cluster: slurm_mod.SlurmCluster | None = None
        self._etc_slurm_bound = False

    def start(self) -> slurm_mod.SlurmCluster:
        """Start the run's SLURM (compute node node1, munged, slurmctld on matagorda, slurmd); once."""
        if self.cluster is not None:
            return self.cluster
        reason = slurm_mod.unavailable()
        if reason:
            raise TestServerUnavailable(reason)
        if self.hosts.nets is None or "matagorda" not in self.hosts.anchor:
            raise TestServerError("start the netns test server before its SLURM")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> slurm_mod.SlurmCluster:
        started = time.monotonic()
        hosts, nets = self.hosts, self.hosts.nets
        assert nets is not None
        host_addr, node_addr = nets.node
        hosts.add_node(NODE)
        slurm_mod.write_layout(self.layout, slurm_mod.slurm_conf(self.layout, self.name, ("matagorda", host_addr),
                                                                 [(NODE, node_addr)]))
        Path(slurm_mod.ETC_SLURM).mkdir(mode=0o755, exist_ok=True)  # the mount point; left, as /etc/portal
        self._etc_slurm_bound = True  # before: a half-made bind is undone too
        for label in ("matagorda", NODE):
            must(["nsenter", f"--target={hosts.anchor[label]}", "--mount", "--", "mount", "--bind",
                  str(self.layout.etc), slurm_mod.ETC_SLURM], f"binding {self.layout.etc} over /etc/slurm on {label}")
        self.daemons = slurm_mod.SlurmDaemons(self.layout, hosts.enter("matagorda"), {NODE: hosts.enter(NODE)})
        self.daemons.start()
        self.cluster = slurm_mod.SlurmCluster(
            cluster_name=self.name, partition=slurm_mod.PARTITION, nodes=(NODE,), node_addresses=(node_addr,),
            scheduler_interface=hosts.node_interface, scheduler_address=host_addr, conf=self.layout.conf,
            pids=self.daemons.pids(), start_seconds=time.monotonic() - started)
        return self.cluster

    def cancel_jobs_of(self, user: str) -> None:
        """scancel every job of user (a job left pending would start in the next test)."""
        if self.daemons is not None:
            self.daemons.cancel_jobs_of(user)

    def wait_no_jobs_of(self, user: str) -> None:
        if self.daemons is not None:
            self.daemons.wait_no_jobs_of(user)

    def stop(self) -> None:
        """Stop the run's SLURM and remove its node namespaces (idempotent; the hosts themselves stay)."""
        errors: list[str] = []
        if self.daemons is not None:
            try:
                self.daemons.stop()
            except Exception as exc:  # noqa: BLE001 - the nodes go anyway
                errors.append(f"stopping SLURM: {exc}")
            self.daemons = None
        self.cluster = None
        errors += self.hosts.remove_nodes()
        if self._etc_slurm_bound and "matagorda" in self.hosts.anchor:  # so a later start binds afresh
            run(["nsenter", f"--target={self.hosts.anchor['matagorda']}", "--mount", "--", "umount", "-q",
                 slurm_mod.ETC_SLURM], timeout=10)
        self._etc_slurm_bound = False
        slurm_mod.remove_layout(self.layout)
        if errors:
            raise TestServerError("SLURM teardown: " + "; ".join(errors))

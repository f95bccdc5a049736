"""The test server's SLURM files, as built (no daemons)."""

from __future__ import annotations

from pathlib import Path

from portal_tasks.testing.netns import NETS, Nets
from portal_tasks.testing.slurm import PARTITION, SlurmLayout, munged_argv, slurm_conf

LAYOUT = SlurmLayout(Path("/home/portal-t-1-abcd/slurm"))


def _settings(text: str) -> dict[str, str]:
    """slurm.conf's Key=value lines (the first word of each; NodeName/PartitionName lines keep the rest)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_the_conf_names_this_runs_controller_nodes_and_munge_socket() -> None:
    conf = slurm_conf(LAYOUT, "portalabcd", ("matagorda", "10.231.5.1"), [("node1", "10.231.5.2")])
    s = _settings(conf)
    assert s["ClusterName"] == "portalabcd"
    assert s["SlurmctldHost"] == "matagorda(10.231.5.1)"
    assert s["AuthInfo"] == f"socket={LAYOUT.munge_socket}"
    assert s["NodeName"].startswith("node1 NodeAddr=10.231.5.2 CPUs=2 ")
    assert s["PartitionName"] == f"{PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdLogFile"):
        assert s[key].startswith(str(LAYOUT.root)), key  # nothing of the machine's own SLURM dirs
    assert (s["ProctrackType"], s["TaskPlugin"], s["JobAcctGatherType"]) == (
        "proctrack/linuxproc", "task/none", "jobacct_gather/none")  # no cgroups in the test hosts


def test_munged_keeps_its_files_in_the_run() -> None:
    argv = munged_argv(LAYOUT)
    assert "--foreground" in argv
    assert f"--socket={LAYOUT.munge_socket}" in argv
    assert all(str(LAYOUT.munge) in a for a in argv if a.startswith(("--log-file", "--pid-file", "--seed-file")))


def test_a_run_reserves_the_batch_systems_net() -> None:
    nets = Nets(16)
    assert nets.node == ("10.231.21.1", "10.231.21.2")
    assert 6 <= NETS <= 8  # its sixth net; runs pick 10.231.X with X a multiple of 8

"""The test server's SLURM: a user on matagorda submits with plain sbatch; jobs run on the compute node."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path

import pytest

from portal_tasks.runner import Result
from portal_tasks.testing.plugin import own_netns_server, slurm_on
from portal_tasks.testing.procs import pid_alive, pids_of_uid
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.slurm import SlurmCluster
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e


def _on_host(server: TestServer, user: TestUser, command: str) -> Result:
    """command in a login shell of user on the server (over ssh, as the feature will run it)."""
    return user.ssh(server.host, command, timeout=60)


def _sbatch(server: TestServer, user: TestUser, *args: str) -> str:
    res = _on_host(server, user, shlex.join(["sbatch", "--parsable", *args]))
    assert res.ok, res
    return res.stdout.strip().split(";")[0]


def _state(server: TestServer, job: str) -> str:
    """The job's state ("" once slurmctld has forgotten it)."""
    assert server.admin_run is not None
    return server.admin_run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], timeout=20).stdout.strip()


def _wait_state(server: TestServer, job: str, *states: str, seconds: float = 60) -> str:
    return retry_until(lambda: (s := _state(server, job)) in states and s, seconds, 0.2,
                       what=f"job {job} to be {' or '.join(states)}")


def test_a_job_runs_on_the_compute_node_as_the_user(portal_server: TestServer, portal_slurm: SlurmCluster,
                                                    alice: TestUser) -> None:
    out = alice.home / "hello.out"
    job = _sbatch(portal_server, alice, f"--output={out}", "--wrap", "hostname; id -un")
    # how fast SLURM starts a job is in benchmark 9 (`up --jobs 2` against dask-jobqueue, the same SLURM)
    assert _wait_state(portal_server, job, "COMPLETED", "FAILED", seconds=120) == "COMPLETED", out.read_text()
    assert out.read_text().split() == [portal_slurm.node, alice.name]


def test_users_need_no_slurm_conf_of_their_own(portal_server: TestServer, portal_slurm: SlurmCluster,
                                               alice: TestUser) -> None:
    res = _on_host(portal_server, alice, 'echo "SLURM_CONF=${SLURM_CONF-unset}"; sinfo -h -o "%P %D %T"')
    assert res.ok, res
    lines = res.stdout.splitlines()
    assert lines[0] == "SLURM_CONF=unset"
    assert lines[1] == f"{portal_slurm.partition}* 1 idle"  # the default partition, its node idle


def test_a_jobs_tmp_is_the_nodes_own(portal_server: TestServer, portal_slurm: SlurmCluster,
                                     alice: TestUser) -> None:
    assert portal_server.host_path is not None
    mark = f"portal-job-mark-{uuid.uuid4().hex[:8]}"
    job = _sbatch(portal_server, alice, f"--output={alice.home}/tmp.out", "--wrap", f"touch /tmp/{mark}")
    assert _wait_state(portal_server, job, "COMPLETED", "FAILED") == "COMPLETED"
    assert (portal_server.host_path(f"/tmp/{mark}", host=portal_slurm.node)).exists()
    assert not (portal_server.host_path(f"/tmp/{mark}", host=portal_server.host)).exists()
    assert not (Path("/tmp") / mark).exists()  # nor the machine's


def test_two_one_core_jobs_run_side_by_side(portal_server: TestServer, portal_slurm: SlurmCluster,
                                            alice: TestUser) -> None:
    jobs = [_sbatch(portal_server, alice, "-c", "1", "--mem=1G", f"--output={alice.home}/side-%j.out",
                    "--wrap", "sleep 30") for _ in range(2)]
    for job in jobs:
        _wait_state(portal_server, job, "RUNNING", seconds=30)
    assert _on_host(portal_server, alice, shlex.join(["scancel", *jobs])).ok


def test_scancel_ends_a_running_job(portal_server: TestServer, portal_slurm: SlurmCluster,
                                    alice: TestUser) -> None:
    job = _sbatch(portal_server, alice, f"--output={alice.home}/long.out", "--wrap", "sleep 300")
    _wait_state(portal_server, job, "RUNNING", seconds=30)
    res = _on_host(portal_server, alice, f"scancel {job}")
    assert res.ok, res

    def gone() -> bool:
        queue = _on_host(portal_server, alice, "squeue -h -u $USER -o %i").stdout.split()
        return job not in queue

    retry_until(gone, 30, 0.3, what=f"job {job} to leave squeue")
    retry_until(lambda: not _sleeps_of(alice), 15, 0.2, what="the job's sleep to end")


def _sleeps_of(user: TestUser) -> list[int]:
    found = []
    for pid in pids_of_uid(user.uid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"300"]:
                found.append(pid)
        except OSError:
            continue
    return found


def test_resetting_a_user_cancels_their_jobs(portal_server: TestServer, portal_slurm: SlurmCluster,
                                             alice: TestUser) -> None:
    assert portal_server.reset_user is not None
    waiting = _sbatch(portal_server, alice, "--begin=now+3600", f"--output={alice.home}/later.out", "--wrap", "true")
    running = _sbatch(portal_server, alice, f"--output={alice.home}/now.out", "--wrap", "sleep 300")
    _wait_state(portal_server, running, "RUNNING", seconds=30)
    assert _state(portal_server, waiting) == "PENDING"
    portal_server.reset_user(alice)  # as between tests: the next test finds no job of hers
    assert _on_host(portal_server, alice, "squeue -h -u $USER -o %i").stdout.strip() == ""


def test_a_wrong_partition_fails_with_slurms_own_words(portal_server: TestServer, portal_slurm: SlurmCluster,
                                                       alice: TestUser) -> None:
    res = _on_host(portal_server, alice, "sbatch -p nosuch --wrap true")
    assert res.rc != 0, res
    assert "sbatch: error: Batch job submission failed: Invalid partition name specified" in res.stderr, res


def test_the_node_is_a_host_of_the_test_server(portal_server: TestServer, portal_slurm: SlurmCluster) -> None:
    assert portal_server.admin_run is not None
    node = portal_slurm.node
    assert portal_server.admin_run(["hostname"], host=node).stdout.strip() == node
    ss = portal_server.admin_run(["ss", "-Htln"], host=node).stdout
    assert f"{portal_slurm.node_address}:6818" in ss or "*:6818" in ss or "0.0.0.0:6818" in ss, ss
    iface = portal_server.admin_run(["ip", "-4", "-o", "addr", "show", "dev", portal_slurm.scheduler_interface])
    assert f"inet {portal_slurm.scheduler_address}/24" in iface.stdout, iface
    # the node reaches matagorda on that address (as workers reach their scheduler): slurmctld's port here
    connect = f"import socket; socket.create_connection(({portal_slurm.scheduler_address!r}, 6817), 5).close()"
    res = portal_server.admin_run(["python3", "-c", connect], host=node, timeout=20)
    assert res.ok, res


def test_teardown_leaves_no_daemon_and_no_node(request: pytest.FixtureRequest) -> None:
    from portal_tasks.testing.netns import netns_list

    with own_netns_server(request, "a SLURM of its own to stop") as server:
        assert server.admin_run is not None and server.host_path is not None
        with slurm_on(server) as cluster:
            pids = cluster.pids
            assert set(pids) == {"munged", "slurmctld", f"slurmd:{cluster.node}"}
            assert all(pid_alive(pid) for pid in pids.values()), pids
            conf = server.host_path("/etc/slurm/slurm.conf")
            assert f"ClusterName={cluster.cluster_name}" in conf.read_text()
        # gone when slurm_on returns (it waits for each of them), not some time later
        assert not {name: pid for name, pid in pids.items() if pid_alive(pid)}, pids
        assert not [ns for ns in netns_list() if ns.endswith(f"{server.run_id}-{cluster.node}")]
        assert not cluster.conf.exists()
        assert server.admin_run(["findmnt", "-n", "/etc/slurm"]).stdout.strip() == ""  # matagorda's bind is gone
        with pytest.raises(Exception, match="no host"):
            server.admin_run(["true"], host=cluster.node)

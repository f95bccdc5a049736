"""A home shared by several machines (NFS): pids recorded on one are never signalled on another."""

import platform
import subprocess
import sys

import pytest

from portal_tasks.remote import cluster


@pytest.fixture
def dask_like():
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)",
                             "dask-scheduler-lookalike"], stdout=subprocess.PIPE, text=True)
    # its command line shows in /proc once its exec is through, which its first line proves
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    yield proc.pid
    proc.kill()
    proc.communicate()


def test_recorded_pids_of_this_machine_count_as_stale(dask_like):
    state = {"hostname": platform.node(), "scheduler_pid": dask_like}
    assert dask_like in cluster.stale_pids("no-such-key", state, None)


def test_recorded_pids_of_another_machine_are_left_alone(dask_like):
    state = {"hostname": "another-login-node", "scheduler_pid": dask_like}
    assert dask_like not in cluster.stale_pids("no-such-key", state, None)
    assert cluster.health(state)["healthy"] is False
    assert cluster.health(state)["elsewhere"] == "another-login-node"

"""(9) `up --workers 0 --jobs 2` on the test server's SLURM until both jobs' workers joined (the scheduler alone on
the host, as a batch user runs it), against dask-jobqueue by hand over one ssh: ``SLURMCluster`` (TLS with the same
certificate) + ``scale(2)`` + ``wait_for_workers``."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from bench.context import Bench, first_line
from bench.stats import Row, median

#: Typed by a person on the host: dask-jobqueue's own cluster manager with the user's TLS set, two jobs of
#: one core, then a wait until both workers joined; prints the seconds since the ssh session started.
BY_HAND = r"""
import sys, time
from dask.distributed import Client
from distributed.security import Security
from dask_jobqueue import SLURMCluster
tls = sys.argv[1]
security = Security(tls_ca_file=tls + "/ca.pem", tls_client_cert=tls + "/cert.pem", tls_client_key=tls + "/key.pem",
                    tls_scheduler_cert=tls + "/cert.pem", tls_scheduler_key=tls + "/key.pem",
                    tls_worker_cert=tls + "/cert.pem", tls_worker_key=tls + "/key.pem", require_encryption=True)
cluster = SLURMCluster(cores=1, memory="512MiB", processes=1, walltime="00:20:00", security=security,
                       protocol="tls://", scheduler_options={"interface": sys.argv[2], "dashboard_address": ":0"})
cluster.scale(2)
client = Client(cluster)
client.wait_for_workers(2, timeout=120)
print("workers", len(client.scheduler_info()["workers"]), flush=True)
client.close()
cluster.close()
"""


def _config(b: Bench, interface: str) -> None:
    (b.user("alice").laptop / "portal.yaml").write_text(
        f"hosts:\n  {b.host}:\n    scheduler_interface: {interface}\n    jobs_wait: 120\n"
        "    jobqueue: {cores: 1, memory: 512MiB, walltime: '00:20:00'}\n")


def by_hand(b: Bench, interface: str) -> float:
    """Seconds from the ssh start until dask-jobqueue's client sees both workers (teardown not timed)."""
    alice = b.user("alice")
    command = f"{b.python} -c {shlex.quote(BY_HAND)} {alice.home}/.portal/tls {interface}"
    argv = alice.ssh_argv(b.host, command, options=["-o", "ControlMaster=no", "-o", "ControlPath=none"])
    seconds, line, rc, err = first_line(argv)  # wait_for_workers gives up after 120 s
    if line.strip() != "workers 2":
        raise RuntimeError(f"dask-jobqueue by hand failed (rc {rc}): {line} {err}")
    return seconds


def _queue_empty(b: Bench) -> None:
    alice = b.user("alice")
    alice.ssh(b.host, "scancel -u \"$USER\"", timeout=30)
    deadline = time.monotonic() + 30
    while alice.ssh(b.host, "squeue -h -u \"$USER\"", timeout=30).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.5)


def run(b: Bench, runs: int = 3, keep_slurm: bool = False) -> list[Row]:
    """``keep_slurm``: leave the server's SLURM running (someone else started it and stops it)."""
    if b.server.start_slurm is None or b.server.stop_slurm is None:
        b.notes.append("jobs: the test server has no SLURM of its own; skipped")
        return []
    slurm: Any = b.server.start_slurm()
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    ups, hands = [], []
    env_name, b.env_name = b.env_name, "hpc"
    try:
        for _ in range(runs):
            b.reset(alice)
            _config(b, slurm.scheduler_interface)
            # what a batch user types: the scheduler alone on the login node, its workers the jobs' (as by hand)
            seconds, res = b.up(alice, "--workers", "0", "--jobs", "2")
            if "2 jobs running, 2 workers joined" not in res.stderr:
                raise RuntimeError(f"up --jobs 2 returned before its workers joined: {res.stderr[-800:]}")
            ups.append(seconds)
            status = json.loads(b.portal(alice, "status", "--host", b.host, "--json").stdout)
            assert all(j["workers"] for j in status["clusters"][0]["jobs"]), status
            b.portal(alice, "down", "--host", b.host)
            _queue_empty(b)
            hands.append(by_hand(b, slurm.scheduler_interface))  # the TLS set `up` made stays in the home
            _queue_empty(b)
    finally:
        b.env_name = env_name
        b.reset(alice)
        (alice.laptop / "portal.yaml").unlink(missing_ok=True)
        if not keep_slurm:
            b.server.stop_slurm()
    return [Row("9", "`up --workers 0 --jobs 2` until both jobs' workers joined (SLURM, 1 core each, "
                f"median of {runs})",
                median(ups), "s", "dask-jobqueue by hand: `SLURMCluster` + `scale(2)` + `wait_for_workers(2)`, "
                "same TLS, over one ssh", median(hands), target=1.2)]

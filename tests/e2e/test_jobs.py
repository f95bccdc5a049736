"""Workers as batch jobs on a real SLURM: `up --jobs 2` puts two jobs RUNNING on the compute node,
their workers join the user's TLS-only scheduler and compute; every socket of the user on the node is
in the block; a co-user on the node is refused; `scale` adds a job that stays pending without
blocking; `sbatch` refusing a job is one line in SLURM's words; `down` leaves squeue empty."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest

from portal_tasks import daskcmd, tls
from portal_tasks.envs import env_key
from portal_tasks.testing.assertions import dask_client
from portal_tasks.testing.flows import explained_ports, explained_servers, status, up
from portal_tasks.testing.intruders import INTRUDER, own_bundle
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import listening_sockets
from portal_tasks.testing.waiting import retry_until

pytestmark = pytest.mark.e2e

#: As the user on the scheduler's host: a plain Client(); where tasks pinned to the job workers ran.
ON_JOBS = """
import json, socket, sys, time
from dask.distributed import Client
c = Client(timeout=20)
deadline = time.monotonic() + 90
while True:  # the workers of JOBS_WANTED jobs, within a bounded wait
    info = c.scheduler_info(n_workers=-1)["workers"]
    jobs = sorted(a for a, w in info.items() if str(w.get("name", "")).startswith("portal-"))
    if len(jobs) >= JOBS_WANTED or time.monotonic() > deadline:
        break
    time.sleep(0.2)
where = sorted(set(c.gather([c.submit(socket.gethostname, workers=[a], pure=False) for a in jobs])))
total = c.submit(sum, list(range(100)), workers=jobs, pure=False).result()
print(json.dumps({"workers": sorted(info), "jobs": jobs, "where": where, "total": total}), flush=True)
sys.stdin.read()
"""


def _config(user: TestUser, host: str, iface: str, extra: str = "") -> None:
    (user.laptop / "portal.yaml").write_text(
        f"hosts:\n  {host}:\n    scheduler_interface: {iface}\n    jobs_wait: 60\n"
        f"    jobqueue: {{cores: 1, memory: 512MiB, walltime: '00:20:00'}}\n{extra}")


def _squeue(server: TestServer, user: TestUser) -> list[dict[str, str]]:
    res = user.ssh(server.host, "squeue -h -u \"$USER\" -o '%i|%j|%T|%r|%N'", timeout=30)
    assert res.rc == 0, res.stderr
    rows = [line.split("|") for line in res.stdout.split()]
    return [dict(zip(("id", "name", "state", "reason", "node"), row)) for row in rows]


def _empty_queue(server: TestServer, user: TestUser) -> None:
    retry_until(lambda: not _squeue(server, user), 30, 0.5, what=f"squeue of {user.name} to be empty")


@pytest.fixture
def cleanup_jobs(portal_server: TestServer, portal_slurm: Any, alice: TestUser) -> Any:
    """Whatever a failing test left queued is cancelled (alice's jobs only)."""
    yield
    alice.ssh(portal_server.host, "scancel -u \"$USER\"", timeout=30)


def test_up_jobs_run_join_compute_and_down_empties_the_queue(portal_server: TestServer, portal_slurm: Any,
                                                             alice: TestUser, bob: TestUser, run_portal: Any,
                                                             cleanup_jobs: Any) -> None:
    host, node, node_ip = portal_server.host, portal_slurm.node, portal_slurm.node_address
    env = str(portal_server.envs["hpc"])
    _config(alice, host, portal_slurm.scheduler_interface)

    res = up(run_portal, alice, host, env, "--workers", "1", "--jobs", "2")
    print(res.stderr)
    assert "2 jobs running, 2 workers joined" in res.stderr
    queued = _squeue(portal_server, alice)
    assert [q["state"] for q in queued] == ["RUNNING", "RUNNING"] and {q["node"] for q in queued} == {node}, queued

    report = status(run_portal, alice, host)
    cluster = report["clusters"][0]
    assert cluster["address"] == f"tls://{portal_slurm.scheduler_address}:{cluster['scheduler_port']}"
    assert [j["state"] for j in cluster["jobs"]] == ["RUNNING", "RUNNING"]
    assert all(len(j["workers"]) == 1 and f"//{node_ip}:" in j["workers"][0] for j in cluster["jobs"])

    variables = daskcmd.client_environment(cluster["scheduler_port"], cluster["dashboard_port"],
                                           tls.paths(str(alice.home)), portal_slurm.scheduler_address)
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=ON_JOBS.replace("JOBS_WANTED", "2")) as seen:
        print("workers:", seen["workers"])
        assert len(seen["workers"]) == 3 and len(seen["jobs"]) == 2
        assert seen["where"] == [node] and seen["total"] == 4950

    block = report["ports"]["block"]
    on_node = listening_sockets(portal_server, alice, node)
    print("alice on the node:", on_node)
    assert len(on_node) >= 4  # per job: worker, nanny, the worker's HTTP server
    assert all(block["start"] <= s.port <= block["end"] for s in on_node), (block, on_node)
    assert all(s.addr in (node_ip, "127.0.0.1") for s in on_node), on_node

    ca, cert, key = own_bundle(bob)
    tried = portal_server.admin_run([f"{env}/bin/python", "-c", INTRUDER, cluster["address"], ca, cert, key],
                                    host=node, user=bob, timeout=90)
    assert tried.rc == 0, tried.stderr
    refused = json.loads(tried.stdout.strip().splitlines()[-1])
    print("co-user on the compute node:", refused)
    assert set(refused) == {"tcp", "tls-own-cert", "tls-no-cert"}
    assert all(v.startswith("refused") for v in refused.values()), refused

    # a third job cannot start (two CPUs, both taken): scale says so and returns once its jobs_wait (3 s) is over
    # (that the wait ends then is tests/unit/test_jobs_wait.py; the run_portal timeout is only a safety net)
    (alice.laptop / "portal.yaml").write_text((alice.laptop / "portal.yaml").read_text().replace("60", "3"))
    more = run_portal(alice, "scale", "--host", host, "--env", env, "--jobs", "3", timeout=180)
    assert more.rc == 0, more.stdout + more.stderr
    assert re.search(r"2 jobs running, 2 workers joined; 1 job pending\b", more.stderr), more.stderr
    assert sorted(q["state"] for q in _squeue(portal_server, alice)) == ["PENDING", "RUNNING", "RUNNING"]

    def pending_for_resources() -> bool:  # SLURM's reason, as portal reports it (SLURM may take a moment to set it)
        jobs = status(run_portal, alice, host)["clusters"][0]["jobs"]
        return [(j["state"], j["reason"]) for j in jobs if j["state"] == "PENDING"] == [("PENDING", "Resources")]

    retry_until(pending_for_resources, 60, 1, what="portal's status to name SLURM's reason for the pending job")
    fewer = run_portal(alice, "scale", "--host", host, "--env", env, "--jobs", "2")
    assert fewer.rc == 0 and "cancelled worker jobs" in fewer.stderr, fewer.stdout + fewer.stderr
    retry_until(lambda: sorted(q["state"] for q in _squeue(portal_server, alice)) == ["RUNNING", "RUNNING"], 20, 0.5,
                what="the pending job to be cancelled")

    # `up --jobs 2` again: the cluster is kept, and so are its two jobs (none submitted, none cancelled)
    again = up(run_portal, alice, host, env, "--workers", "1", "--jobs", "2")
    assert "keeping the 2 worker jobs" in again.stderr and "2 jobs running, 2 workers joined" in again.stderr, \
        again.stderr
    assert sorted(q["state"] for q in _squeue(portal_server, alice)) == ["RUNNING", "RUNNING"]
    assert again.stderr.count("✓ jobs") == 1, again.stderr  # one step line, said where the jobs were made

    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0 and "jobs " in down.stdout, down.stdout + down.stderr
    _empty_queue(portal_server, alice)
    retry_until(lambda: listening_sockets(portal_server, alice, node) == [], 30, 0.5,
                what="alice's workers on the node to end")


#: As the user on a host: their `dask worker` processes in this host's network namespace (the compute nodes'
#: share the process table), and how many there are in the others: the jobs' workers.
DASK_WORKERS = r"""
import json, os
here, mine, elsewhere = os.readlink("/proc/self/ns/net"), [], 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.stat("/proc/" + pid).st_uid != os.getuid() or int(pid) in (os.getpid(), os.getppid()):
            continue
        argv = open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace").split("\0")
        net = os.readlink("/proc/%s/ns/net" % pid)
    except OSError:
        continue
    text = " ".join(argv)
    if ("dask worker" in text or "dask-worker" in text or "dask_worker" in text or "distributed.Nanny" in text
            or "multiprocessing.forkserver" in text):  # portal's `dask spec` with nannies; the workers' forkserver
        if net == here:
            mine.append(text)
        else:
            elsewhere += 1
print(json.dumps({"here": mine, "elsewhere": elsewhere}))
"""


def test_up_workers_0_jobs_2_is_the_scheduler_alone_on_the_login_host(portal_server: TestServer, portal_slurm: Any,
                                                                      alice: TestUser, run_portal: Any,
                                                                      cleanup_jobs: Any) -> None:
    """A batch user's `up`: no worker on the login host, the jobs' two workers the cluster's only ones."""
    host, node, node_ip = portal_server.host, portal_slurm.node, portal_slurm.node_address
    env = str(portal_server.envs["hpc"])
    _config(alice, host, portal_slurm.scheduler_interface)

    res = up(run_portal, alice, host, env, "--workers", "0", "--jobs", "2")
    print(res.stderr)
    assert "the scheduler alone on this host (its workers: batch jobs;" in res.stderr
    assert "2 jobs running, 2 workers joined" in res.stderr  # the same `up` call waited for them
    seen = alice.ssh(host, f"python3 -c {shlex.quote(DASK_WORKERS)}", timeout=30)
    assert seen.rc == 0, seen.stderr
    processes = json.loads(seen.stdout)
    print("alice's dask worker processes:", processes)
    assert processes["here"] == [] and processes["elsewhere"] >= 2  # the jobs' on the node, none on the login host

    report = status(run_portal, alice, host)
    cluster = report["clusters"][0]
    assert cluster["healthy"] and (cluster["workers"], cluster["workers_running"], cluster["workers_pid"]) == (0, 0, None)
    assert [j["state"] for j in cluster["jobs"]] == ["RUNNING", "RUNNING"]
    assert all(len(j["workers"]) == 1 and f"//{node_ip}:" in j["workers"][0] for j in cluster["jobs"])
    said = run_portal(alice, "status", "--host", host)
    assert said.rc == 0 and "no workers on the host, 2 joined from its 2 jobs" in said.stdout, said.stdout

    # IPython's own `client` (made as it started, once the jobs' workers had joined) sees the two of them
    window = f"=portal:=ipython-{env_key(env)}"
    asked = alice.ssh(host, shlex.join(["tmux", "send-keys", "-t", window,
                                        'print("PORTAL-WORKERS", len(client.scheduler_info()["workers"]))', "Enter"]))
    assert asked.rc == 0, asked.stderr

    def ipython_says() -> list[str]:
        pane = alice.ssh(host, shlex.join(["tmux", "capture-pane", "-p", "-t", window])).stdout
        return re.findall(r"^PORTAL-WORKERS (\d+)", pane, re.M)

    assert retry_until(ipython_says, 60, 0.5, what="IPython's client to count its workers") == ["2"]

    variables = daskcmd.client_environment(cluster["scheduler_port"], cluster["dashboard_port"],
                                           tls.paths(str(alice.home)), portal_slurm.scheduler_address)
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=ON_JOBS.replace("JOBS_WANTED", "2")) as client:
        assert len(client["workers"]) == 2 and client["jobs"] == client["workers"]  # the jobs' workers alone
        assert client["where"] == [node] and client["total"] == 4950

    # no jobs left: the scheduler alone keeps running, and `scale` says it has no workers now
    none = run_portal(alice, "scale", "--host", host, "--env", env, "--jobs", "0", timeout=180)
    assert none.rc == 0 and f"the scheduler of env {env} now has no workers" in none.stderr, none.stdout + none.stderr
    _empty_queue(portal_server, alice)
    down = run_portal(alice, "down", "--host", host)
    assert down.rc == 0, down.stdout + down.stderr
    retry_until(lambda: listening_sockets(portal_server, alice, node) == [], 30, 0.5,
                what="alice's workers on the node to end")
    retry_until(lambda: listening_sockets(portal_server, alice) == [], 30, 0.5,
                what="the scheduler and all else of alice on the login host to end")
    assert status(run_portal, alice, host)["clusters"] == []


def test_sbatch_refusing_a_job_is_one_line_and_keeps_the_cluster(portal_server: TestServer, portal_slurm: Any,
                                                                 alice: TestUser, run_portal: Any,
                                                                 cleanup_jobs: Any) -> None:
    host, env = portal_server.host, str(portal_server.envs["hpc"])
    _config(alice, host, portal_slurm.scheduler_interface)
    res = run_portal(alice, "up", "--host", host, "--env", env, "--workers", "1", "--jobs", "2", "--queue", "nosuch",
                     "--no-attach", "--no-browser", timeout=240)
    print(res.stderr)
    assert res.rc == 1 and "Traceback" not in res.stderr
    line = next(line for line in res.stderr.splitlines() if line.startswith("portal:"))
    assert "sbatch refused the job" in line and "invalid partition" in line.lower(), line
    assert _squeue(portal_server, alice) == []
    cluster = status(run_portal, alice, host)["clusters"][0]
    assert cluster["healthy"] and cluster["jobs"] == []
    again = up(run_portal, alice, host, env, "--workers", "1")
    assert f"reusing your Dask cluster for env {env}" in again.stderr and \
        status(run_portal, alice, host)["clusters"][0]["pid"] == cluster["pid"]
    run_portal(alice, "down", "--host", host)


def test_check_says_what_each_mode_needs(portal_server: TestServer, portal_slurm: Any, alice: TestUser,
                                         run_portal: Any) -> None:
    host = portal_server.host
    _config(alice, host, portal_slurm.scheduler_interface)
    res = run_portal(alice, "check", "--host", host, "--env", str(portal_server.envs["hpc"]))
    print(res.stdout)
    assert res.rc == 0, res.stdout + res.stderr
    assert f"ok   {host}: scheduler_interface {portal_slurm.scheduler_interface} is {portal_slurm.scheduler_address}" \
        in res.stdout
    assert "has dask-jobqueue (for --jobs)" in res.stdout and f"ok   {host}: sbatch at " in res.stdout
    lacking = run_portal(alice, "check", "--host", host, "--env", str(portal_server.envs["a"]))
    assert "lacks dask-jobqueue (needed for --jobs); `pip install dask-jobqueue`" in lacking.stdout
    (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    scheduler_interface: nosuch0\n")
    wrong = run_portal(alice, "check", "--host", host)
    assert wrong.rc == 1 and "scheduler_interface 'nosuch0' is not an interface" in wrong.stdout, wrong.stdout
    (alice.laptop / "portal.yaml").write_text(f"hosts:\n  {host}:\n    jobqueue: {{system: lsf}}\n")
    no_bsub = run_portal(alice, "check", "--host", host)  # this host has no LSF: a note, not a failure
    assert no_bsub.rc == 0 and f"note {host}: no bsub on the PATH, so no lsf batch jobs (--jobs) here" in no_bsub.stdout
    assert f"note {host}: no scheduler_interface set" in no_bsub.stdout


def test_pasting_up_jobs_explain_submits_jobs_whose_workers_join(portal_server: TestServer, portal_slurm: Any,
                                                                  alice: TestUser, run_portal: Any,
                                                                  cleanup_jobs: Any) -> None:
    host, env = portal_server.host, str(portal_server.envs["hpc"])
    _config(alice, host, portal_slurm.scheduler_interface)
    explained = run_portal(alice, "up", "--host", host, "--env", env, "--workers", "0", "--jobs", "1", "--explain")
    assert explained.rc == 0 and "sbatch <<'JOB'" in explained.stdout, explained.stdout + explained.stderr
    assert _squeue(portal_server, alice) == []  # --explain submitted nothing
    lines = explained.stdout.split("\n")
    assert list(explained_servers(explained.stdout)) == ["scheduler"]  # --workers 0: the scheduler alone on the host
    assert not [line for line in lines if " dask worker " in line]
    on_host = "\n".join(lines[1:lines.index("ON_HOST")])  # what the heredoc gives `ssh HOST bash -s`
    ran = portal_server.admin_run(["bash", "-c", on_host], user=alice, timeout=180)
    assert ran.rc == 0, ran.stdout[-800:] + ran.stderr[-800:]
    retry_until(lambda: [q["state"] for q in _squeue(portal_server, alice)] == ["RUNNING"], 60, 0.5,
                what="the pasted job to run")
    port, dashboard = explained_ports(explained.stdout)
    variables = daskcmd.client_environment(port, dashboard, tls.paths(str(alice.home)), portal_slurm.scheduler_address)
    with dask_client(portal_server, alice, f"{env}/bin/python", variables,
                     script=ON_JOBS.replace("JOBS_WANTED", "1")) as seen:
        outputs = sorted(alice.home.glob("slurm-*.out"))
        print("job output:", "\n".join(p.read_text()[-1500:] for p in outputs))
        assert seen["workers"] == seen["jobs"] and len(seen["jobs"]) == 1 and seen["where"] == [portal_slurm.node], seen

"""(4) `Client()` to the shared cluster from a new python vs a new LocalCluster with the same workers;
(6) 50 clients of one user connected at once: listening ports unchanged, scheduler memory."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench.context import Bench
from bench.stats import Row, median
from portal_tasks.testing.assertions import client_command, client_env, user_ports
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.sockets import listening_sockets

#: A new python on the host: import, then either a plain Client() (the shared cluster) or a LocalCluster.
ATTACH = """
import json, sys, time
t0 = time.perf_counter()
from dask.distributed import Client, LocalCluster
t1 = time.perf_counter()
mode, workers, threads, memory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if mode == "client":
    c = Client(timeout=30)
    cluster = None
else:
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, memory_limit=memory,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
    c = Client(cluster)
c.wait_for_workers(workers, timeout=60)
t2 = time.perf_counter()
assert c.submit(sum, [1, 2, 3]).result() == 6
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "connect": t2 - t1, "first_task": t3 - t2}), flush=True)
c.close()
if cluster is not None:
    cluster.close()
"""

#: On the host: start N pythons that each hold one plain Client(); report when all are connected.
MANY = """
import json, subprocess, sys, time
python, n = sys.argv[1], int(sys.argv[2])
child = "from dask.distributed import Client; import sys; c = Client(timeout=60); print(c.id, flush=True); sys.stdin.read()"
procs = [subprocess.Popen([python, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
         for _ in range(n)]
ids = [p.stdout.readline().strip() for p in procs]
from dask.distributed import Client
c = Client(timeout=60)
seen = c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))
print(json.dumps({"connected": sum(1 for i in ids if i), "scheduler_clients": seen}), flush=True)
sys.stdin.read()
c.close()
for p in procs:
    p.stdin.close()
for p in procs:
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
"""


def _cluster(b: Bench, user: TestUser) -> dict[str, Any]:
    res = b.portal(user, "status", "--host", b.host, "--json")
    clusters = json.loads(res.stdout).get("clusters") or []
    if not clusters:
        raise RuntimeError(f"no cluster of {user.name} runs: run `up` first")
    return dict(clusters[0])


def environment(b: Bench, user: TestUser) -> dict[str, str]:
    ports = user_ports(b.portal(user, "ports", "--host", b.host, "--json"))
    return client_env(ports, b.env, str(user.home))


def attach(b: Bench, runs: int = 5) -> list[Row]:
    runs = 1 if b.quick else runs
    alice = b.user("alice")
    b.up(alice)
    spec = _cluster(b, alice)
    args = [str(spec["workers"]), str(spec["threads"]), str(spec["memory_limit"])]
    env = environment(b, alice)
    shared: list[dict[str, float]] = []
    local: list[dict[str, float]] = []
    for _ in range(runs):
        shared.append(json.loads(b.host_python(alice, ATTACH, environment=env,
                                               args=["client", *args]).stdout.splitlines()[-1]))
        local.append(json.loads(b.host_python(alice, ATTACH, args=["local", *args]).stdout.splitlines()[-1]))

    def med(rows: list[dict[str, float]], *keys: str) -> float:
        return median([sum(r[k] for k in keys) for r in rows])

    workers = f"{spec['workers']} workers × {spec['threads']} threads"
    return [
        Row("4", f"new `LocalCluster` ({workers}) ÷ `Client()` to the shared cluster: speed-up, median of {runs}",
            med(local, "connect") / med(shared, "connect"), "×",
            f"`Client()` {med(shared, 'connect') * 1000:.0f} ms vs `LocalCluster` {med(local, 'connect'):.2f} s "
            "(after `import distributed`)", None, target=10.0, higher_is_better=True),
        Row("4", "same, whole new python incl. `import distributed` and a first task",
            med(local, "import", "connect", "first_task") / med(shared, "import", "connect", "first_task"), "×",
            f"{med(shared, 'import', 'connect', 'first_task'):.2f} s vs "
            f"{med(local, 'import', 'connect', 'first_task'):.2f} s", None),
    ]


def many(b: Bench, clients: int = 50) -> list[Row]:
    clients = 3 if b.quick else clients
    alice = b.user("alice")
    b.up(alice)
    spec = _cluster(b, alice)
    env = environment(b, alice)
    before = {(s.addr, s.port) for s in listening_sockets(b.server, alice)}
    rss_before = _rss_kib(int(spec["pid"]))
    argv = alice.ssh_argv(b.host, client_command(b.python, env, MANY))
    argv[-1] += f" {b.python} {clients}"
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{clients} clients did not connect: {proc.communicate(timeout=30)[1][-1500:]}")
        report = json.loads(line)
        during = {(s.addr, s.port) for s in listening_sockets(b.server, alice)}
        rss_during = _rss_kib(int(spec["pid"]))
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if report["connected"] != clients:
        raise RuntimeError(f"only {report['connected']} of {clients} clients connected")
    added = len(during - before)
    seed = 1 + (clients + 1) + (clients + 1)  # one env; each client (and IPython) with its own LocalCluster
    return [
        Row("6", f"{clients} clients at once (+ IPython; scheduler sees {report['scheduler_clients']}): "
            f"listening ports of the user, before {len(before)}", len(during), "ports",
            f"seed scheme n_envs + n_clients + n_clusters = 1 + {clients + 1} + {clients + 1}", seed,
            note=f"{added} added"),
        Row("6", f"scheduler memory (RSS) with {clients} clients", rss_during / 1024, "MiB",
            "scheduler RSS before they connected", rss_before / 1024),
    ]


def _rss_kib(pid: int) -> float:
    """VmRSS of a host process (the netns host shares this machine's pid namespace)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")

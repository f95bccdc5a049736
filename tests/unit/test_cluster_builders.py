"""Dask command lines, window lines and client variables as data: loopback only, ports inside the block."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from portal_tasks import daskcmd, plan, tls
from portal_tasks.remote import hostpaths

HOME = "/home/alice"
GiB = 1024**3


@pytest.fixture
def spec() -> daskcmd.ClusterSpec:
    ports = plan.env_ports(23400, 1)
    server = hostpaths.server_dir(HOME, "matagorda")
    return daskcmd.ClusterSpec(key="a", mark=hostpaths.cluster_mark("a", "matagorda"), ports=ports, tls=tls.paths(HOME),
                               paths=hostpaths.cluster_paths(server, "a"), workers=2, threads=3, memory_limit=plan.split_memory(4 * GiB, 2))


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _servers(spec: daskcmd.ClusterSpec) -> dict:
    argv = daskcmd.cluster_argv(spec)
    assert argv[:3] == ["dask", "spec", "--spec"] and len(argv) == 4
    servers: dict = json.loads(argv[3])
    assert servers == daskcmd.servers(spec)
    return servers


def test_scheduler_binds_loopback_with_tls(spec: daskcmd.ClusterSpec) -> None:
    sched = _servers(spec)["scheduler"]
    assert sched["cls"] == "distributed.Scheduler"
    opts = sched["opts"]
    assert opts["host"] == "127.0.0.1" and opts["protocol"] == "tls" and opts["port"] == 23430
    assert opts["dashboard_address"] == "127.0.0.1:23431"
    assert opts["scheduler_file"].startswith(f"{HOME}/.portal/hosts/matagorda/clusters/")
    # TLS: dask spec takes no --tls-* flags; Dask's own settings give the same, scheduler and workers alike
    env = daskcmd.cluster_environment(spec)
    assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == f"{HOME}/.portal/tls/ca.pem"
    for who in ("SCHEDULER", "WORKER"):
        assert env[f"DASK_DISTRIBUTED__COMM__TLS__{who}__CERT"] == f"{HOME}/.portal/tls/cert.pem"
        assert env[f"DASK_DISTRIBUTED__COMM__TLS__{who}__KEY"] == f"{HOME}/.portal/tls/key.pem"
    assert env[hostpaths.CLUSTER_PID_FILE] == spec.paths["scheduler_pid_file"]  # the preload writes the pid there


def test_workers_loopback_ports_in_block_memory_split(spec: daskcmd.ClusterSpec) -> None:
    servers = _servers(spec)  # the scheduler and every nanny in one process: one interpreter imports Dask
    block = plan.Block(34, 23400, 23499)
    nannies = [servers[name] for name in ("a@matagorda-0", "a@matagorda-1")]
    assert list(servers) == ["scheduler", "a@matagorda-0", "a@matagorda-1"] and len(nannies) == spec.workers
    for i, nanny in enumerate(nannies):
        opts = nanny["opts"]
        assert nanny["cls"] == "distributed.Nanny" and opts["name"] == f"a@matagorda-{i}"
        assert opts["scheduler_ip"] == "tls://127.0.0.1:23430" == spec.address
        assert opts["host"] == "127.0.0.1" and opts["protocol"] == "tls" and opts["dashboard"] is False
        assert opts["memory_limit"] == 2 * GiB and opts["nthreads"] == 3
        # its own port of the slot's worker and nanny ranges, the next of the range when that one is taken
        assert opts["worker_port"] == f"{23434 + i}:23441" and opts["port"] == f"{23442 + i}:23449"
        assert opts["dashboard_address"] == f"127.0.0.1:{23450 + i}"  # each worker its own HTTP port
        assert opts["preload"] == [spec.paths["preload"]] and opts["local_directory"] == spec.paths["scratch"]
        ports = [int(p) for key in ("worker_port", "port") for p in opts[key].split(":")]
        assert all(p in block for p in ports + [int(opts["dashboard_address"].rsplit(":", 1)[1])])
    assert "0.0.0.0" not in daskcmd.cluster_argv(spec)[3]
    assert daskcmd.cluster_environment(spec)[hostpaths.WORKER_HTTP_PORTS] == "23450,23451"


def test_workers_take_the_http_ports_the_helper_chose(spec: daskcmd.ClusterSpec) -> None:
    chosen = dataclasses.replace(spec, ports=dataclasses.replace(spec.ports, http=(23450, 23452)))
    assert daskcmd.cluster_environment(chosen)[hostpaths.WORKER_HTTP_PORTS] == "23450,23452"
    servers = _servers(chosen)
    assert [servers[f"a@matagorda-{i}"]["opts"]["dashboard_address"] for i in (0, 1)] == ["127.0.0.1:23450",
                                                                                         "127.0.0.1:23452"]


def test_one_worker_is_named_as_dask_worker_names_it(spec: daskcmd.ClusterSpec) -> None:
    one = dataclasses.replace(spec, workers=1)
    assert list(_servers(one)) == ["scheduler", "a@matagorda"]  # `dask worker --name K --nworkers 1` names it K


@pytest.mark.parametrize("workers", [1, 4, plan.MAX_WORKERS])
def test_every_worker_port_of_the_largest_cluster_is_in_its_slot(spec: daskcmd.ClusterSpec, workers: int) -> None:
    big = dataclasses.replace(spec, workers=workers)
    slot = set(big.ports.all_ports())
    nannies = [s["opts"] for name, s in _servers(big).items() if name != "scheduler"]
    http = {int(o["dashboard_address"].rsplit(":", 1)[1]) for o in nannies}
    assert http <= slot and len(http) == workers == len(nannies)
    assert http == {int(p) for p in daskcmd.cluster_environment(big)[hostpaths.WORKER_HTTP_PORTS].split(",")}
    for key in ("worker_port", "port"):
        firsts = set()
        for opts in nannies:
            lo, hi = (int(x) for x in opts[key].split(":"))
            assert set(range(lo, hi + 1)) <= slot
            firsts.add(lo)
        assert len(firsts) == workers  # each its own first port


def test_window_lines_paste_into_a_shell(spec: daskcmd.ClusterSpec) -> None:
    lines = daskcmd.window_lines(spec, ["source /opt/venv/bin/activate"])
    assert lines[0] == "source /opt/venv/bin/activate"
    (started,) = [line for line in lines if " dask " in line]
    assert started == lines[-1] and not started.endswith("&")  # one process; its log shows
    marked = ["env", "PORTAL_CLUSTER=a@matagorda", "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True", *daskcmd.QUIET,
              daskcmd.FORKED]
    assert "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=500ms" in daskcmd.QUIET  # an idle cluster ticks less
    assert daskcmd.FORKED == "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=forkserver"  # Dask imported once
    variables = [f"{k}={v}" for k, v in daskcmd.cluster_environment(spec).items()]
    assert shlex.split(started) == [*marked, *variables, *daskcmd.cluster_argv(spec)]
    # nothing a shell other than bash would read differently: no export, no VAR=value prefix, no $
    assert not any(line.startswith("export ") or "$" in line for line in lines)
    # one worker is spawned: no forkserver beside it (the same CPU, a resident process fewer)
    one = dataclasses.replace(spec, workers=1)
    assert daskcmd.FORKED not in shlex.split(daskcmd.window_lines(one, [])[-1])


def test_client_environment(spec: daskcmd.ClusterSpec) -> None:
    env = daskcmd.client_environment(spec.ports.scheduler_port, spec.ports.dashboard_port, spec.tls)
    assert env["DASK_SCHEDULER_ADDRESS"] == "tls://127.0.0.1:23430" == spec.address
    assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"].endswith("/.portal/tls/ca.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"].endswith("/cert.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"].endswith("/key.pem")
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert env["DASK_DISTRIBUTED__DASHBOARD__LINK"] == "http://localhost:23431/status"


def test_window_plan_targets_exact_names_and_says_what_runs() -> None:
    from portal_tasks.remote import tmux

    window = tmux.window_plan("portal", "cluster-a", ["echo 'hi there'"], {"A": "1"}, mark="m")
    assert window["kill"] == ["tmux", "kill-window", "-t", "=portal:=cluster-a"]
    assert window["argv"] == [["tmux", "new-window", "-d", "-t", "=portal:", "-n", "cluster-a", "-e", "A=1"],
                              ["tmux", "set-option", "-w", "-t", "=portal:=cluster-a", "@portal", "m"],
                              ["tmux", "send-keys", "-t", "=portal:=cluster-a", "echo 'hi there'", "Enter"]]
    lines = tmux.explain_window(window)
    assert lines[0] == "tmux kill-window -t =portal:=cluster-a 2>/dev/null || true"
    assert lines[-1] == "tmux send-keys -t =portal:=cluster-a 'echo '\"'\"'hi there'\"'\"'' Enter"


def test_tls_bundle_verifies() -> None:
    import ssl
    import tempfile
    from pathlib import Path

    files = tls.make_bundle("alice", "matagorda")
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            Path(d, name).write_text(text)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(f"{d}/ca.pem")
        client.check_hostname = False
        client.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
        a, b = __import__("socket").socketpair()
        import threading

        t = threading.Thread(target=lambda: server.wrap_socket(a, server_side=True).do_handshake())
        t.start()
        client.wrap_socket(b).do_handshake()
        t.join(5)
    assert "PRIVATE KEY" in files["key.pem"] and "PRIVATE" not in files["ca.pem"]

"""Dask command lines, window lines and client variables as data: loopback only, ports inside the block."""

from __future__ import annotations

import dataclasses
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


def test_scheduler_binds_loopback_with_tls(spec: daskcmd.ClusterSpec) -> None:
    argv = daskcmd.scheduler_argv(spec)
    assert argv[:2] == ["dask", "scheduler"]
    assert _opt(argv, "--host") == "127.0.0.1" and _opt(argv, "--protocol") == "tls"
    assert _opt(argv, "--port") == "23430"
    assert _opt(argv, "--dashboard-address") == "127.0.0.1:23431"
    assert _opt(argv, "--tls-ca-file") == f"{HOME}/.portal/tls/ca.pem"
    assert _opt(argv, "--tls-cert") == f"{HOME}/.portal/tls/cert.pem"
    assert _opt(argv, "--tls-key") == f"{HOME}/.portal/tls/key.pem"
    assert _opt(argv, "--scheduler-file").startswith(f"{HOME}/.portal/hosts/matagorda/clusters/")


def test_workers_loopback_ports_in_block_memory_split(spec: daskcmd.ClusterSpec) -> None:
    argv = daskcmd.workers_argv(spec)  # every worker in one `dask worker`: one interpreter for their nannies
    block = plan.Block(34, 23400, 23499)
    assert argv[:2] == ["dask", "worker"] and _opt(argv, "--nworkers") == "2" == str(spec.workers)
    assert _opt(argv, "--name") == "a@matagorda"  # its nannies are a@matagorda-0 and -1: the preload's index
    assert _opt(argv, "--host") == "127.0.0.1" and _opt(argv, "--protocol") == "tls"
    assert "--no-dashboard" in argv
    assert _opt(argv, "--memory-limit") == str(2 * GiB) and _opt(argv, "--nthreads") == "3"
    # the slot's worker and nanny ranges, which Dask deals out to the nannies in turn
    assert _opt(argv, "--worker-port") == "23434:23441" and _opt(argv, "--nanny-port") == "23442:23449"
    assert _opt(argv, "--dashboard-address") == "127.0.0.1:23450"
    assert _opt(argv, "--pid-file").endswith("/clusters/a.workers.pid")
    assert _opt(argv, "--scheduler-file") == _opt(daskcmd.scheduler_argv(spec), "--scheduler-file")
    assert _opt(argv, "--preload") == _opt(argv, "--preload-nanny") == spec.paths["preload"]
    assert "0.0.0.0" not in " ".join(argv + daskcmd.scheduler_argv(spec))
    ports = [int(p) for flag in ("--worker-port", "--nanny-port") for p in _opt(argv, flag).split(":")]
    assert all(p in block for p in ports + [int(_opt(argv, "--dashboard-address").rsplit(":", 1)[1])])
    # each worker its own HTTP port, never one address for several HTTP servers
    assert daskcmd.workers_environment(spec) == {hostpaths.WORKER_HTTP_PORTS: "23450,23451"}


def test_workers_take_the_http_ports_the_helper_chose(spec: daskcmd.ClusterSpec) -> None:
    chosen = dataclasses.replace(spec, ports=dataclasses.replace(spec.ports, http=(23450, 23452)))
    assert daskcmd.workers_environment(chosen) == {hostpaths.WORKER_HTTP_PORTS: "23450,23452"}
    assert _opt(daskcmd.workers_argv(chosen), "--dashboard-address") == "127.0.0.1:23450"


@pytest.mark.parametrize("workers", [1, 4, plan.MAX_WORKERS])
def test_every_worker_port_of_the_largest_cluster_is_in_its_slot(spec: daskcmd.ClusterSpec, workers: int) -> None:
    big = dataclasses.replace(spec, workers=workers)
    slot = set(big.ports.all_ports())
    argv = daskcmd.workers_argv(big)
    http = {int(p) for p in daskcmd.workers_environment(big)[hostpaths.WORKER_HTTP_PORTS].split(",")}
    assert http <= slot and len(http) == workers
    for flag in ("--worker-port", "--nanny-port"):
        lo, hi = (int(x) for x in _opt(argv, flag).split(":"))
        assert set(range(lo, hi + 1)) <= slot and hi - lo + 1 >= workers  # a port each, dealt out by Dask


def test_window_lines_paste_into_a_shell(spec: daskcmd.ClusterSpec) -> None:
    lines = daskcmd.window_lines(spec, ["source /opt/venv/bin/activate"])
    assert lines[0] == "source /opt/venv/bin/activate"
    sched = [line for line in lines if " scheduler " in line][0]
    (work,) = [line for line in lines if " worker " in line]
    assert sched.endswith(" &") and not work.endswith("&")  # the workers' log shows
    marked = ["env", "PORTAL_CLUSTER=a@matagorda", "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True", *daskcmd.QUIET,
              daskcmd.FORKED]
    assert "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=500ms" in daskcmd.QUIET  # an idle cluster ticks less
    assert daskcmd.FORKED == "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=forkserver"  # Dask imported once
    assert shlex.split(sched[:-2]) == [*marked, *daskcmd.scheduler_argv(spec)]
    assert shlex.split(work) == [*marked, "PORTAL_WORKER_HTTP=23450,23451", *daskcmd.workers_argv(spec)]
    # nothing a shell other than bash would read differently: no export, no VAR=value prefix, no $
    assert not any(line.startswith("export ") or "$" in line for line in lines)


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

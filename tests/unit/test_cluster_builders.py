"""Dask command lines, window lines and client variables as data: loopback only, ports inside the block."""

from __future__ import annotations

import shlex

import pytest

from portal_tasks import daskcmd, plan, tls
from portal_tasks.remote import layout
from portal_tasks.steps import cluster

HOME = "/home/alice"
GiB = 1024**3


@pytest.fixture
def spec() -> daskcmd.ClusterSpec:
    ports = plan.env_ports(23400, 1)
    server = layout.server_dir(HOME, "matagorda")
    return daskcmd.ClusterSpec(key="a", mark=layout.cluster_mark("a", "matagorda"), ports=ports, tls=tls.paths(HOME),
                               paths=layout.cluster_paths(server, "a"), workers=2, threads=3, memory_limit=plan.split_memory(4 * GiB, 2))


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_scheduler_binds_loopback_with_tls(spec: daskcmd.ClusterSpec) -> None:
    argv = daskcmd.scheduler_argv(spec)
    assert argv[:2] == ["dask", "scheduler"]
    assert _opt(argv, "--host") == "127.0.0.1" and _opt(argv, "--protocol") == "tls"
    assert _opt(argv, "--port") == "23420"
    assert _opt(argv, "--dashboard-address") == "127.0.0.1:23421"
    assert _opt(argv, "--tls-ca-file") == f"{HOME}/.portal/tls/ca.pem"
    assert _opt(argv, "--tls-cert") == f"{HOME}/.portal/tls/cert.pem"
    assert _opt(argv, "--tls-key") == f"{HOME}/.portal/tls/key.pem"
    assert _opt(argv, "--scheduler-file").startswith(f"{HOME}/.portal/hosts/matagorda/clusters/")


def test_workers_loopback_ports_in_block_memory_split(spec: daskcmd.ClusterSpec) -> None:
    argv = daskcmd.worker_argv(spec)
    assert argv[:2] == ["dask", "worker"]
    assert _opt(argv, "--host") == "127.0.0.1" and _opt(argv, "--protocol") == "tls"
    assert "--no-dashboard" in argv
    assert _opt(argv, "--memory-limit") == str(2 * GiB)
    assert _opt(argv, "--nworkers") == "2" and _opt(argv, "--nthreads") == "3"
    block = plan.Block(34, 23400, 23499)
    for flag in ("--worker-port", "--nanny-port"):
        lo, hi = (int(x) for x in _opt(argv, flag).split(":"))
        assert lo in block and hi in block and hi - lo + 1 >= spec.workers
    assert _opt(argv, "--scheduler-file") == _opt(daskcmd.scheduler_argv(spec), "--scheduler-file")
    assert "0.0.0.0" not in " ".join(argv + daskcmd.scheduler_argv(spec))


def test_window_lines_paste_into_a_shell(spec: daskcmd.ClusterSpec) -> None:
    lines = daskcmd.window_lines(spec, "source /opt/venv/bin/activate")
    assert lines[0] == "source /opt/venv/bin/activate"
    sched = [line for line in lines if " scheduler " in line][0]
    work = [line for line in lines if " worker " in line][0]
    assert sched.endswith(" &") and not work.endswith("&")
    assert shlex.split(sched[:-2])[1:] == daskcmd.scheduler_argv(spec)
    assert shlex.split(work)[0] == "PORTAL_CLUSTER=a@matagorda" and shlex.split(work)[1:] == daskcmd.worker_argv(spec)
    assert "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True" in lines


def test_client_environment(spec: daskcmd.ClusterSpec) -> None:
    env = daskcmd.client_environment(spec.ports.scheduler_port, spec.ports.dashboard_port, spec.tls)
    assert env["DASK_SCHEDULER_ADDRESS"] == "tls://127.0.0.1:23420" == spec.address
    assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"].endswith("/.portal/tls/ca.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"].endswith("/cert.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"].endswith("/key.pem")
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert env["DASK_DISTRIBUTED__DASHBOARD__LINK"] == "http://localhost:23421/status"


def test_window_script_targets_exact_names() -> None:
    script = cluster.window_script("portal", "cluster-a", ["echo 'hi there'"])
    assert "-t =portal:=cluster-a" in script and "-n cluster-a" in script
    assert "send-keys -t \"$W\" -l 'echo '\"'\"'hi there'\"'\"''" in script


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

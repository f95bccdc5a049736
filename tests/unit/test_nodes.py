"""Workers on other servers (pure parts): the hosts option, the command lines, the interface setting."""

from __future__ import annotations

import pytest

from portal_tasks import config, daskcmd, plan
from portal_tasks.errors import ConfigError, UsageError
from portal_tasks.remote import interfaces, nodes
from portal_tasks.remote.common import Failure
from portal_tasks.tls import TlsPaths


def test_workers_on_names_other_hosts_once_each():
    assert plan.parse_hosts("workers-on", "node1, node2,node1", "matagorda") == ["node1", "node2"]
    assert plan.parse_hosts("workers-on", ["node1"], "matagorda") == ["node1"]
    assert plan.parse_hosts("workers-on", None, "matagorda") == plan.parse_hosts("workers-on", [], "matagorda") == []
    for bad in ("-oProxyCommand=x", "matagorda", " , "):
        with pytest.raises(UsageError):
            plan.parse_hosts("workers-on", bad, "matagorda")


def test_scheduler_interface_is_an_interface_name():
    settings = config.resolve({"hosts": {"m": {"scheduler_interface": "ib0"}}}, "m")
    assert settings.scheduler_interface == "ib0" and config.resolve(None, "m").scheduler_interface is None
    with pytest.raises(ConfigError):
        config.resolve({"hosts": {"m": {"scheduler_interface": "eth0; rm -rf ~"}}}, "m")


def spec(listen: str) -> daskcmd.ClusterSpec:
    ports = plan.env_ports(23000, 0)
    return daskcmd.ClusterSpec(key="a", mark="a@m", ports=ports, tls=TlsPaths("/h/.portal/tls"),
                               paths={"scheduler_file": "/s.json", "scheduler_pid_file": "/s.pid",
                                      "workers_pid_file": "/w.pid", "scratch": "/scratch"},
                               workers=2, threads=1, memory_limit=2**30, listen=listen)


def test_scheduler_and_local_workers_listen_where_asked_and_only_with_tls():
    loop, wide = spec(daskcmd.LOOPBACK), spec("10.0.0.1")
    assert loop.address == "tls://127.0.0.1:23000" and wide.address == "tls://10.0.0.1:23000"
    for server in daskcmd.servers(wide).values():
        assert server["opts"]["host"] == "10.0.0.1" and server["opts"]["protocol"] == "tls"
    assert "0.0.0.0" not in " ".join(daskcmd.cluster_argv(wide))
    assert daskcmd.client_environment(23000, 23001, wide.tls, "10.0.0.1")["DASK_SCHEDULER_ADDRESS"] == wide.address


def test_a_node_worker_dials_the_scheduler_and_listens_on_the_nodes_address():
    node = daskcmd.NodeSpec(mark="a.from-m@n", scheduler="tls://10.0.0.1:23000", listen="10.0.0.2",
                            worker_ports=(23604, 23611), nanny_ports=(23612, 23619), tls=TlsPaths("/h/.portal/tls"),
                            paths={"workers_pid_file": "/n.pid", "scratch": "/scr"}, workers=2, threads=3,
                            memory_limit=2**30, http_ports=(23620, 23627), http=(23621, 23622))
    argv = daskcmd.node_workers_argv(node)
    assert argv[:3] == ["dask", "worker", "tls://10.0.0.1:23000"]
    assert argv[argv.index("--host") + 1] == "10.0.0.2" and argv[argv.index("--worker-port") + 1] == "23604:23611"
    assert argv[argv.index("--protocol") + 1] == "tls" and argv[argv.index("--nanny-port") + 1] == "23612:23619"
    assert argv[argv.index("--tls-key") + 1] == "/h/.portal/tls/key.pem" and "--no-dashboard" in argv
    assert argv[argv.index("--memory-limit") + 1] == str(2**30) and argv[argv.index("--nworkers") + 1] == "2"
    assert argv[argv.index("--pid-file") + 1] == "/n.pid" and argv[argv.index("--name") + 1] == "a.from-m@n"
    # one process for the node's workers, each worker the HTTP port the helper chose (portal's preload)
    lines = daskcmd.node_window_lines(node, ["source /e/bin/activate"])
    (started,) = [line for line in lines if line.startswith("env PORTAL_CLUSTER=a.from-m@n "
                                                            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True ")]
    assert " PORTAL_WORKER_HTTP=23621,23622 dask worker " in started and not started.endswith("&")


def test_interface_address_and_route_source():
    assert interfaces.interface_address("lo") == "127.0.0.1"
    assert interfaces.route_source("127.0.0.1") == "127.0.0.1"
    with pytest.raises(Failure) as info:
        interfaces.interface_address("nosuch0")
    assert info.value.kind == "ConfigError" and "nosuch0" in info.value.message


def test_a_node_without_the_same_tls_set_gets_one_for_these_workers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(nodes, "server_path", lambda *parts: str(tmp_path.joinpath(*parts)))
    files = {"ca.pem": "CA", "cert.pem": "CERT", "key.pem": "KEY"}
    got = nodes.tls_for_workers({"key": "a", "origin": "matagorda", "files": files})
    d = tmp_path / "nodes" / "a.from-matagorda.tls"
    assert got == {"dir": str(d)} and oct(d.stat().st_mode & 0o777) == "0o700"
    assert {p.name: (p.read_text(), oct(p.stat().st_mode & 0o777)) for p in d.iterdir()} == {
        name: (text, "0o600") for name, text in files.items()}

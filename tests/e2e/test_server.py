"""The test server itself: reachable as a user would reach it, and shaped as the e2e tests assume."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from portal_tasks.testing.flows import via_login_host
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import Listener, parse_ss

pytestmark = pytest.mark.e2e


def test_alice_reaches_matagorda_directly(portal_server: TestServer, alice: TestUser) -> None:
    res = alice.ssh(portal_server.host, "id -un")
    assert res.ok, res
    assert res.stdout.strip() == alice.name


def test_alice_reaches_matagorda_through_the_login_node(portal_server: TestServer, alice: TestUser) -> None:
    res = alice.ssh(via_login_host(portal_server), "id -un")
    assert res.ok, res
    assert res.stdout.strip() == alice.name


def test_via_login_address_is_not_reachable_from_the_laptop(portal_server: TestServer, alice: TestUser) -> None:
    if portal_server.backend != "netns":
        pytest.skip("only the netns server hides a net from the laptop")
    direct = alice.ssh(portal_server.via_login_host or "", "true", timeout=20,
                       options=["-o", "ProxyJump=none", "-o", "ConnectTimeout=5"])
    assert direct.rc == 255, direct
    assert "No route to host" in direct.stderr or "timed out" in direct.stderr, direct.stderr


def test_sshd_listens_on_the_host_address(portal_server: TestServer, alice: TestUser, testinfra_host) -> None:
    host = testinfra_host(alice)
    listening = host.socket.get_listening_sockets()
    assert {f"tcp://{portal_server.address}:22", "tcp://0.0.0.0:22", "tcp://:::22"} & set(listening), listening
    if portal_server.backend == "netns":
        assert host.socket(f"tcp://{portal_server.address}:22").is_listening


def test_users_exist_with_their_homes(portal_server: TestServer, alice: TestUser, bob: TestUser,
                                      testinfra_host) -> None:
    host = testinfra_host(alice)
    for user in (alice, bob):
        u = host.user(user.name)
        assert u.exists
        assert u.uid == user.uid
        assert u.home == str(user.home)
        assert u.shell == "/bin/bash"


def _env_path(server: TestServer, name: str) -> Path:
    """The prefix of test env name; skips for an env given by name (`--portal-env a`), which portal resolves."""
    env = server.envs[name]
    if not isinstance(env, Path):
        pytest.skip(f"env {name!r} is the host's env named {env!r}: portal finds it there, these checks need a path")
    return env


def test_env_a_has_dask_distributed_for_alice(portal_server: TestServer, alice: TestUser, testinfra_host) -> None:
    if "a" not in portal_server.envs:
        pytest.skip(f"no env 'a' on the {portal_server.backend} test server")
    python = _env_path(portal_server, "a") / "bin" / "python"
    res = testinfra_host(alice).run(f"{python} -c 'import distributed, IPython, jupyterlab; print(distributed.__version__)'")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip()


def test_env_bare_has_python_but_no_dask(portal_server: TestServer, alice: TestUser, testinfra_host) -> None:
    if "bare" not in portal_server.envs:
        pytest.skip(f"no env 'bare' on the {portal_server.backend} test server")
    python = _env_path(portal_server, "bare") / "bin" / "python"
    res = testinfra_host(alice).run(f"{python} -c 'import dask'")
    assert res.rc != 0
    assert "No module named 'dask'" in res.stderr


def test_bob_cannot_read_alice_private_dir(portal_server: TestServer, alice: TestUser, bob: TestUser,
                                           testinfra_host) -> None:
    private = alice.home / "private"
    assert testinfra_host(alice).file(str(private)).mode == 0o700
    res = testinfra_host(bob).run(f"ls {private}")
    assert res.rc != 0
    assert "Permission denied" in res.stderr


def test_notmux_user_has_no_tmux_on_path(portal_server: TestServer, notmux: TestUser, alice: TestUser) -> None:
    assert alice.ssh(portal_server.host, "command -v tmux").ok
    for command in ("command -v tmux", "bash -lc 'command -v tmux'"):
        res = notmux.ssh(portal_server.host, command)
        assert res.rc != 0 and res.stdout == "", (command, res)
    assert notmux.ssh(portal_server.host, "command -v python3").ok  # the rest of PATH is there


def test_reset_ends_a_users_detached_processes(portal_server: TestServer, alice: TestUser,
                                               listening_sockets) -> None:
    if portal_server.reset_user is None:
        pytest.skip("this test server does not reset users")
    start = "tmux new-session -d -s t 'python3 -m http.server --bind 127.0.0.1 20999'"
    assert alice.ssh(portal_server.host, start).ok
    from portal_tasks.testing.waiting import retry_until

    found = retry_until(lambda: [s for s in listening_sockets(alice) if s.port == 20999], 10, 0.1)
    assert found[0].addr == "127.0.0.1" and found[0].uid == alice.uid and found[0].pid
    portal_server.reset_user(alice)
    assert not listening_sockets(alice)
    assert alice.ssh(portal_server.host, "tmux ls").rc != 0


def test_ss_lines_are_read_with_owner_and_pid() -> None:
    text = (
        "LISTEN 0 128 10.231.0.2:22 0.0.0.0:* ino:109 sk:1 <->\n"
        'LISTEN 0 4096 127.0.0.1:20400 0.0.0.0:* users:(("dask scheduler",pid=123,fd=5)) uid:1001 ino:5 sk:3 <->\n'
        'LISTEN 0 128 [::1]:8888 [::]:* users:(("python3",pid=9,fd=3)) uid:1002 ino:1 sk:1 v6only:1 <->\n'
    )
    assert parse_ss(text) == [
        Listener("10.231.0.2", 22, 0),
        Listener("127.0.0.1", 20400, 1001, 123, "dask scheduler"),
        Listener("::1", 8888, 1002, 9, "python3"),
    ]


def _netns_only(server: TestServer) -> None:
    if server.backend != "netns" or server.second_host is None:
        pytest.skip(f"the {server.backend} test server has no second host with its own /tmp")


def test_every_host_has_its_own_hostname_and_machine_id(portal_server: TestServer, alice: TestUser) -> None:
    _netns_only(portal_server)
    seen = {}
    for host in (portal_server.host, portal_server.second_host or "", portal_server.login_host or ""):
        res = alice.ssh(host, "hostname; python3 -c 'import platform, socket; print(platform.node()); "
                              "print(socket.gethostbyname(socket.gethostname()))'; cat /etc/machine-id")
        assert res.ok, res
        name, node, address, machine_id = res.stdout.split()
        assert name == node == host and address == "127.0.1.1"
        seen[host] = machine_id
    assert len(set(seen.values())) == 3, seen
    assert socket.gethostname() not in seen  # the laptop keeps its own name
    assert Path("/etc/machine-id").read_text().strip() not in seen.values()


def test_each_host_has_its_own_tmp_and_all_share_the_homes(portal_server: TestServer, alice: TestUser) -> None:
    _netns_only(portal_server)
    second = portal_server.second_host or ""
    name = f"portal-tmp-{uuid.uuid4().hex[:8]}"
    assert alice.ssh(portal_server.host, f"echo matagorda > /tmp/{name} && echo home > ~/{name}").ok
    try:
        assert alice.ssh(portal_server.host, f"cat /tmp/{name}").stdout == "matagorda\n"
        for host in (second, portal_server.login_host or ""):
            assert alice.ssh(host, f"test ! -e /tmp/{name}").ok, f"/tmp/{name} of matagorda is visible on {host}"
        assert not Path("/tmp", name).exists(), "matagorda's /tmp is the laptop's"
        assert alice.ssh(second, f"cat ~/{name}").stdout == "home\n"  # the same home, as over NFS
        assert alice.ssh(second, f"echo matagorda2 > /tmp/{name}").ok
        assert alice.ssh(portal_server.host, f"cat /tmp/{name}").stdout == "matagorda\n"
        # root's ways into a host's /tmp see the host's file, not the laptop's
        assert portal_server.admin_run is not None and portal_server.host_path is not None
        assert portal_server.host_path(f"/tmp/{name}").read_text() == "matagorda\n"
        assert portal_server.host_path(f"/tmp/{name}", second).read_text() == "matagorda2\n"
        res = portal_server.admin_run(["stat", "-c", "%U %a", f"/tmp/{name}"], host=second)
        assert res.ok and res.stdout.split() == [alice.name, "644"], res
        as_alice = portal_server.admin_run(["sh", "-c", f'id -un; pwd; cat /tmp/{name}'], user=alice)
        assert as_alice.ok and as_alice.stdout.split() == [alice.name, str(alice.home), "matagorda"], as_alice
    finally:
        (alice.home / name).unlink(missing_ok=True)


def test_listeners_and_testinfra_reach_the_second_host(portal_server: TestServer, alice: TestUser,
                                                       testinfra_host, listening_sockets) -> None:
    _netns_only(portal_server)
    second = portal_server.second_host or ""
    assert testinfra_host(alice, host=second).check_output("hostname") == second
    assert testinfra_host(alice, host=second).socket(f"tcp://{portal_server.second_address}:22").is_listening
    start = "tmux new-session -d -s t 'python3 -m http.server --bind 127.0.0.1 20998'"
    assert alice.ssh(second, start).ok
    from portal_tasks.testing.waiting import retry_until

    found = retry_until(lambda: [s for s in listening_sockets(alice, second) if s.port == 20998], 10, 0.1)
    assert found[0].uid == alice.uid
    assert not [s for s in listening_sockets(alice) if s.port == 20998]  # matagorda has its own network
    assert alice.ssh(second, "mkdir -p /tmp/portal-ports && touch /tmp/portal-ports/block-1 /tmp/left").ok
    if portal_server.reset_user is not None:  # reset also clears what the user left in each host's /tmp
        portal_server.reset_user(alice)
        assert alice.ssh(second, "test ! -e /tmp/left && test ! -e /tmp/portal-ports").ok
    assert not listening_sockets(alice, second)
    assert alice.ssh(second, "tmux ls").rc != 0

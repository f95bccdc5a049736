"""Talk only to what the user owns: the host-side owner checks, run for real on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal_tasks.remote import cluster, common, jupyter

#: A listener of another uid: binds, prints its port, then prints every byte a connection brings.
FOREIGN = r'''
import os, socket, sys
os.setuid(int(sys.argv[1]))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
srv.settimeout(3)
try:
    conn, _ = srv.accept(); conn.settimeout(2)
    print("GOT", conn.recv(4096), flush=True)
except OSError as exc:
    print("NOTHING", type(exc).__name__, flush=True)
'''


@pytest.fixture
def foreign_port() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A port held by uid 65534 (needs root to set up)."""
    if os.getuid() != 0:
        pytest.skip("a listener of another uid needs root")
    proc = subprocess.Popen([sys.executable, "-c", FOREIGN, "65534"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), proc
    finally:
        proc.kill()
        proc.wait()


def entry(port: int, uid: int, pids: list[int] | None = None) -> dict:
    return {"addr": "127.0.0.1", "port": port, "uid": uid, "inode": "7", "pid": (pids or [None])[0],
            "pids": pids or [], "cmdline": ["python3", "x.py"]}


def test_holder_problem_names_another_user_and_another_program():
    me = os.getuid()
    assert common.holder_problem(20002, [], None) is None  # nothing listens: nobody receives anything
    assert common.holder_problem(20002, [entry(20002, me, [10])], [10]) is None
    assert common.holder_problem(20002, [entry(20003, me + 1)], None) is None
    assert common.holder_problem(20002, [entry(20002, me + 1)], None).startswith("another user, ")
    assert "another program of yours (pid 11" in common.holder_problem(20002, [entry(20002, me, [11])], [10])


def test_user_name_falls_back_to_the_uid():
    assert common.user_name(os.getuid()).endswith(f"(uid {os.getuid()})")
    assert common.user_name(4242424) == "uid 4242424"


def test_connect_owned_reaches_my_listener_and_checks_its_pid():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        with common.connect_owned(port, [os.getpid()]) as conn:
            assert conn.getpeername()[1] == port
        with pytest.raises(common.NotYours, match="another program of yours"):
            common.connect_owned(port, [os.getpid() + 100000])


def test_connect_owned_refuses_a_listener_replaced_while_connecting(monkeypatch):
    real = common.connection_rows

    def swapped():  # the look before connecting (the kernel's listeners) is true; afterwards another socket holds it
        return [dict(r, inode=r["inode"] + "0") if r["state"] == common.LISTEN else r for r in real()]

    monkeypatch.setattr(common, "connection_rows", swapped)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with pytest.raises(common.NotYours, match="replaced yours"):
            common.connect_owned(srv.getsockname()[1])


def test_connect_owned_does_not_connect_when_nothing_listened_at_its_look(monkeypatch):
    """A listener that binds after the look may be anyone's (a co-user races for planned ports): no
    connection at all, the caller polls again."""
    monkeypatch.setattr(common, "listeners", lambda rows=None: [])  # nothing listened at the look
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(0.3)
        with pytest.raises(ConnectionRefusedError, match="nothing listens"):
            common.connect_owned(srv.getsockname()[1], [os.getpid()])
        with pytest.raises(socket.timeout):
            srv.accept()  # not one connection reached it


def test_connect_owned_looks_again_when_the_callers_look_saw_nothing():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with common.connect_owned(srv.getsockname()[1], [os.getpid()], found=[]) as conn:  # an older look
            assert conn.getpeername()[1] == srv.getsockname()[1]


def test_connect_owned_never_connects_to_another_uid(foreign_port):
    port, proc = foreign_port
    with pytest.raises(common.NotYours, match=r"another user, .*uid 65534"):
        common.connect_owned(port)
    assert proc.stdout is not None and proc.stdout.readline().startswith("NOTHING")


def test_each_jupyter_start_gets_a_new_private_token(home):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    first = jupyter.prepare({"key": "a", "env": "a", "port": port})
    second = jupyter.prepare({"key": "a", "env": "a", "port": port})
    assert first["token"] != second["token"] and len(second["token"]) == 48
    assert Path(second["token_file"]).read_text() == second["token"]
    assert os.stat(second["token_file"]).st_mode & 0o777 == 0o600


def test_jupyter_token_never_goes_to_another_users_port(home, foreign_port):
    port, proc = foreign_port
    with pytest.raises(common.Failure, match="held by another user"):
        jupyter.prepare({"key": "a", "env": "a", "port": port})
    common.write_json(common.state_path("jupyter", "a", "state.json"), {"env": "a", "env_key": "a", "port": port,
                                                                         "socket": None})
    Path(common.state_path("jupyter", "a", "token")).write_text("t" * 48)
    taken = jupyter.wait({"key": "a", "timeout": 1})
    assert taken["taken"].startswith(f"port {port} is held by another user"), taken
    assert jupyter.status({"key": "a"})["healthy"] is False
    assert proc.stdout is not None and proc.stdout.readline().startswith("NOTHING")


# -- the dashboard the scheduler really serves -------------------------------------------------


def test_served_dashboard_is_read_from_the_scheduler_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"address": "tls://127.0.0.1:23400", "services": {"dashboard": 41234}}')
    assert cluster.served_dashboard(str(path)) == 41234
    path.write_text('{"address": "tls://127.0.0.1:23400", "services": {}}')
    assert cluster.served_dashboard(str(path)) is None
    assert cluster.served_dashboard(str(tmp_path / "missing.json")) is None


def test_dashboard_owner_wants_the_scheduler_itself():
    me = os.getuid()
    assert cluster.dashboard_owner(23401, 10, [entry(23401, me, [10])]) == (True, None)
    ok, why = cluster.dashboard_owner(23401, 10, [entry(23401, me + 1)])
    assert not ok and "held by another user" in why and "not by your scheduler" in why
    ok, why = cluster.dashboard_owner(23401, 10, [entry(23401, me, [12])])
    assert not ok and "another program of yours (pid 12" in why
    assert cluster.dashboard_owner(23401, 10, [])[0] is False
    assert "no dashboard" in cluster.dashboard_owner(None, 10, [])[1]


def test_a_moved_dashboard_is_one_note_naming_who_took_the_port():
    block = {"start": 23400, "end": 23499}
    assert cluster.moved_dashboard_note(23401, 23401, [], block) is None
    note = cluster.moved_dashboard_note(23401, 41234, [entry(23401, os.getuid() + 1)], block)
    assert note.startswith("dashboard port 23401 was taken by another user, ")
    assert "serves the dashboard on 41234 (outside your block)" in note


def test_the_kernels_listeners_are_the_listening_rows_of_proc_net_tcp():
    """sock_diag's dump (what the waits look at) and /proc/net/tcp agree on this host's listeners, v4 and v6."""
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, socket.socket() as idle:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        idle.bind(("127.0.0.1", 0))  # bound, not listening: in neither
        mine = {v4.getsockname()[1], v6.getsockname()[1], idle.getsockname()[1]}  # others come and go meanwhile
        rows = common.listening_rows()
        seen = {(r["local"], r["uid"], r["inode"]) for r in rows if r["local"][1] in mine}
        assert seen == {(r["local"], r["uid"], r["inode"]) for r in common.tcp_rows()
                        if r["state"] == common.LISTEN and r["local"][1] in mine}
        assert {(addr, port) for (addr, port), uid, _ in seen if uid == os.getuid()} == {
            ("127.0.0.1", v4.getsockname()[1]), ("::1", v6.getsockname()[1])}
        assert all(r["state"] == common.LISTEN for r in rows)


def test_the_kernels_connections_are_the_rows_of_proc_net_tcp():
    """sock_diag's dump of every socket (what connect_owned checks a connection by) and /proc/net/tcp agree."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()) as client:
            accepted, _ = srv.accept()
            with accepted:
                listening, near = tuple(srv.getsockname()), tuple(client.getsockname())
                # these three sockets exactly: an earlier connection's TIME_WAIT may share a port number
                pairs = {(near, listening), (listening, near)}

                def ours(rows):
                    return sorted((r["local"], r["remote"], r["state"], r["uid"], r["inode"]) for r in rows
                                  if (r["local"], r["remote"]) in pairs
                                  or (r["local"] == listening and r["state"] == common.LISTEN))

                got = ours(common.connection_rows())
                assert got == ours(common.tcp_rows()) and len(got) == 3  # the listener and both ends
                assert {state for _, _, state, _, _ in got} == {common.LISTEN, "01"}  # LISTEN, ESTABLISHED

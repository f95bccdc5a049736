"""portal's Dask preload: an HTTP server of the user's answers the user alone (a real Tornado server on
loopback; the co-user is a child process that changes to uid nobody, so that part needs root)."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal_tasks import daskcmd, plan, tls
from portal_tasks.remote import common, hostpaths, owner_only

NOBODY = 65534


@pytest.fixture
def guarded_server() -> Iterator[int]:
    """A Tornado app behind the guard on 127.0.0.1 (its port), answering "the user's page" to its owner."""
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Page(RequestHandler):
        def get(self) -> None:
            self.write("the user's page")

    started, box = threading.Event(), {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(Application([(r"/.*", Page)]))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        server.add_socket(sock)
        box.update(port=sock.getsockname()[1], loop=loop)
        started.set()
        loop.run_forever()
        server.stop()
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    yield int(box["port"])
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    thread.join(10)


def _get(port: int, path: str = "/status") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _get_as(uid: int, port: int, path: str) -> bytes:
    """GET as another uid (a forked child that drops to it): b"STATUS BODY" or b"ERROR NAME"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the co-user
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                status, body = _get(port, path)
                out = b"%d %s" % (status, body)
            except OSError as exc:
                out = b"ERROR " + type(exc).__name__.encode()
            os.write(write, out)
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks)


def test_the_owner_is_served(guarded_server: int) -> None:
    assert _get(guarded_server) == (200, b"the user's page")


@pytest.mark.skipif(os.getuid() != 0, reason="a co-user needs a uid change (root)")
@pytest.mark.parametrize("path", ["/", "/status", "/json/identity.json", "/info/main/workers.html", "/metrics"])
def test_a_co_user_gets_403_and_nothing_of_the_users(guarded_server: int, path: str) -> None:
    got = _get_as(NOBODY, guarded_server, path)
    assert got == b"403 " + owner_only.REFUSAL
    assert _get(guarded_server, path)[0] == 200  # and the owner still is served afterwards


def test_peer_uid_names_who_connected() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as client:
            conn, _ = listener.accept()
            with conn:
                assert owner_only.peer_uid(conn) == os.getuid()
                assert owner_only.is_owner(conn) and not owner_only.is_owner(conn, uid=os.getuid() + 1)
                # the kernel asked by sock_diag, or its /proc table read: the same answer
                assert owner_only.peer_uid(conn, diag=False) == os.getuid()
                assert owner_only.diag_uid(client.getsockname(), client.getpeername()) == os.getuid()
                # with neither, nobody can be told apart: refused (the guard fails closed)
                assert owner_only.peer_uid(conn, rows=lambda: [], diag=False) is None
            assert client.getsockname()


def test_the_guard_wraps_once() -> None:
    from tornado.httpserver import HTTPServer

    before = HTTPServer.handle_stream
    owner_only.guard(HTTPServer)
    assert HTTPServer.handle_stream is before and getattr(before, owner_only.MARK)


def test_the_helper_installs_the_preload_private_and_once(tmp_path: Path) -> None:
    path = str(tmp_path / "dask" / hostpaths.DASK_PRELOAD)
    assert common.install_preload(path) == path
    text = Path(path).read_text()
    assert text == common.preload_source() and text.startswith(Path(owner_only.__file__).read_text().rstrip("\n"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path / "dask").st_mode) == 0o700
    inode = os.stat(path).st_ino
    common.install_preload(path)
    assert os.stat(path).st_ino == inode  # the same content is not written again


def test_scheduler_and_every_worker_load_the_preload() -> None:
    home = "/home/alice"
    server = hostpaths.server_dir(home, "matagorda")
    spec = daskcmd.ClusterSpec(key="a", mark="a@matagorda", ports=plan.env_ports(23400, 1), tls=tls.paths(home),
                               paths=hostpaths.cluster_paths(server, "a"), workers=2, threads=1, memory_limit=1)
    preload = f"{server}/dask/portal_owner_only.py"
    servers = daskcmd.servers(spec)  # the scheduler's and the nannies' process, and each worker
    assert [s["opts"]["preload"] for s in servers.values()] == [[preload]] * 3
    node = daskcmd.NodeSpec(mark="m", scheduler="tls://10.0.0.1:1", listen="10.0.0.2", worker_ports=(1, 2),
                            nanny_ports=(3, 4), tls=tls.paths(home), paths=hostpaths.node_paths(server, "a.from-x"),
                            workers=1, threads=1, memory_limit=1)
    assert daskcmd.node_workers_argv(node)[-4:] == ["--preload", preload, "--preload-nanny", preload]
    args = daskcmd.job_worker_args((1, 2), (3, 4), preload="/home/al ice/p.py")
    assert args[args.index("--preload") + 1] == "'/home/al ice/p.py'"  # joined into the job script unquoted


def test_the_nanny_preload_gives_each_worker_its_own_http_port() -> None:
    assert owner_only.HTTP_PORTS == hostpaths.WORKER_HTTP_PORTS  # the preload runs alone: its copy of the name
    assert owner_only.PID_FILE == hostpaths.CLUSTER_PID_FILE
    assert owner_only.worker_http_port("a@m-0", "23450,23452") == 23450
    assert owner_only.worker_http_port("a@m-1", "23450,23452") == 23452
    assert owner_only.worker_http_port("a-b@m-host", "23450") == 23450  # one worker: its nanny's name is the key
    assert owner_only.worker_http_port("a@m-2", "23450,23452") is None  # none planned for it: Dask's default
    assert owner_only.worker_http_port(None, "") is None


def test_the_preload_sets_the_port_on_nannies_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class Nanny:
        name = "a@m-1"
        worker_kwargs = {"dashboard_address": "127.0.0.1:23450"}

    class Worker:
        name = "a@m-1"

    monkeypatch.setenv(owner_only.HTTP_PORTS, "23450,23451")
    nanny, worker = Nanny(), Worker()
    owner_only.dask_setup(nanny)
    owner_only.dask_setup(worker)  # a worker or the scheduler: nothing to set
    assert nanny.worker_kwargs == {"dashboard_address": "127.0.0.1:23451"} and not hasattr(worker, "worker_kwargs")
    monkeypatch.delenv(owner_only.HTTP_PORTS)
    unset = Nanny()
    unset.worker_kwargs = {"dashboard_address": "127.0.0.1:23450"}
    owner_only.dask_setup(unset)  # started by hand without the variable: left as Dask has it
    assert unset.worker_kwargs == {"dashboard_address": "127.0.0.1:23450"}


def test_the_installed_preload_runs_alone_and_reads_proc_net_tcp_itself(tmp_path: Path) -> None:
    """What the helper writes (common.preload_source) is imported by path, as Dask does, with no package
    around it: its /proc/net/tcp fallback (tcp_rows, appended) names who connected."""
    import importlib.util

    path = tmp_path / hostpaths.DASK_PRELOAD
    path.write_text(common.preload_source())
    spec = importlib.util.spec_from_file_location("portal_owner_only", path)
    assert spec is not None and spec.loader is not None
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    assert alone.tcp_rows.__module__ == "portal_owner_only"  # its own copy, not the package's
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()):
            conn, _ = listener.accept()
            with conn:
                assert alone.peer_uid(conn, diag=False) == os.getuid() == alone.peer_uid(conn)


FORKSERVER_PID = """import importlib.util, multiprocessing.forkserver as fs, sys
spec = importlib.util.spec_from_file_location("portal_owner_only", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
import time
pid = fs._forkserver._forkserver_pid
cmdline = ""
for _ in range(400):  # its command line is empty until its exec is through (Popen returns before that)
    cmdline = open("/proc/%d/cmdline" % pid).read().replace("\\0", " ") if pid else "-"
    if cmdline:
        break
    time.sleep(0.025)
print(pid, cmdline if pid else "")
"""


@pytest.mark.parametrize("workers_process", [True, False])
def test_the_workers_process_starts_the_forkserver_as_it_loads_the_preload(tmp_path: Path,
                                                                           workers_process: bool) -> None:
    """Imported in `dask worker --nworkers N` (the workers' HTTP ports in its environment, forkserver asked for),
    the preload starts the forkserver at once (its workers need not wait for its imports later); in the
    scheduler (no such ports) it starts none."""
    import subprocess
    import sys

    path = tmp_path / hostpaths.DASK_PRELOAD
    path.write_text(common.preload_source())
    env = dict(os.environ, **dict([daskcmd.FORKED.split("=", 1)]))
    env.pop(owner_only.HTTP_PORTS, None)
    if workers_process:
        env[owner_only.HTTP_PORTS] = "23450,23451"
    out = subprocess.run([sys.executable, "-c", FORKSERVER_PID, str(path)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    pid, _, cmdline = out.stdout.strip().partition(" ")
    if not workers_process:
        assert pid == "None"
        return
    assert pid.isdigit() and "from multiprocessing.forkserver import main" in cmdline  # running, and the server


RECORD_PID = """import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("portal_owner_only", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
import gc, resource
print(os.getpid(), os.environ.get("PORTAL_PID_FILE"), gc.get_threshold()[0], resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_preload_writes_its_process_s_pid_where_the_variable_says_and_hides_it_from_children(
        tmp_path: Path) -> None:
    """`dask spec` has no --pid-file: the preload writes the pid of the process it loads in (0600), as
    `dask scheduler --pid-file` does, and takes the variable out of the environment its workers inherit."""
    import subprocess
    import sys

    path = tmp_path / hostpaths.DASK_PRELOAD
    path.write_text(common.preload_source())
    target = tmp_path / "a.scheduler.pid"
    target.write_text("999999")  # a stale one from an earlier cluster: replaced
    env = dict(os.environ, **{owner_only.PID_FILE: str(target)})
    env.pop(owner_only.HTTP_PORTS, None)
    out = subprocess.run([sys.executable, "-c", RECORD_PID, str(path)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    pid, left, threshold, files = out.stdout.split()
    assert target.read_text() == pid and left == "None"
    import gc
    import resource

    assert int(threshold) == 3 * gc.get_threshold()[0]  # as `dask scheduler` sets its process up
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert int(files) == (max(soft, hard // 2) if hard != resource.RLIM_INFINITY else soft)
    assert (target.stat().st_mode & 0o777) == 0o600 and [p.name for p in tmp_path.iterdir()
                                                         if p.name.endswith(".part")] == []
    env.pop(owner_only.PID_FILE)
    again = subprocess.run([sys.executable, "-c", RECORD_PID, str(path)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and target.read_text() == pid  # no variable: nothing written

"""Checks of port use and cluster sharing on a test host, usable against a real server too.

    ports = user_ports(run_portal(alice, "ports", "--host", host, "--json"))
    assert_ports_in_block(listening_sockets(alice), ports["block"])
    with dask_client(server, alice, env_python, client_env(ports, env, alice.home)) as first: ...
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from typing import Any, Iterable, Iterator, Mapping

from portal_tasks import daskcmd, plan, tls
from portal_tasks.remote import hostpaths
from portal_tasks.runner import Result
from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.sockets import Listener

#: Run on the host by the env's python: connect with a plain Client(), print what it sees, wait for EOF.
CLIENT_SCRIPT = """
import json, sys
from dask.distributed import Client
c = Client(timeout=20)
info = c.scheduler_info()
print(json.dumps({"address": c.scheduler.address, "id": info["id"],
                  "workers": {a: w["memory_limit"] for a, w in info["workers"].items()},
                  "dashboard": c.dashboard_link, "sum": c.submit(sum, [1, 2, 3]).result()}), flush=True)
sys.stdin.read()
c.close()
"""

#: Run on the host by the env's python: try a plain Client() with the variables given, say whether it got in.
REACH_SCRIPT = """
from dask.distributed import Client
try:
    c = Client(timeout=5)
    print('CONNECTED', c.scheduler_info()['id'])
except Exception as e:
    print('REFUSED', type(e).__name__)
"""


def state_file(server: TestServer, user: TestUser, *parts: str, host: str | None = None) -> str:
    """A path in the user's state directory of that server (``~/.portal/hosts/MACHINE/...``)."""
    res = user.ssh(host or server.host, "python3 -c 'import platform; print(platform.node())'")
    assert res.ok and res.stdout.strip(), res.stderr
    return "/".join([hostpaths.server_dir(str(user.home), res.stdout.strip()), *parts])


def user_ports(result: Result) -> dict[str, Any]:
    """The JSON of `portal ports --json` (asserting it succeeded)."""
    assert result.rc == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def assert_ports_in_block(listeners: Iterable[Listener], block: Mapping[str, int],
                          outside: int = 0) -> list[Listener]:
    """Every listener is on loopback, and all but ``outside`` of them inside the user's block; returns them."""
    found = list(listeners)
    public = [s for s in found if s.addr not in ("127.0.0.1", "::1")]
    assert not public, f"listeners not on loopback: {public}"
    stray = [s for s in found if not block["start"] <= s.port <= block["end"]]
    assert len(stray) <= outside, f"listeners outside {block['start']}-{block['end']}: {stray}"
    return found


def client_env(ports_report: Mapping[str, Any], env: str, home: str) -> dict[str, str]:
    """The variables portal exports to the env's windows, from `ports --json`."""
    rec = ports_report["envs"][plan.env_key(env)]
    return daskcmd.client_environment(rec["scheduler_port"], rec["dashboard_port"], tls.paths(str(home)))


#: The scheduler's clients as a plain Client() on the host sees them: its scheduler's id, its own id, every client
#: id; it stays connected until stdin closes. One line: the user's login shell runs it, and tcsh reads no newline
#: inside quotes.
CLIENTS_SCRIPT = ("import json, sys; from dask.distributed import Client; c = Client(timeout=20); "
                  "ids = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.clients)); "
                  "print(json.dumps({'id': c.scheduler_info()['id'], 'mine': c.id, 'clients': ids}), flush=True); "
                  "sys.stdin.read()")


def client_command(python: str, environment: Mapping[str, str], script: str = CLIENT_SCRIPT) -> str:
    assigns = [f"{k}={v}" for k, v in environment.items()]
    return shlex.join(["env", *assigns, python, "-c", script])


@contextlib.contextmanager
def dask_client(server: TestServer, user: TestUser, python: str, environment: Mapping[str, str],
                timeout: float = 60, script: str = CLIENT_SCRIPT) -> Iterator[dict[str, Any]]:
    """A plain ``Client()`` on the host as ``user``, connected while the block runs; yields the JSON line
    ``script`` printed (by default: scheduler id, address, workers, dashboard link)."""
    proc = subprocess.Popen(user.ssh_argv(server.host, client_command(python, environment, script)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"client as {user.name} did not connect: {proc.communicate(timeout=10)[1][-800:]}")
        yield json.loads(line)
    finally:
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_one_shared_cluster(server: TestServer, user: TestUser, python: str, environment: Mapping[str, str],
                              listening: Any) -> dict[str, Any]:
    """Two independent clients reach the same scheduler and add no listening port of the user's."""
    before = {(s.addr, s.port) for s in listening(user)}
    with dask_client(server, user, python, environment) as first, dask_client(server, user, python, environment) as second:
        during = {(s.addr, s.port) for s in listening(user)}
    assert first["id"] == second["id"] and first["address"] == second["address"] == environment["DASK_SCHEDULER_ADDRESS"]
    assert during == before, f"clients opened listening ports: {sorted(during - before)}"
    return first


def assert_refused(server: TestServer, user: TestUser, python: str, environment: Mapping[str, str], what: str) -> None:
    """A plain ``Client()`` as ``user`` with these variables (another user's scheduler address) does not get in."""
    res = user.ssh(server.host, client_command(python, environment, REACH_SCRIPT), timeout=60)
    assert "REFUSED" in res.stdout and "CONNECTED" not in res.stdout, f"{what}: {res.stdout} {res.stderr[-500:]}"

"""Helpers for end-to-end tests of portal's commands: run `up`/`status`, read URLs, find laptop ssh processes.

    res = up(run_portal, alice, server.host, env)
    assert all(http_get(url)[0] == 200 for url in urls_in(res))
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from portal_tasks import plan
from portal_tasks.runner import Result, run
from portal_tasks.testing.server import TestServer, TestUser


def up(run_portal: Callable[..., Result], user: TestUser, host: str, env: str, *extra: str,
       env_vars: dict[str, str] | None = None, timeout: float = 240) -> Result:
    """`portal up --no-attach` as user (asserting it succeeded); no browser unless env_vars sets $BROWSER."""
    args = ["up", "--host", host, "--env", env, "--no-attach", *extra]
    if "--no-browser" not in extra and not (env_vars or {}).get("BROWSER"):
        args.append("--no-browser")  # a test opens the browser only with a recording $BROWSER
    res = run_portal(user, *args, env=env_vars, timeout=timeout)
    assert res.rc == 0, res.stdout + res.stderr
    return res


def status(run_portal: Callable[..., Result], user: TestUser, host: str) -> dict[str, Any]:
    """`portal status --json` as user (asserting it succeeded)."""
    res = run_portal(user, "status", "--host", host, "--json")
    assert res.rc == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


def urls_in(res: Result) -> list[str]:
    """The local URLs a command printed, first appearance first."""
    return list(dict.fromkeys(re.findall(r"http://localhost:\d+/\S+", res.stdout)))


def recording_browser(directory: Path, linger: float = 0) -> tuple[dict[str, str], Path]:
    """A $BROWSER (as env vars for run_portal) that records each argument it is handed, one a line, in
    the returned file; ``linger`` seconds it stays, as a browser would (so process pollers can see it)."""
    record = directory / "opened.txt"
    script = directory / "browser"
    wait = f"sleep {linger:g}\n" if linger else ""
    script.write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\" >> {record}; done\n{wait}")
    script.chmod(0o755)
    return {"BROWSER": str(script)}, record


def followed(opened: list[str]) -> list[str]:
    """What a browser reaches from what it was handed: a file:// redirect page portal wrote (for a URL
    with a token) becomes the URL it sends the browser on to; other URLs stay as they are."""
    found = []
    for url in opened:
        if url.startswith("file://"):
            page = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).read_text()
            match = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', page)
            assert match, f"{url} is not a redirect page: {page[:300]}"
            url = html.unescape(match.group(1))
        found.append(url)
    return found


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    """(status, start of the body); an HTTP error status is returned, a refused connection raises OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def laptop_ssh_pids(user: TestUser, *needles: bytes) -> list[int]:
    """The laptop's ssh processes that use this user's ssh config and carry every needle in their argv
    (``b"ControlMaster=yes"``: the master; ``b"-N"``: a hand-made ``ssh -f -N -L`` forward)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == b"ssh" and str(user.ssh_config).encode() in argv and all(n in argv for n in needles):
            found.append(int(pid))
    return found


def cancel_forward_by_hand(user: TestUser, host: str, local_port: int, remote: str) -> Result:
    """`ssh -O cancel -L ...` against the user's master for host: what a person does to drop one forward."""
    masters = [pid for pid in laptop_ssh_pids(user, b"ControlMaster=yes", host.encode())]
    assert len(masters) == 1, f"expected one master for {host}, found {masters}"
    argv = Path(f"/proc/{masters[0]}/cmdline").read_bytes().decode().split("\0")
    control = next(a for a in argv if a.startswith("ControlPath="))
    return run(user.ssh_argv(host, options=["-o", control, "-O", "cancel", "-L", f"127.0.0.1:{local_port}:{remote}"])[:-1],
               timeout=15)


# -- servers whose users are not reset between tests (ssh://): what the user runs there stays theirs --


def via_login_host(server: TestServer) -> str:
    """The alias reaching the host through its login node; skips where the server has none (ssh://)."""
    if server.via_login_host is None:
        pytest.skip(f"the {server.backend} test server has no login node")
    return server.via_login_host


def skip_unless_reset(server: TestServer, doing: str) -> None:
    """Skip on a server that does not reset its users (ssh://): this test ``doing`` would break what they run."""
    if server.reset_user is None:
        pytest.skip(f"this test {doing}; the {server.backend} test server does not reset its users, "
                    "so it runs only where it does (netns, docker)")


def runs_cluster(run_portal: Callable[..., Result], server: TestServer, user: TestUser, env: str) -> bool:
    """Whether user already runs a cluster for env on the server (`portal status --json`)."""
    key = plan.env_key(env)
    return any(c.get("env_key") == key for c in status(run_portal, user, server.host)["clusters"])


def skip_if_running(run_portal: Callable[..., Result], server: TestServer, user: TestUser, env: str,
                    doing: str) -> None:
    """Skip when user already runs a cluster for env on a server that is not reset (ssh://): this test
    ``doing`` needs none running, and stopping the user's own is not a test's business."""
    if server.reset_user is None and runs_cluster(run_portal, server, user, env):
        pytest.skip(f"{user.name} already runs a cluster for env {env} on {server.host}, and this test {doing}; "
                    f"the {server.backend} test server does not reset its users")


def admin_set_up_for(server: TestServer, users: int) -> None:
    """What the admin of a server for ``users`` portal users does (README, "For admins"): a claims directory
    root made, and a fair share for that many (the default shares, a quarter each, would leave the fifth none)."""
    assert server.host_path is not None and server.admin_run is not None, "needs the netns test server"
    made = server.admin_run(["mkdir", "-p", "-m", "1777", "/tmp/portal-claims"], timeout=10)
    assert made.ok, made.tail()
    server.host_path("/etc/portal/portal.yaml").write_text(f"claims_dir: /tmp/portal-claims\nfair_users: {users}\n")


def runs_scheduler(args: str) -> bool:
    """``args`` (a process's command line, as ``ps`` shows it) runs a Dask scheduler: portal's ``dask spec`` (the
    scheduler and the nannies in one process) or a ``dask scheduler``."""
    return "dask scheduler" in args or ("dask spec" in args and "distributed.Scheduler" in args)


def explained_servers(text: str) -> dict[str, Any]:
    """The servers of the cluster's ``dask spec --spec JSON`` line in ``--explain``'s text (scheduler first,
    then a nanny per worker on the host)."""
    import shlex

    line = next(line for line in text.splitlines() if " dask spec --spec " in line)
    argv = shlex.split(line)
    if "--spec" not in argv:  # typed into the window: `tmux send-keys -t WINDOW LINE Enter`
        argv = shlex.split(next(a for a in argv if " dask spec --spec " in a))
    servers: dict[str, Any] = json.loads(argv[argv.index("--spec") + 1])
    return servers


def explained_ports(text: str) -> tuple[int, int]:
    """(scheduler port, dashboard port) of the cluster ``--explain``'s text starts."""
    opts = explained_servers(text)["scheduler"]["opts"]
    return int(opts["port"]), int(opts["dashboard_address"].rsplit(":", 1)[1])

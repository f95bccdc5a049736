"""Bad input to `portal up` on the test server, one table: each case is one clear line naming the value,
a non-zero exit, no traceback, and the user's running cluster keeps running.

(`--env /opt/no/such/env`, `--memory lots` and `--workers -3` are in test_up.py; `cluster` with bad values
in test_cluster.py.)
"""

from __future__ import annotations

import json
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from portal_tasks.runner import Result, run
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestServer, TestServerUnavailable, TestUser

pytestmark = pytest.mark.e2e

#: Marks a file that must never appear: a session name that runs it would have been executed by a shell.
PWNED = f"/tmp/pwned-{uuid.uuid4().hex[:8]}"
EVIL = f"x$(touch {PWNED})"


@dataclass(frozen=True)
class Case:
    """One bad input: the extra arguments of `up`, what must be in the error line, and how to set it up."""

    args: tuple[str, ...]
    needle: str
    env: dict[str, str] = field(default_factory=dict)  # laptop environment variables
    yaml: str | None = None  # ./portal.yaml on the laptop
    role: str = "alice"
    command: str = "up"


@dataclass
class Scene:
    """The running cluster every case must leave alone, and the laptop/host files the cases use."""

    server: TestServer
    user: TestUser
    env: str
    pid: int
    badkey_config: Path
    files: dict[str, str]
    had_cluster: bool = False  # the user ran a cluster before the module (ssh:// servers): it stays

    def portal(self, user: TestUser, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        return run([sys.executable, "-m", "portal_tasks", *args],
                   timeout=timeout, env=portal_env(user, env), cwd=str(user.laptop))

    def clusters(self) -> list[dict[str, Any]]:
        res = self.portal(self.user, "status", "--host", self.server.host, "--json")
        assert res.rc == 0, res.stdout + res.stderr
        return list(json.loads(res.stdout)["clusters"])


def _badkey_config(user: TestUser, server: TestServer, where: Path) -> Path:
    """An ssh config with one alias, `matagorda-badkey`, that offers only a key the host never saw.

    It points at the login node (same users, same refusal): an alias of matagorda itself would share the
    running master's ControlPath (%C hashes the address, not the alias), and OpenSSH rightly reuses an
    authenticated master. The user's own config is left out, since IdentityFile lines add up.
    """
    key = where / "stranger_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30)
    resolved = run(["ssh", "-G", "-F", str(user.ssh_config), server.login_host or "login"], timeout=10).stdout
    seen = dict(line.split(" ", 1) for line in resolved.splitlines() if " " in line)
    config = where / "ssh_config"
    config.write_text(f"Host matagorda-badkey\n    HostName {seen['hostname']}\n    Port {seen['port']}\n"
                      f"    User {user.name}\n    IdentityFile {key}\n    IdentitiesOnly yes\n    IdentityAgent none\n"
                      f"    UserKnownHostsFile {seen['userknownhostsfile'].split()[0]}\n"
                      f"    StrictHostKeyChecking accept-new\n    BatchMode yes\n")
    return config


@pytest.fixture(scope="module")
def scene(portal_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """alice with a running cluster (up once for the module), plus the odd files the table needs on the host."""
    user = portal_server.user("alice")
    env = str(portal_server.envs["a"])
    where = tmp_path_factory.mktemp("badinput")
    setup = ("mkdir -p ~/nopython/bin && touch ~/nopython/bin/activate && "
             "echo hello > ~/not-an-env && echo $HOME")
    home = user.ssh(portal_server.host, setup).stdout.strip()
    files = {"nopython": f"{home}/nopython", "file": f"{home}/not-an-env"}
    s = Scene(portal_server, user, env, 0, _badkey_config(user, portal_server, where), files)
    try:
        s.had_cluster = bool(s.clusters())
        res = s.portal(user, "up", "--host", portal_server.host, "--env", env, "--no-attach", "--no-browser",
                       timeout=240)
        assert res.rc == 0, res.stdout + res.stderr
        s.pid = s.clusters()[0]["pid"]
        yield s
    finally:
        user.ssh(portal_server.host, "rm -rf ~/nopython ~/not-an-env")
        if portal_server.reset_user is not None:
            portal_server.reset_user(user)
        elif not s.had_cluster:  # on a server that is not reset, only what the module started goes
            s.portal(user, "down", "--host", portal_server.host)


CASES: dict[str, Case] = {
    "unknown host": Case(("--host", "no-such-host"), "no-such-host"),
    "host refuses the key": Case(("--host", "matagorda-badkey"), "matagorda-badkey"),
    "named env missing": Case(("--env", "nosuchenv"), "nosuchenv"),
    "a file, not an env": Case(("--env", "{file}"), "{file} is a file"),
    "env without python": Case(("--env", "{nopython}"), "{nopython}"),
    "env without dask": Case(("--env", "{bare}"), "{bare}"),
    "memory negative": Case(("--memory", "-4GiB"), "-4GiB"),
    "memory larger than the host": Case(("--memory", "1000TiB"), "1000TiB"),
    "memory 0%": Case(("--memory", "0%"), "0%"),
    "workers 0": Case(("--workers", "0"), "--workers 0"),
    "threads garbage": Case(("--threads", "many"), "many"),
    "port base 80 (PORTAL_PORT_BASE)": Case((), "port_base 80", env={"PORTAL_PORT_BASE": "80"}),
    "port base 70000 (portal.yaml)": Case((), "port_base 70000", yaml="port_base: 70000\n"),
    "port base not a number": Case((), "PORTAL_PORT_BASE='lots'", env={"PORTAL_PORT_BASE": "lots"}),
    "host that ssh would read as an option": Case(("--host", f"-oProxyCommand=touch {PWNED}"), "begins with '-'"),
    "block too small for one env (portal.yaml)": Case((), "block_size 10", yaml="block_size: 10\n"),
    "port plan past 65535 (portal.yaml)": Case((), "ends at 69999", yaml="port_base: 60000\n"),
    "connect timeout not a number": Case((), "connect_timeout 'soon'", yaml="connect_timeout: soon\n"),
    "malformed portal.yaml": Case((), "portal.yaml", yaml="port_base: [20000\nsession: {\n"),
    "tmux missing on the host": Case((), "tmux", role="notmux"),
    "session with $(...) (PORTAL_SESSION)": Case((), EVIL, env={"PORTAL_SESSION": EVIL}),
    "session with $(...) (portal.yaml)": Case((), EVIL, yaml=f"session: '{EVIL}'\n"),
    "session with ; (tmux --session)": Case(("--session", f"a;touch {PWNED}"), f"a;touch {PWNED}", command="tmux"),
    "session with backquotes (down)": Case((), f"`touch {PWNED}`", env={"PORTAL_SESSION": f"`touch {PWNED}`"},
                                           command="down"),
    "env name with ; (up)": Case(("--env", f"a;touch {PWNED}"), f"a;touch {PWNED}"),
    "env name with $(...) (check)": Case(("--env", EVIL), EVIL, command="check"),
    "env name with backquotes (up)": Case(("--env", f"`touch {PWNED}`"), f"`touch {PWNED}`"),
    "env path with $(...) (up)": Case(("--env", f"~/envs/{EVIL}"), f"~/envs/{EVIL}"),
    "env name with a newline (check)": Case(("--env", f"a\ntouch {PWNED}"), "holds a newline", command="check"),
    "host with ; (up)": Case(("--host", f"matagorda;touch {PWNED}"), f"matagorda;touch {PWNED}"),
    "host with $(...) (check)": Case(("--host", EVIL), EVIL, command="check"),
    "host with backquotes (up)": Case(("--host", f"`touch {PWNED}`"), f"`touch {PWNED}`"),
    "module with ; (up)": Case(("--module", f"python;touch {PWNED}"), f"python;touch {PWNED}"),
    "module with $(...) (check)": Case(("--module", EVIL), EVIL, command="check"),
    "module with backquotes (portal.yaml)": Case((), f"`touch {PWNED}`", yaml=f"modules: ['`touch {PWNED}`']\n"),
}


def _argv(case: Case, scene: Scene) -> list[str]:
    fill: Callable[[str], str] = lambda s: s.format(**scene.files, bare=scene.server.envs["bare"])  # noqa: E731
    args = [fill(a) for a in case.args]
    if case.command == "up":
        base = ["up", "--no-attach", "--no-browser"]
        if "--env" not in args:
            args += ["--env", scene.env]
    else:
        base = [case.command]
    if "--host" not in args:
        args += ["--host", scene.server.host]
    return base + args


@pytest.mark.parametrize("what", list(CASES))
def test_bad_input_is_one_line_naming_the_value_and_stops_nothing(scene, run_portal, portal_server, what):
    case = CASES[what]
    try:
        user = portal_server.user(case.role)
    except TestServerUnavailable as exc:
        pytest.skip(str(exc))
    if "badkey" in " ".join(case.args) and portal_server.login_host is None:
        pytest.skip(f"the {portal_server.backend} test server has no login node to refuse a stranger's key")
    yaml = user.laptop / "portal.yaml"
    env = dict(case.env)
    if "badkey" in " ".join(case.args):
        env["PORTAL_SSH_CONFIG"] = str(scene.badkey_config)
    if case.yaml is not None:
        yaml.write_text(case.yaml)
    try:
        res = run_portal(user, *_argv(case, scene), env=env, timeout=120)
    finally:
        yaml.unlink(missing_ok=True)
    out = res.stdout + res.stderr
    needle = case.needle.format(**scene.files, bare=scene.server.envs["bare"])
    assert res.rc not in (0, 124), f"{what}: rc {res.rc}\n{out}"
    assert "Traceback" not in out, out
    lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert len(lines) == 1, f"{what}: expected one 'portal:' line:\n{out}"
    assert needle in lines[0], f"{what}: {needle!r} not named in: {lines[0]}"
    print(f"{what}: rc {res.rc}: {lines[0]}")
    assert not Path(PWNED).exists()
    assert user.ssh(portal_server.host, shlex.join(["test", "!", "-e", PWNED])).ok, f"{what}: {PWNED} was created"
    after = scene.clusters()
    assert [c["pid"] for c in after] == [scene.pid] and after[0]["healthy"], f"{what} touched the cluster: {after}"


def test_session_with_metacharacters_is_refused_everywhere(scene, run_portal, portal_server):
    """The rule: a session name is letters, digits, - and _; anything else is refused by every command."""
    for command in (["status"], ["ports"], ["check"], ["forward"], ["up", "--explain", "--env", scene.env]):
        res = run_portal(scene.user, *command, "--host", portal_server.host, env={"PORTAL_SESSION": EVIL})
        assert res.rc == 1 and "Traceback" not in res.stderr, (command, res.stdout + res.stderr)
        assert EVIL in res.stderr and "session" in res.stderr, (command, res.stderr)
        assert EVIL not in res.stdout, (command, res.stdout)  # nothing was explained with it
    assert not Path(PWNED).exists()

"""The docker test server: docker/compose.yaml (sshd + tmux + miniforge envs, and a login node)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from portal_tasks.runner import run
from portal_tasks.testing.server import (
    TestServer,
    TestServerError,
    TestServerUnavailable,
    TestUser,
    close_masters,
)
from portal_tasks.testing.waiting import retry_until

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
ROLES = ("alice", "bob", "notmux")
UIDS = {"alice": 2001, "bob": 2002, "notmux": 2003}  # as in docker/Dockerfile
ENVS = {"a": Path("/opt/conda/envs/a"), "bare": Path("/opt/conda/envs/bare")}


def unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "the docker test server needs the `docker` CLI and a running engine"
    res = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if not res.ok:
        return f"no Docker engine answers (`docker info`: {res.tail(1)})"
    if not COMPOSE.exists():
        return f"{COMPOSE} is missing (run from a source checkout)"
    return None


class DockerServer:
    """One compose project per run (`portal-t-<pid>`), removed with its volumes by close()."""

    name = "docker"

    def __init__(self, spec: str = "docker") -> None:
        self.project = f"portal-t-{os.getpid()}"
        self.base: Path | None = None
        self.up = False

    def _compose(self, *args: str, timeout: float = 120):  # type: ignore[no-untyped-def]
        assert self.base is not None
        return run(["docker", "compose", "-f", str(COMPOSE), "-p", self.project, *args], timeout=timeout,
                   env={"PORTAL_TEST_KEYS": str(self.base / "keys")})

    def start(self) -> TestServer:
        reason = unavailable()
        if reason:
            raise TestServerUnavailable(reason)
        self.base = Path(tempfile.mkdtemp(prefix="pt-d-"))  # short: control sockets live under it
        (self.base / "keys").mkdir()
        for role in ROLES:
            laptop = self.base / "laptop" / role
            (laptop / ".ssh").mkdir(mode=0o700, parents=True)
            (self.base / "r" / role).mkdir(mode=0o700, parents=True)
            key = laptop / ".ssh" / "id_ed25519"
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30)
            shutil.copy(key.with_suffix(".pub"), self.base / "keys" / f"{role}.pub")
        self.up = True
        res = self._compose("up", "--detach", "--build", "--wait", timeout=3600)
        if not res.ok:
            raise TestServerError(f"docker compose up failed: {res.tail(5)}")
        ports = {svc: self._compose("port", svc, "22").stdout.strip() for svc in ("matagorda", "login")}
        users = {}
        for role in ROLES:
            laptop = self.base / "laptop" / role
            config = laptop / ".ssh" / "config"
            config.write_text(self._ssh_config(role, laptop, ports))
            users[role] = TestUser(role=role, name=role, uid=UIDS[role], home=Path("/home") / role,
                                   key=laptop / ".ssh" / "id_ed25519", ssh_config=config, laptop=laptop,
                                   runtime=self.base / "r" / role)
        retry_until(lambda: users["alice"].ssh("matagorda", "true").ok, 60, 0.5, what="sshd in the container")
        return TestServer(backend="docker", address=ports["matagorda"], login_address=ports["login"],
                          via_login_address="matagorda", envs=dict(ENVS), users=users, run_id=self.project)

    @staticmethod
    def _ssh_config(role: str, laptop: Path, ports: dict[str, str]) -> str:
        (mh, _, mp), (lh, _, lp) = (ports["matagorda"].rpartition(":"), ports["login"].rpartition(":"))
        return f"""\
Host matagorda
    HostName {mh}
    Port {mp}
Host login
    HostName {lh}
    Port {lp}
Host matagorda-via-login
    HostName matagorda
    ProxyJump login
Host *
    User {role}
    IdentityFile {laptop}/.ssh/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {laptop}/.ssh/known_hosts
    StrictHostKeyChecking accept-new
    BatchMode yes
"""

    def close(self) -> None:
        if self.base is not None:
            close_masters(self.base)
        if self.up:
            self._compose("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=300)
            self.up = False
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

"""A small end-to-end subset against the docker test server (docker/compose.yaml): check, up, down.

Runs with `pytest --portal-server docker` (then the whole e2e suite uses the container too) or, in any run,
starts its own compose project; skips with the reason where no Docker engine answers.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from portal_tasks.runner import Result, run
from portal_tasks.testing import docker
from portal_tasks.testing.plugin import portal_env
from portal_tasks.testing.server import TestServer, TestServerUnavailable, TestUser

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def docker_server(request: pytest.FixtureRequest) -> Iterator[TestServer]:
    """The docker test server: the session's own with --portal-server docker, else one for this module."""
    if request.config.getoption("--portal-server") == "docker":
        yield request.getfixturevalue("portal_server")
        return
    reason = docker.unavailable()
    if reason:
        pytest.skip(f"docker test server unavailable: {reason}")
    backend = docker.DockerServer()
    try:
        try:
            server = backend.start()
        except TestServerUnavailable as exc:
            pytest.skip(f"docker test server unavailable: {exc}")
        yield server
    finally:
        backend.close()


@pytest.fixture
def portal(docker_server: TestServer, portal_clean_env: Path) -> Callable[..., Result]:
    """portal(role, *args): the portal CLI as that user, from their laptop, against the container."""

    def portal_(role: str, *args: str, timeout: float = 240) -> Result:
        user: TestUser = docker_server.user(role)
        return run([sys.executable, "-m", "portal_tasks", *args], timeout=timeout, env=portal_env(user),
                   cwd=str(user.laptop))

    return portal_


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def test_check_passes_on_the_docker_server(docker_server, portal):
    res = portal("alice", "check", "--host", docker_server.host, "--env", str(docker_server.envs["a"]))
    assert res.rc == 0, res.stdout + res.stderr


def test_up_then_down_on_the_docker_server(docker_server, portal):
    host, env = docker_server.host, str(docker_server.envs["a"])
    res = portal("alice", "up", "--host", host, "--env", env, "--no-attach", "--no-browser")
    try:
        assert res.rc == 0, res.stdout + res.stderr
        urls = list(dict.fromkeys(re.findall(r"http://localhost:\d+/\S+", res.stdout)))
        assert urls and all(answers(u) for u in urls), res.stdout
    finally:
        down = portal("alice", "down", "--host", host)
    assert down.rc == 0, down.stdout + down.stderr
    assert not any(answers(u) for u in urls)


def test_env_without_dask_is_one_line_on_the_docker_server(docker_server, portal):
    res = portal("alice", "up", "--host", docker_server.host, "--env", str(docker_server.envs["bare"]),
                 "--no-attach", "--no-browser")
    lines = [line for line in res.stderr.splitlines() if line.startswith("portal:")]
    assert res.rc == 1 and len(lines) == 1 and str(docker_server.envs["bare"]) in lines[0], res.stderr

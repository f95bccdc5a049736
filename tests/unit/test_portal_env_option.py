"""`--portal-env` of the pytest plugin: a path, or an env name that portal resolves on the ssh:// host."""

from __future__ import annotations

from pathlib import Path

from portal_tasks.testing.plugin import portal_envs
from portal_tasks.testing.sshhost import SshHostServer


def test_paths_names_and_bare_names() -> None:
    assert portal_envs(["a=/opt/envs/a", "bare=~/envs/bare", "b=myenv", "c", " d = base "]) == {
        "a": "/opt/envs/a", "bare": "~/envs/bare", "b": "myenv", "c": "c", "d": "base"}


def test_an_empty_name_is_ignored() -> None:
    assert portal_envs(["=x", ""]) == {}


def test_the_ssh_server_keeps_a_name_a_name_and_a_path_a_path() -> None:
    server = SshHostServer("ssh://matagorda", envs=portal_envs(["a", "b=/opt/envs/b", "c=~/envs/c"]))
    assert server.envs == {"a": "a", "b": Path("/opt/envs/b"), "c": Path("~/envs/c")}
    assert [str(v) for v in server.envs.values()] == ["a", "/opt/envs/b", "~/envs/c"]

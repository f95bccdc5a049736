"""The Fabric transport reads known_hosts files and StrictHostKeyChecking as OpenSSH does (pure parts)."""

from __future__ import annotations

import os

import paramiko
import pytest

from portal_tasks.config import resolve
from portal_tasks.errors import ConfigError
from portal_tasks.link.fabric import LearnKey, accepts_new_keys, connect_error, known_hosts_files


def test_known_hosts_files_follow_the_ssh_config_else_openssh_defaults():
    user, system = known_hosts_files({})
    assert user == [os.path.expanduser("~/.ssh/known_hosts"), os.path.expanduser("~/.ssh/known_hosts2")]
    assert system == ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
    user, system = known_hosts_files({"userknownhostsfile": "~/a /b", "globalknownhostsfile": "none"})
    assert user == [os.path.expanduser("~/a"), "/b"] and system == []


@pytest.mark.parametrize("config, option, learns", [
    ({}, False, False), ({"stricthostkeychecking": "yes"}, False, False), ({"stricthostkeychecking": "ask"}, False, False),
    ({"stricthostkeychecking": "accept-new"}, False, True), ({"stricthostkeychecking": "yes"}, True, True),
])
def test_an_unknown_key_is_learned_only_when_someone_said_so(config, option, learns):
    assert accepts_new_keys(config, option) is learns


def test_a_learned_key_is_appended_to_the_users_known_hosts(tmp_path):
    client = paramiko.SSHClient()
    server_key = paramiko.RSAKey.generate(1024)
    path = tmp_path / "ssh" / "known_hosts"
    LearnKey(str(path)).missing_host_key(client, "[10.0.0.2]:2222", server_key)
    assert path.read_text() == f"[10.0.0.2]:2222 ssh-rsa {server_key.get_base64()}\n"
    assert client.get_host_keys().lookup("[10.0.0.2]:2222") is not None


def test_host_key_failures_are_one_line_saying_what_to_do():
    key, other = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    changed = connect_error("matagorda", paramiko.BadHostKeyException("10.0.0.2", key, other)).line()
    assert "does not match" in changed and "ssh-keygen -R 10.0.0.2" in changed and "\n" not in changed
    unknown = connect_error("matagorda", paramiko.SSHException("Server '10.0.0.2' not found in known_hosts")).line()
    assert "not in known_hosts" in unknown and "fabric_accept_new_host_key" in unknown


def test_the_accept_option_is_a_boolean():
    assert resolve({"fabric_accept_new_host_key": "yes"}, "h").fabric_accept_new_host_key is True
    assert resolve(None, "h").fabric_accept_new_host_key is False
    with pytest.raises(ConfigError, match="fabric_accept_new_host_key 'maybe'"):
        resolve({"fabric_accept_new_host_key": "maybe"}, "h")

"""`--portal-server ssh://[USER@]HOST`: the login is the URL's, else the ssh config's User (ssh -G, no connection)."""

import getpass
from pathlib import Path

from portal_tasks.testing.sshhost import SshHostServer, resolved_options


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text("Host shared\n    HostName 192.0.2.7\n    User carol\n    Port 2222\n"
                      "Host *\n    IdentityFile ~/.ssh/id_one\n    IdentityFile ~/.ssh/id_two\n")
    return config


def test_the_ssh_configs_user_when_the_url_names_none(tmp_path: Path) -> None:
    resolved = SshHostServer("ssh://shared").resolve(_config(tmp_path))
    assert (resolved["user"], resolved["hostname"], resolved["port"]) == ("carol", "192.0.2.7", "2222")


def test_the_urls_user_wins_over_the_config(tmp_path: Path) -> None:
    assert SshHostServer("ssh://dave@shared").resolve(_config(tmp_path))["user"] == "dave"


def test_the_local_name_when_neither_says(tmp_path: Path) -> None:
    assert SshHostServer("ssh://elsewhere").resolve(_config(tmp_path))["user"] == getpass.getuser()


def test_the_first_value_of_a_repeated_keyword_is_the_one_ssh_uses() -> None:
    resolved = resolved_options("user carol\nidentityfile ~/.ssh/id_one\nidentityfile ~/.ssh/id_two\nHostName x\n")
    assert resolved == {"user": "carol", "identityfile": "~/.ssh/id_one", "hostname": "x"}

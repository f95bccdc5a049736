"""Helper payloads travel on stdin, never in an argv; a helper that vanished is installed again."""

from __future__ import annotations

import io
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from portal_tasks.config import resolve
from portal_tasks.link.base import (HELPER_DIR, PRUNE_DAYS, Link, bootstrap_command, bootstrap_program, helper_archive,
                                    helper_command,
                                    helper_missing, helper_path, payload_line)
from portal_tasks.link.local import LocalLink
from portal_tasks.link.openssh import command_argv
from portal_tasks.remote import main as remote_main
from portal_tasks.runner import Result

SECRET = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"


def test_helper_command_carries_the_verb_only():
    line = helper_command("python3", "tls-install")
    assert shlex.split(line) == ["python3", f"~/{helper_path()}", "tls-install"]
    argv = command_argv(resolve(None, "matagorda"), "/c/%C", line)
    assert argv[-1] == line and not any("{" in a for a in argv)


def test_payload_line_is_one_json_line():
    data = payload_line({"files": {"key.pem": SECRET}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"files": {"key.pem": SECRET}}
    assert payload_line(None) == b"{}\n"


class Recording(Link):
    """A link that records what would run on the host and answers like the helper."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(resolve(None, "matagorda"))
        self.calls: list[tuple[str, bytes | str | None]] = []

    def connect(self) -> None: ...
    def command_argv(self, command: str, *, tty: bool = False) -> list[str]: return ["ssh", "matagorda", "--", command]
    def tmux_bin(self) -> str: return "tmux"
    def forward(self, local_port: int, remote: str) -> None: ...
    def cancel_forward(self, local_port: int, remote: str) -> None: ...
    def close(self) -> None: ...

    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append((command, input))
        return Result(("ssh", command), 0, json.dumps({"ok": True, "result": {"installed": True}}) + "\n", "")


def test_a_secret_payload_goes_on_stdin_not_in_the_argv():
    link = Recording()
    link.helper("tls-install", {"files": {"key.pem": SECRET}})
    [(command, data)] = link.calls
    argv = link.command_argv(command)
    assert not any("PRIVATE KEY" in part or "MIGHAg" in part for part in argv), argv
    assert isinstance(data, bytes)  # the first call here also carries the helper archive, the payload last
    archive = helper_archive()[1]
    assert data.startswith(archive) and json.loads(data[len(archive):])["files"]["key.pem"] == SECRET


def run_main(argv: list[str], stdin: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = 0
    try:
        remote_main.main(argv, stdin=io.StringIO(stdin))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_helper_reads_its_payload_from_the_first_line_of_stdin(capsys):
    code, reply = run_main(["ping"], '{"x": 1}\nrest that the verb may read\n', capsys)
    assert code == 0 and reply == {"ok": True, "result": "pong"}
    code, reply = run_main(["ping"], "", capsys)  # no input at all: an empty payload
    assert code == 0 and reply["result"] == "pong"


def test_helper_refuses_a_payload_in_its_arguments(capsys):
    code, reply = run_main(["ping", '{"x": 1}'], "", capsys)
    assert code == 1 and not reply["ok"] and "stdin" in reply["error"]


@pytest.mark.parametrize("line", ["not json\n", "[1, 2]\n", '"a string"\n'])
def test_helper_says_what_is_wrong_with_a_bad_payload(capsys, line):
    code, reply = run_main(["ping"], line, capsys)
    assert code == 1 and "JSON object on the first line of stdin" in reply["error"]
    assert "a string" not in reply["error"]  # what was sent is never echoed


def test_helper_missing_is_pythons_cannot_open():
    err = "python3: can't open file '/home/a/.portal/bin/remote-0123456789ab.pyz': [Errno 2] No such file or directory"
    assert helper_missing(2, err)
    assert not helper_missing(1, err) and not helper_missing(2, "Traceback ... KeyError")


@pytest.fixture
def link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalLink:
    monkeypatch.setenv("HOME", str(tmp_path))
    return LocalLink(resolve(None, "localhost"))


def test_a_helper_removed_between_calls_is_installed_again(link, tmp_path):
    assert link.helper("ping") == "pong"
    installed = tmp_path / helper_path()
    installed.unlink()
    assert link.helper("ping") == "pong"  # reinstalled, call made once more
    assert installed.is_file()


def test_a_lock_whose_helper_vanished_installs_it_again(link, tmp_path):
    assert link.helper("ping") == "pong"
    (tmp_path / helper_path()).unlink()
    with link.lock("t"):
        assert (tmp_path / helper_path()).is_file()
        assert [p.name for p in (tmp_path / ".portal" / "hosts").glob("*/locks/t")] == ["t"]  # this server's lock


def test_install_keeps_other_versions_and_prunes_only_long_unused_ones(link, tmp_path):
    bin_dir = tmp_path / HELPER_DIR
    bin_dir.mkdir(parents=True)
    recent = bin_dir / "remote-aaaaaaaaaaaa.pyz"  # another laptop's portal, used last week
    old = bin_dir / "remote-bbbbbbbbbbbb.pyz"  # nobody ran it for longer than PRUNE_DAYS
    partial = bin_dir / "remote-cccccccccccc.pyz.4242.tmp"  # an upload that died hours ago
    for path, days in ((recent, 7), (old, PRUNE_DAYS + 2), (partial, 1)):
        path.write_bytes(b"x")
        then = time.time() - days * 86400
        os.utime(path, (then, then))
    assert link.helper("ping") == "pong"
    assert recent.exists() and not old.exists() and not partial.exists()
    assert (tmp_path / helper_path()).is_file()


def test_the_bootstrap_writes_atomically_and_never_removes_its_own():
    line = bootstrap_command("python3", "ping", 123)
    assert line.endswith(f" ~/{helper_path()} 123 ping") and line.startswith("python3 -c 'import base64,zlib;")
    script = bootstrap_program()
    assert 'tmp = "%s.%d.tmp" % (path, os.getpid())' in script and "os.rename(tmp, path)" in script
    assert "name != os.path.basename(path)" in script and f"age > {PRUNE_DAYS} * 86400" in script


def test_a_run_marks_its_helper_used(tmp_path):
    archive = tmp_path / "remote-x.pyz"
    archive.write_bytes(b"x")
    then = time.time() - 5 * 86400
    os.utime(archive, (then, then))
    unused_since = archive.stat().st_mtime
    remote_main.mark_used(str(archive))
    assert archive.stat().st_mtime > unused_since + 4 * 86400  # now, not five days ago (no bound on how soon)

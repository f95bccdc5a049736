"""The command lines portal hands to sshd read the same in every login shell: checked as data, then run for
real through sh, bash, zsh, fish, tcsh and csh (as sshd runs them: ``SHELL -c LINE``)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portal_tasks import remote_shell
from portal_tasks.errors import UsageError
from portal_tasks.link.base import (bootstrap_command, helper_archive, helper_command, payload_line,
                                    python_not_found)
from portal_tasks.remote.tmux import attach

SHELLS = ("sh", "bash", "zsh", "fish", "tcsh", "csh")
#: What each shell does wrong with a naive line: the reason it is in the list.
WHY = {"tcsh": "no newline inside quotes, '!' expands inside single quotes", "csh": "as tcsh",
       "fish": "'\\' escapes inside single quotes", "zsh": "a word starting with '=' is a command's path"}

PRINT_ARGV = "import sys, json\nprint(json.dumps(sys.argv[1:]))\n"


def shell_params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.skipif(shutil.which(name) is None,
                                                        reason=f"{name} is not installed on this machine"))
            for name in SHELLS]


def in_shell(shell: str, line: str, home: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``line`` as sshd runs it: ``SHELL -c LINE``, with a fresh home (no rc files of this machine)."""
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([shell, "-c", line], input=stdin, capture_output=True, timeout=60, env=env, cwd=home)


PLAIN = ["python3", "ping", "snapshot-up", "123", "/usr/bin/python3.11", "a,b", "user@host:22", "x+y", "-t"]
QUOTED = {
    "=portal": "'=portal'",  # zsh: =portal is the path of a command named portal
    "~/x": "'~/x'",  # a value, not the user's home
    "a b": "'a b'",
    "$(touch /tmp/M)": "'$(touch /tmp/M)'",
    "`id`": "'`id`'",
    "a;b|c&d": "'a;b|c&d'",
    "*": "'*'",
    '"': "'\"'",
    "%self": "'%self'",  # fish 2 expanded it
    "{a,b}": "'{a,b}'",
    "": "''",
    "é": "'é'",
}
REFUSED = ["it's", "a\\b", "hi!", "a\nb", "a\tb", "\x00", "\x1b[0m"]


@pytest.mark.parametrize("arg", PLAIN)
def test_a_plain_word_goes_as_it_is(arg):
    assert remote_shell.word(arg) == arg


@pytest.mark.parametrize("arg", list(QUOTED))
def test_anything_else_is_single_quoted(arg):
    assert remote_shell.word(arg) == QUOTED[arg]


@pytest.mark.parametrize("arg", REFUSED)
def test_a_value_no_shell_reads_alike_is_refused_in_one_line(arg):
    with pytest.raises(UsageError) as info:
        remote_shell.line(["tmux", "attach", "-t", arg])
    assert repr(arg) in info.value.line() and "\n" not in info.value.line()


def _random_args(seed: int, count: int) -> list[str]:
    """Values from an alphabet with every printable ASCII character (and some others), quotable or not."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(32, 127)] + ["é", "∂", "\n", "\t", "\x7f"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def test_property_every_value_is_one_word_or_refused():
    """As data: a value is refused exactly when it holds what some shell reads differently; a word made of
    it is one line, single-quoted or plain, with nothing a shell reads inside single quotes."""
    for arg in _random_args(1, 3000):
        bad = any(ch in "'\\!" or not ch.isprintable() for ch in arg)
        if bad:
            with pytest.raises(UsageError):
                remote_shell.word(arg)
            continue
        made = remote_shell.word(arg)
        assert "\n" not in made
        assert made == arg and remote_shell.PLAIN.fullmatch(arg) or made == f"'{arg}'"


@pytest.mark.parametrize("shell", shell_params())
def test_property_each_shell_reads_every_word_as_its_value(shell, tmp_path):
    """For real, through the shell: random values (every printable ASCII character, $, `, ;, |, &, *, quotes,
    spaces...) arrive as the same argv, and none of them runs anything."""
    args = [a for a in _random_args(2, 400) if remote_shell.quotable(a)]
    args += list(QUOTED) + PLAIN + [f"$(touch {tmp_path}/MARK)", f"`touch {tmp_path}/MARK`", f";touch {tmp_path}/MARK"]
    for start in range(0, len(args), 100):
        chunk = args[start:start + 100]
        line = remote_shell.line([sys.executable, "-c", PRINT_ARGV.replace("\n", ";").strip(";"), *chunk])
        out = in_shell(shell, line, tmp_path)
        assert out.returncode == 0, (shell, WHY.get(shell), out.stderr.decode())
        assert json.loads(out.stdout) == chunk
    assert not (tmp_path / "MARK").exists()


@pytest.mark.parametrize("shell", shell_params())
def test_a_program_with_newlines_and_quotes_runs_in_each_shell(shell, tmp_path):
    program = "import sys, json\nnote = 'it\\'s \"quoted\" \\\\ and ! too'\nprint(json.dumps([note] + sys.argv[1:]))\n"
    line = remote_shell.python_program(sys.executable, program, ["a b", "=x"], home_args=[".portal/f"])
    assert "\n" not in line and "!" not in line and "\\" not in line
    out = in_shell(shell, line, tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout) == ["it's \"quoted\" \\ and ! too", f"{tmp_path}/.portal/f", "a b", "=x"]


@pytest.mark.parametrize("shell", shell_params())
def test_the_helper_installs_and_answers_through_each_login_shell(shell, tmp_path):
    """The bootstrap (first call: the archive on stdin ahead of the payload), then the plain helper call."""
    _, archive = helper_archive()
    first = in_shell(shell, bootstrap_command(sys.executable, "ping", len(archive)), tmp_path,
                     archive + payload_line({}))
    assert first.returncode == 0 and json.loads(first.stdout) == {"ok": True, "result": "pong"}, first.stderr
    again = in_shell(shell, helper_command(sys.executable, "probe"), tmp_path, payload_line({}))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["result"]["home"] == str(tmp_path)


@pytest.mark.parametrize("python", ["python-not-here", "/opt/no/such/python3"])
@pytest.mark.parametrize("shell", shell_params())
def test_a_missing_python_is_told_apart_in_each_shells_own_words(shell, python, tmp_path):
    """sh, bash, zsh and fish exit 127, tcsh and csh 1, each saying it differently: all read as "no such python"."""
    out = in_shell(shell, helper_command(python, "ping"), tmp_path, payload_line({}))
    assert python_not_found(python, out.returncode, out.stderr.decode()), (out.returncode, out.stderr)
    other = in_shell(shell, helper_command(sys.executable, "no-such-verb"), tmp_path, payload_line({}))
    assert not python_not_found(sys.executable, other.returncode, other.stderr.decode())


@pytest.mark.parametrize("shell", shell_params())
def test_the_attach_line_names_the_session_exactly_in_each_shell(shell, tmp_path):
    """tmux's argv (``-t =portal``: exactly that session), printed by a program instead of run by tmux."""
    line = remote_shell.line([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                              *attach("portal")])
    out = in_shell(shell, line, tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout) == attach("portal")


def test_the_attach_hint_pastes_into_bash(tmp_path):
    """What `up` prints for attaching by hand is a bash line whose remote part is one shell-neutral line."""
    remote = remote_shell.line(attach("portal"))
    pasted = remote_shell.pasteable(remote)
    assert pasted == "\"tmux attach -t '=portal'\""
    out = subprocess.run(["bash", "-c", f"printf %s {pasted}"], capture_output=True, text=True, timeout=30)
    assert out.stdout == remote
    ugly = remote_shell.pasteable("echo '$HOME'")
    out = subprocess.run(["bash", "-c", f"printf %s {ugly}"], capture_output=True, text=True, timeout=30)
    assert out.stdout == "echo '$HOME'"


def test_home_file_is_a_plain_relative_path():
    assert remote_shell.home_file(".portal/bin/remote-abc.pyz") == "~/.portal/bin/remote-abc.pyz"
    for bad in ("/etc/passwd", "a b", "$(x)"):
        with pytest.raises(ValueError):
            remote_shell.home_file(bad)

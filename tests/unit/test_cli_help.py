"""`portal TASK --help` reads like it was meant: typed numbers, chosen short flags only, no empty flag, and a reader
that leaves the pipe early (`portal up --help | head -1`) is no error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.exceptions import ParseError

from portal_tasks.main import program
from portal_tasks.tasks import ns

#: The short flags portal gives (docs/DECISIONS.md), each meaning one long option in every task that has it.
CHOSEN = {"-H": "--host", "-F": "--ssh-config", "-e": "--env", "-n": "--explain", "-s": "--session", "-a": "--all",
          "-p": "--port"}
#: Options that take a whole number: invoke prints them as INT.
WHOLE_NUMBERS = {"--workers", "--threads", "--jobs", "--job-cores", "--port"}
#: One flag as invoke's help writes it: `-x`, `-x VALUE`, `--name`, `--[no-]name`, `--name=VALUE`.
FLAG = re.compile(r"(?P<short>-[A-Za-z])( [A-Z]+)?|(?P<long>--(\[no-\])?[a-z][a-z0-9]*(-[a-z0-9]+)*)(=(?P<kind>[A-Z]+))?")


def run_portal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The CLI as an object: `portal ARGV`, its stdout; a non-zero exit fails the test."""
    try:
        program.run(["portal", *argv], exit=True)
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr()
    return capsys.readouterr().out


def listed_tasks(capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = run_portal(capsys, "--list")
    return [m[1] for m in re.finditer(r"^  (\S+)", out, re.M)]  # continued docstrings are indented deeper


def options(help_text: str) -> dict[str, list[str]]:
    """The Options section of `portal TASK --help`: each option's flags as written, keyed by its long name."""
    section = help_text.split("\nOptions:\n", 1)[1]
    found: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("  -"):
            continue
        spec, *described = re.split(r" {2,}", line.strip(), maxsplit=1)
        assert described, f"{line.strip()} has no help text"
        flags = spec.split(", ")
        longs = [f for f in flags if f.startswith("--")]
        assert len(longs) == 1, line
        found[longs[0]] = flags
    return found


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no portal.yaml of the checkout's


def test_the_list_names_every_task_of_the_collection(capsys):
    assert sorted(listed_tasks(capsys)) == sorted(ns.task_names)


def test_every_tasks_help_has_typed_numbers_chosen_short_flags_and_no_empty_flag(capsys):
    seen_short: set[str] = set()
    seen_int: set[str] = set()
    for task in listed_tasks(capsys):
        text = run_portal(capsys, task, "--help")
        assert text.startswith(f"Usage: portal [--core-opts] {task} "), text
        found = options(text)
        assert found, task
        for flags in found.values():
            parsed = [FLAG.fullmatch(f) for f in flags]
            assert all(parsed), (task, flags)  # catches `--=STRING`, invoke's flag for a dash it took as a letter
            long_name = next(m["long"].replace("[no-]", "") for m in parsed if m and m["long"])
            kinds = {m["kind"] for m in parsed if m and m["kind"]}
            for m in parsed:
                if m and m["short"]:
                    assert CHOSEN.get(m["short"]) == long_name, (task, flags)
                    seen_short.add(m["short"])
            if long_name in WHOLE_NUMBERS:
                assert kinds == {"INT"}, (task, flags)
                seen_int.add(long_name)
            else:
                assert "INT" not in kinds, (task, flags)
    assert seen_short == set(CHOSEN), "a chosen short flag is on no task"
    assert seen_int == WHOLE_NUMBERS


def test_up_help_lists_workers_jobs_threads_as_int_and_host_as_dash_big_h(capsys):
    found = options(run_portal(capsys, "up", "--help"))
    assert found["--workers=INT"] == ["--workers=INT"] and "--jobs=INT" in found and "--job-cores=INT" in found
    assert found["--host=STRING"] == ["-H STRING", "--host=STRING"]
    assert found["--watch"] == ["--watch"] and found["--account=STRING"] == ["--account=STRING"]


def test_dash_h_after_a_task_is_its_help(capsys):
    assert run_portal(capsys, "up", "-h") == run_portal(capsys, "up", "--help")


def test_a_whole_number_option_hands_the_task_an_int():
    workers = next(a for a in ns["up"].get_arguments() if a.name == "workers")
    assert workers.kind is int and workers.default is None  # None: not given, the config's value counts
    workers.value = "3"
    assert workers.value == 3
    with pytest.raises(ParseError, match=r"^portal: --workers 'three' is not a whole number\. "):
        workers.value = "three"


def portal(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portal_tasks", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=60, env={**os.environ, "PORTAL_SSH_CONFIG": os.devnull})


@pytest.mark.parametrize("args, needle", [
    (["up", "--workers", "many"], "--workers 'many' is not a whole number"),
    (["cluster", "--threads=1.5"], "--threads '1.5' is not a whole number"),
    (["scale", "--jobs", "two"], "--jobs 'two' is not a whole number"),
    (["page", "--port", "http"], "--port 'http' is not a whole number"),
])
def test_a_number_that_is_no_whole_number_is_one_line(args, needle):
    res = portal(*args, "-H", "no-such-host.invalid")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith(f"portal: {needle}"), res.stderr


@pytest.mark.parametrize("args", [["up", "--help"], ["--list"], ["status", "--help"], ["--version"]])
def test_a_reader_gone_before_the_first_line_is_no_error(args):
    read, write = os.pipe()
    os.close(read)  # the reader left before portal wrote: every write meets EPIPE, as in `... | head -0`
    try:
        res = portal(*args, stdout=write)
    finally:
        os.close(write)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("command", ["portal up --help | head -1", "portal --list | head -1"])
def test_head_of_a_pipe_is_no_error(command, tmp_path):
    shim = tmp_path / "portal"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m portal_tasks "$@"\n')
    shim.chmod(0o755)
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert res.returncode == 0 and "Traceback" not in res.stderr and res.stderr == "", res.stderr
    assert len(res.stdout.splitlines()) == 1

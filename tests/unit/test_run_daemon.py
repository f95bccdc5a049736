"""runner.run_daemon: the exit code and stderr of a command that forks a daemon, bounded by its timeout."""

from __future__ import annotations

import os
import signal
import time

from portal_tasks.runner import run_daemon


def test_exit_code_and_stderr_come_back() -> None:
    res = run_daemon(["sh", "-c", "echo 'no route to host' >&2; exit 255"], timeout=30)
    assert res.rc == 255 and res.stderr.strip() == "no route to host"


def test_a_command_that_outlives_its_timeout_is_ended_with_124() -> None:
    res = run_daemon(["sleep", "30"], timeout=0.2)
    assert res.rc == 124


def test_the_daemon_it_forked_keeps_running_and_its_stderr_does_not_hold_the_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "pid"
    # as `ssh -f`: the child stays in the background with our stderr file open, the parent exits 0
    res = run_daemon(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; echo started >&2"], timeout=10)
    pid = int(pid_file.read_text())
    try:
        assert res.rc == 0 and "started" in res.stderr
        os.kill(pid, 0)  # still there
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)


def test_a_missing_program_is_127_with_one_line() -> None:
    res = run_daemon(["portal-no-such-program"], timeout=5)
    assert res.rc == 127 and "command not found" in res.stderr

"""runner.run's new_session: the command leads a session of its own (as one typed in a terminal of its own),
which the benchmarks give each user's laptop commands (bench/context.py)."""

from __future__ import annotations

import os
import sys

from portal_tasks.runner import run

SHOW = "import os; print(os.getpid(), os.getsid(0))"


def test_a_new_session_is_led_by_the_command() -> None:
    res = run([sys.executable, "-c", SHOW], new_session=True, timeout=60)
    pid, sid = map(int, res.stdout.split())
    assert res.ok and sid == pid and sid != os.getsid(0)


def test_by_default_the_command_stays_in_the_callers_session() -> None:
    res = run([sys.executable, "-c", SHOW], timeout=60)
    pid, sid = map(int, res.stdout.split())
    assert res.ok and sid == os.getsid(0) and sid != pid


"""progress: plain step lines and table off a terminal (rich never imported there), rich on one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from portal_tasks.progress import plain_table


def test_plain_table_aligns_columns_and_keeps_urls_whole() -> None:
    url = "http://localhost:20101/status?" + "x" * 150
    text = plain_table("portal on matagorda", ("service", "on matagorda", "on this laptop"),
                       [("dashboard-a", "127.0.0.1:20101", url), ("jupyter-a-long-name", "127.0.0.1:20102", "http://l/")])
    lines = text.splitlines()
    assert lines[0] == "portal on matagorda"
    assert lines[1].split() == ["service", "on", "matagorda", "on", "this", "laptop"]
    assert lines[2].endswith(url)  # never cut
    # the second and third columns start where the header's do
    for line in lines[2:]:
        assert line.index("127.0.0.1") == lines[1].index("on matagorda")
    assert lines[3].index("http://l/") == lines[1].index("on this laptop")


def test_off_a_terminal_steps_and_table_are_plain_and_rich_is_never_imported() -> None:
    code = textwrap.dedent("""
        import sys
        from portal_tasks import progress
        with progress.step("env", "[a] b"):
            pass
        try:
            with progress.step("cluster"):
                raise KeyError("x")
        except KeyError:
            pass
        progress.table([("dashboard", "127.0.0.1:1", "http://localhost:1/status")], "h")
        print("rich" if any(m == "rich" or m.startswith("rich.") for m in sys.modules) else "no rich")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    steps = res.stderr.splitlines()
    assert steps[0].startswith("✓ env [a] b  (") and steps[0].endswith("s)")  # brackets kept as typed
    assert steps[1].startswith("✗ cluster  (")
    out = res.stdout.splitlines()
    assert out[0] == "portal on h" and out[2].split() == ["dashboard", "127.0.0.1:1", "http://localhost:1/status"]
    assert out[-1] == "no rich"


def test_on_a_terminal_rich_draws_them_and_keeps_brackets_as_typed() -> None:
    import os
    import pty
    import re

    code = textwrap.dedent("""
        from portal_tasks import progress
        with progress.step("env", "[a] b"):
            pass
        progress.table([("dashboard", "127.0.0.1:1", "http://localhost:1/status")], "h")
    """)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:  # until the child closes the terminal (it exits)
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode(errors="replace"))
    assert "✓ env [a] b  (" in text
    assert "┃ service" in text and "http://localhost:1/status" in text  # rich's table

"""(10) Driving tmux for a cold `up`: the session and its four windows (env, cluster, IPython, JupyterLab,
with variables, portal's marker and the typed lines), as the host-side helper does it (the builders' argv,
one ``tmux`` each, run with subprocess) against libtmux doing the same in the same Python.

Both run on this machine against a tmux server of their own (``TMUX_TMPDIR`` in a temporary directory,
killed after each round), through a ``tmux`` on the PATH that counts its starts; nothing reaches the
user's own tmux. Measures the choice of how portal drives tmux on the host (docs/DECISIONS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench.stats import Row, median

#: Run in a child python, the counting tmux first on its PATH: one round of the work, then its seconds.
HELPER = textwrap.dedent("""
    import json, sys, time
    from portal_tasks.remote import tmux as cmds
    from portal_tasks.remote import up
    session, windows = sys.argv[1], json.loads(sys.argv[2])
    start = time.perf_counter()
    up.ensure_session({"name": session, "has": cmds.has_session(session), "new": cmds.new_session(session)})
    for name, lines, env, keep, mark in windows:
        up.open_window(session, cmds.window_plan(session, name, lines, env, keep, mark))
    print(time.perf_counter() - start)
""")

LIBTMUX = textwrap.dedent("""
    import json, sys, time
    start = time.perf_counter()
    import libtmux
    session_name, windows = sys.argv[1], json.loads(sys.argv[2])
    server = libtmux.Server()
    found = next((s for s in server.sessions if s.session_name == session_name), None)
    session = found or server.new_session(session_name=session_name, window_name="shell", attach=False)
    for name, lines, env, keep, mark in windows:
        old = next((w for w in session.windows if w.window_name == name), None)
        if old is not None:
            old.kill()
        window = session.new_window(window_name=name, attach=False, environment=env or {})
        if mark is not None:
            window.cmd("set-option", "-w", "@portal", mark)
        for line in lines:
            window.active_pane.send_keys(line, enter=True)
    print(time.perf_counter() - start)
""")

#: The windows of a cold `up --jupyter` (lines as short stand-ins: tmux's work does not depend on them).
WINDOWS = [
    ["env-a", ["true"], None, "marker", "env:a"],
    ["cluster-a", ["true", "true"], None, "never", None],
    ["ipython-a", ["true"], {"DASK_SCHEDULER_ADDRESS": "tls://127.0.0.1:20000", "DASK_A": "1", "DASK_B": "2"},
     "busy", "ipython:a"],
    ["jupyter-a", ["true"], {"DASK_SCHEDULER_ADDRESS": "tls://127.0.0.1:20000", "JUPYTER_TOKEN_FILE": "/x"},
     "never", "jupyter:a"],
]


def _round(program: str, root: Path) -> tuple[float, int]:
    """(seconds, tmux starts) of one round against a fresh tmux server of its own."""
    count = root / "count"
    count.write_text("")
    env = dict(os.environ, TMUX_TMPDIR=str(root / "sock"), PATH=f"{root / 'bin'}:{os.environ['PATH']}",
               PORTAL_TMUX_COUNT=str(count))
    env.pop("TMUX", None)
    try:
        out = subprocess.run([sys.executable, "-c", program, "bench", json.dumps(WINDOWS)], env=env,
                             capture_output=True, text=True, timeout=60, check=True)
        return float(out.stdout.strip().splitlines()[-1]), len(count.read_text().splitlines())
    finally:
        subprocess.run(["tmux", "kill-server"], env=dict(env, PATH=os.environ["PATH"]), capture_output=True, timeout=15)


def run(quick: bool = False) -> list[Row]:
    rounds = 1 if quick else 15
    with tempfile.TemporaryDirectory(prefix="portal-bench-tmux-") as tmp:
        root = Path(tmp)
        (root / "sock").mkdir(mode=0o700)
        (root / "bin").mkdir()
        real = subprocess.run(["sh", "-c", "command -v tmux"], capture_output=True, text=True).stdout.strip()
        wrapper = root / "bin" / "tmux"
        wrapper.write_text(f'#!/bin/sh\necho x >> "$PORTAL_TMUX_COUNT"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
        helper, library = [], []
        for _ in range(rounds):  # alternated, so both see the same machine
            helper.append(_round(HELPER, root))
            library.append(_round(LIBTMUX, root))
    starts_helper, starts_library = max(n for _, n in helper), max(n for _, n in library)
    return [
        Row("10", "tmux work of a cold `up --jupyter` (session + 4 windows), the helper's argv", median([t for t, _ in helper]) * 1000,
            "ms", "libtmux doing the same", median([t for t, _ in library]) * 1000, target=1.0,
            note=f"tmux processes: {starts_helper} (helper) against {starts_library} (libtmux); "
                 f"median of {rounds}, each against a fresh tmux server"),
    ]

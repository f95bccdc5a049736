"""Verbs about the host itself: ping, probe (who am I, tools, listeners), and a held lock."""

import os
import platform
import pwd
import shutil
import subprocess
import sys

from .common import listeners, locked


def ping(_payload):
    return "pong"


def tool_version(argv):
    path = shutil.which(argv[0])
    if not path:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or "unknown"


def meminfo_bytes():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def probe(payload):
    """Who the user is here, which tools exist, and (on request) who listens where."""
    uid = os.getuid()
    result = {
        "uid": uid,
        "user": pwd.getpwuid(uid).pw_name,
        "home": os.path.expanduser("~"),
        "hostname": platform.node(),
        "python": sys.version.split()[0],
        "python_path": sys.executable,  # the Python running this helper (check names it)
        "tmux": tool_version(["tmux", "-V"]),
        "managers": {name: shutil.which(name) for name in ("micromamba", "mamba", "conda")},
        "cpus": os.cpu_count(),
        "memory": meminfo_bytes(),
    }
    if payload.get("listeners"):
        result["listeners"] = listeners()
    return result


def lock(payload):
    """Take this server's lock NAME, say 'locked', hold it until stdin closes (the laptop went away)."""
    with locked(payload.get("name", "lock"), float(payload.get("timeout", 120))):
        sys.stdout.write("locked\n")
        sys.stdout.flush()
        sys.stdin.read()
    return "released"


VERBS = {"ping": ping, "probe": probe, "lock": lock}

"""Dispatch: ``python3 remote.pyz VERB`` reads one JSON line (the payload) from stdin and prints
``{"ok": true, "result": ...}`` or an error.

The payload never travels in argv: /proc/PID/cmdline is readable by every user of the host, and
payloads carry the user's TLS key. After that first line, stdin stays the verb's own (``lock``
holds its lock until stdin closes).

Only the verb's own module is imported: the zipapp compiles what it imports on every call.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import IO, Any, Callable, Dict, NoReturn

from .common import Failure

#: verb -> module of this package that defines it (in its VERBS)
VERB_MODULES = {
    "ping": "system", "probe": "system", "lock": "system",
    "env-check": "envcheck",
    "ports-report": "ports",
    "tls-status": "tls", "tls-install": "tls",
    "cluster-list": "cluster",
    "jupyter-list": "jupyter",
    "snapshot": "snapshot", "up": "up", "snapshot-up": "up", "down": "down",
    "share-report": "share",
    "nodes-prepare": "nodes", "nodes-wait": "nodes", "nodes-stop": "nodes", "tls-export": "nodes",
    "nodes-tls": "nodes",
    "interface-address": "interfaces", "route-source": "interfaces",
    "jobs-check": "jobs", "jobs-script": "jobs", "jobs-submit": "jobs", "jobs-wait": "jobs",
}

#: A helper archive marks itself used at most this often (its mtime); installs prune only old ones.
MARK_USED_SECONDS = 3600


def verb(name: str) -> Callable[[dict[str, Any]], Any] | None:
    """The function of a verb, or None."""
    module = VERB_MODULES.get(name)
    if module is None:
        return None
    verbs: Dict[str, Callable[[dict[str, Any]], Any]] = getattr(importlib.import_module("." + module, __package__),
                                                                "VERBS", {})
    return verbs.get(name)


def read_payload(stream: IO[str]) -> Any:
    """The payload: the first line of ``stream`` as JSON ({} for an empty line or no input)."""
    line = stream.readline()
    if not line.strip():
        return {}
    return json.loads(line)


def mark_used(path: str) -> None:
    """Touch this helper archive (at most hourly): a portal of another version installing its own
    helper prunes only archives nobody used for a long time, never one that runs."""
    try:
        if time.time() - os.stat(path).st_mtime > MARK_USED_SECONDS:
            os.utime(path)
    except OSError:
        pass


def fail(message: str, kind: str = "RemoteCommandError") -> NoReturn:
    print(json.dumps({"ok": False, "kind": kind, "error": message}))
    sys.exit(1)


def main(argv: list[str] | None = None, stdin: IO[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if argv is None and sys.argv[0].endswith(".pyz"):
        mark_used(sys.argv[0])
    fn = verb(args[0]) if args else None
    if fn is None:
        fail("portal helper: unknown verb %r (known: %s)" % (args[:1], ", ".join(sorted(VERB_MODULES))))
    if len(args) > 1:
        fail("portal helper: the payload goes on stdin (one JSON line), never in the arguments.")
    try:
        payload = read_payload(sys.stdin if stdin is None else stdin)
        problem = "" if isinstance(payload, dict) else "a JSON " + type(payload).__name__
    except ValueError as exc:  # json.JSONDecodeError is one; its message names a position, not the text
        problem = str(exc)
    if problem:
        fail(f"portal helper: {args[0]} wants a JSON object on the first line of stdin (got: {problem}).")
    try:
        result = fn(payload)
    except Failure as exc:
        print(json.dumps({"ok": False, "kind": exc.kind, "error": exc.message, "hint": exc.hint}))
        sys.exit(1)
    print(json.dumps({"ok": True, "result": result}))

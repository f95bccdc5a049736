"""Dispatch: ``python3 remote.pyz VERB 'JSON'`` prints ``{"ok": true, "result": ...}`` or an error.

Only the verb's own module is imported: the zipapp compiles what it imports on every call.
"""

import importlib
import json
import sys

from .common import Failure

#: verb -> module of this package that defines it (in its VERBS)
VERB_MODULES = {
    "ping": "system", "probe": "system", "lock": "system",
    "env-check": "envcheck",
    "ports-report": "ports", "ports-assign": "ports",
    "tls-status": "cluster", "tls-install": "cluster", "cluster-prepare": "cluster", "cluster-wait": "cluster",
    "cluster-list": "cluster", "cluster-stop": "cluster",
    "jupyter-status": "jupyter", "jupyter-prepare": "jupyter", "jupyter-wait": "jupyter",
    "jupyter-list": "jupyter", "jupyter-stop": "jupyter",
    "snapshot": "snapshot",
}


def verb(name):
    """The function of a verb, or None."""
    module = VERB_MODULES.get(name)
    if module is None:
        return None
    return getattr(importlib.import_module("." + module, __package__), "VERBS", {}).get(name)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    fn = verb(args[0]) if args else None
    if fn is None:
        print(json.dumps({"ok": False, "kind": "RemoteCommandError",
                          "error": "portal helper: unknown verb %r (known: %s)" % (args[:1], ", ".join(sorted(VERB_MODULES)))}))
        sys.exit(1)
    payload = json.loads(args[1]) if len(args) > 1 else None
    try:
        result = fn(payload or {})
    except Failure as exc:
        print(json.dumps({"ok": False, "kind": exc.kind, "error": exc.message, "hint": exc.hint}))
        sys.exit(1)
    print(json.dumps({"ok": True, "result": result}))

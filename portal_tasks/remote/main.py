"""Dispatch: ``python3 remote.pyz VERB 'JSON'`` prints ``{"ok": true, "result": ...}`` or an error."""

import json
import sys

from . import cluster, envcheck, jupyter, ports, system
from .common import Failure

VERBS = {}
for _module in (system, envcheck, ports, cluster, jupyter):
    VERBS.update(getattr(_module, "VERBS", {}))


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in VERBS:
        print(json.dumps({"ok": False, "kind": "RemoteCommandError",
                          "error": "portal helper: unknown verb %r (known: %s)" % (args[:1], ", ".join(sorted(VERBS)))}))
        sys.exit(1)
    payload = json.loads(args[1]) if len(args) > 1 else None
    try:
        result = VERBS[args[0]](payload or {})
    except Failure as exc:
        print(json.dumps({"ok": False, "kind": exc.kind, "error": exc.message, "hint": exc.hint}))
        sys.exit(1)
    print(json.dumps({"ok": True, "result": result}))

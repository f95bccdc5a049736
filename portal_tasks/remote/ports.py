"""Host-side verbs: ports (filled in by its step)."""

VERBS = {}

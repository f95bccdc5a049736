"""Host-side verbs: envcheck (filled in by its step)."""

VERBS = {}

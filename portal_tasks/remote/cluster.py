"""Host-side verbs: cluster (filled in by its step)."""

VERBS = {}

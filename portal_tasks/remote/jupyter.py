"""Host-side verbs: jupyter (filled in by its step)."""

VERBS = {}

"""`inv --list` in a clone: the portal tasks, as a user's own tasks.py would compose them."""

from portal_tasks import ns  # noqa: F401

"""portal's test hosts as a pytest plugin (`--portal-server`), usable outside pytest too."""

from portal_tasks.testing.server import TestServer, TestUser
from portal_tasks.testing.waiting import retry_until

__all__ = ["TestServer", "TestUser", "retry_until"]

"""The test server's errors (every backend's, and its SLURM's)."""

from __future__ import annotations

from portal_tasks.errors import PortalError


class TestServerError(PortalError):
    """The test server could not be set up or torn down."""

    __test__ = False  # not a pytest test class


class TestServerUnavailable(TestServerError):
    """This backend cannot run here (not root, no Docker engine, ...); tests skip with the reason."""

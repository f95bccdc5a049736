"""The test server's errors (every backend's, and its SLURM's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from portal_tasks.errors import PortalError

T = TypeVar("T")


class TestServerError(PortalError):
    """The test server could not be set up or torn down."""

    __test__ = False  # not a pytest test class


class TestServerUnavailable(TestServerError):
    """This backend cannot run here (not root, no Docker engine, ...); tests skip with the reason."""


def each_tried(items: list[T], action: Callable[[T], object], what: Callable[[T], str]) -> list[str]:
    """``action`` on every item, also after one failed (a teardown goes as far as it can), each taken out of
    ``items`` as it is tried; what failed, one line each: ``what(item)``, then the error."""
    errors = []
    while items:
        item = items.pop(0)
        try:
            action(item)
        except Exception as exc:  # noqa: BLE001 - collected, raised by the caller once all were tried
            errors.append(f"{what(item)}: {exc}")
    return errors

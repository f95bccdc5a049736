"""Bounded waiting: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold within its time budget."""


def retry_until(
    fn: Callable[[], T],
    seconds: float = 10.0,
    interval: float = 0.1,
    *,
    what: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call fn until it returns a truthy value (returned) or `seconds` pass.

    Exceptions of the `retry_on` types count as "not yet" (the last one is named in the
    timeout error); others propagate at once.
    """
    deadline = time.monotonic() + seconds
    last: object = None
    while True:
        try:
            value = fn()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            name = what or getattr(fn, "__name__", repr(fn))
            raise WaitTimeout(f"timed out after {seconds:g}s waiting for {name} (last result: {last!r})")
        time.sleep(interval)

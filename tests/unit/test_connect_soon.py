"""Link.connect_soon: ssh logs in in the background while `up` imports; the first use waits for it."""

from __future__ import annotations

import threading

import pytest

from portal_tasks.config import resolve
from portal_tasks.errors import LinkError
from portal_tasks.testing.fakelink import FakeLink


class SlowLink(FakeLink):
    """connect() blocks until the test lets it go, then succeeds or fails as told."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(resolve(None, "matagorda"))
        self.go, self.fail, self.connects = threading.Event(), fail, 0

    def connect(self) -> None:
        self.connects += 1
        assert self.go.wait(30)
        if self.fail:
            raise LinkError("cannot connect over SSH (no route).", host=self.host)


def test_the_first_use_waits_for_the_connection_started_in_the_background() -> None:
    link = SlowLink()
    link.connect_soon()
    link.connect_soon()  # once: a second call starts nothing more
    assert link.connecting()
    link.go.set()
    link.connected()
    assert not link.connecting() and link.connects == 1


def test_a_failed_background_connection_is_raised_where_the_link_is_first_used() -> None:
    link = SlowLink(fail=True)
    link.connect_soon()
    link.go.set()
    with pytest.raises(LinkError, match="no route"):
        link.connected()


def test_without_connect_soon_connected_connects() -> None:
    link = SlowLink()
    link.go.set()
    assert not link.connecting()
    link.connected()
    assert link.connects == 1

"""`forward --watch`: forwards a round could not make are made again, also while the link is up."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from portal_tasks.errors import ForwardError, LinkError
from portal_tasks.commands import forward


class UpLink:
    name = "openssh"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def is_alive(self) -> bool:
        return True

    def reconnect(self) -> None:
        self.calls.append("reconnect")


def watch(monkeypatch: pytest.MonkeyPatch, failures: int, pending: bool) -> list[str]:
    calls: list[str] = []
    said: list[str] = []

    def forward_all(target: Any) -> list[Any]:
        calls.append("forward")
        if calls.count("forward") <= failures:
            raise LinkError("the SSH connection failed (it closed under the command).", host="h")
        return []

    monkeypatch.setattr(forward, "forward_all", forward_all)
    target = SimpleNamespace(link=UpLink(calls), host="h", say=said.append)
    forward.keep_alive(target, interval=0, rounds=5, pending=pending)  # type: ignore[arg-type]
    return calls


def test_a_link_that_stays_up_costs_no_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    assert watch(monkeypatch, failures=0, pending=False) == []


def test_pending_forwards_are_made_once_the_link_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert watch(monkeypatch, failures=0, pending=True) == ["reconnect", "forward"]


def test_a_failed_round_is_tried_again_until_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    assert watch(monkeypatch, failures=2, pending=True) == ["reconnect", "forward"] * 3


def test_the_first_round_failing_does_not_end_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def forward_all(target: Any) -> list[Any]:
        calls.append("forward")
        if len(calls) == 1:  # the master died under the first round's `ssh -O forward`
            raise ForwardError("could not forward laptop port 20101: Control socket connect: Connection refused", host="h")
        return []

    monkeypatch.setattr(forward, "forward_all", forward_all)
    monkeypatch.setattr(forward, "keep_alive", lambda target, **kw: calls.append(f"watch pending={kw.get('pending')}"))
    target = SimpleNamespace(link=UpLink(calls), host="h", say=lambda line: None)
    assert forward.run(target, watch=True) == []  # type: ignore[arg-type]
    assert calls == ["forward", "watch pending=True"]

"""A Link that reaches no host: it answers helper verbs from canned replies and records every call,
so a test of a task's orchestration can assert what went to the host, in which order.

    link = FakeLink(settings, {"snapshot": SNAP, "cluster-list": lambda payload: []})
    up.run(Target(settings, link), UpRequest(env="a", attach=False, browser=False))
    assert link.host_calls() == [("helper", "snapshot")]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..config import Settings
from ..link.base import Link
from ..runner import Result

#: The kinds of call that cost a round trip to the host (a forward rides the master: it does not).
HOST_CALLS = ("helper", "then", "run", "lock")  # "then": the second turn of a call, in the same session

Reply = Any  # a canned reply, or a function of the payload (or of the shell line) that makes one


class FakeLink(Link):
    """Every call is a tuple in :attr:`calls`: ``("helper", verb)``, ``("run", line)``, ``("lock", name)``,
    ``("forward", local_port, remote)``, ``("cancel", local_port, remote)``, ``("connect",)``, ``("close",)``.

    A verb without a canned reply fails the test (AssertionError).
    ``shell`` answers ``run_shell`` lines (default: exit 0, no output); ``payloads`` keeps each
    helper call's payload, in order.
    """

    name = "fake"

    def __init__(self, settings: Settings, replies: Mapping[str, Reply] | None = None,
                 shell: Callable[[str], Result] | None = None) -> None:
        super().__init__(settings)
        self.replies = dict(replies or {})
        self.shell = shell
        self.calls: list[tuple[Any, ...]] = []
        self.payloads: list[tuple[str, Any]] = []

    def host_calls(self) -> list[tuple[Any, ...]]:
        """The calls that went to the host (helper verbs, shell lines, locks), in order."""
        return [call for call in self.calls if call[0] in HOST_CALLS]

    def helper(self, verb: str, payload: Any = None, *, timeout: float | None = 120) -> Any:
        self.calls.append(("helper", verb))
        self.payloads.append((verb, payload))
        assert verb in self.replies, f"the helper was asked {verb!r}, which this test has no reply for"
        reply = self.replies[verb]
        return reply(payload) if callable(reply) else reply

    def helper_stream(self, verb: str, payload: Any, on_event: Callable[[dict[str, Any]], None], *,
                      timeout: float | None = 300) -> Any:
        """A streaming verb: its canned reply is ``(events, result)`` (or a function of the payload making one)."""
        events, result = self.helper(verb, payload, timeout=timeout)
        for event in events:
            on_event(event)
        return result

    def converse(self, verb: str, payload: Any) -> Any:
        """``snapshot-up``: one call in two turns. Recorded as ``("helper", "snapshot")`` and, when the plan goes
        in the same call, ``("then", "up")``, each answered from the canned reply of that name."""
        return FakeConversation(self, payload)

    def run_shell(self, command: str, *, input: str | bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append(("run", command))
        if self.shell is not None:
            return self.shell(command)
        return Result(("bash", "-c", command), 0, "", "")

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 120) -> Iterator[None]:
        self.calls.append(("lock", name))
        yield

    def connect(self) -> None:
        self.calls.append(("connect",))

    def command_argv(self, command: str, *, tty: bool = False) -> list[str]:
        return ["ssh", self.host, command]

    def forward(self, local_port: int, remote: str) -> None:
        self.calls.append(("forward", local_port, remote))

    def cancel_forward(self, local_port: int, remote: str) -> None:
        self.calls.append(("cancel", local_port, remote))

    def close(self) -> None:
        self.calls.append(("close",))


class FakeConversation:
    """The two turns of a :class:`FakeLink` conversation; ``closed`` when the second never came."""

    def __init__(self, link: FakeLink, payload: Any) -> None:
        self.link, self.payload, self.closed = link, payload, False

    def answer(self) -> Any:
        return self.link.helper("snapshot", self.payload)

    def send(self, payload: Any, on_event: Callable[[dict[str, Any]], None]) -> Any:
        self.link.calls.append(("then", "up"))
        self.link.payloads.append(("up", payload))
        reply = self.link.replies.get("up")
        assert reply is not None, "the helper was sent an `up` plan, which this test has no reply for"
        events, result = reply(payload) if callable(reply) else reply
        for event in events:
            on_event(event)
        return result

    def close(self) -> None:
        self.closed = True

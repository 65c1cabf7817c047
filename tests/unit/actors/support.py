"""Helpers of the host-actor unit tests: principals, frames, store gates and a fake clock.

Interleavings are forced, not hoped for: a `Gate` holds a store call in its worker thread
until the test opens it, so the test knows exactly what is in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time as _time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.host import Host
from actors.host.messages import ChatItem
from confide.auth import Principal
from confide.errors import (
    CloseConnection,
    ConfideError,
    Conflict,
    Forbidden,
    Internal,
    InvalidMessage,
    NotFound,
    RateLimited,
    UnknownType,
)
from confide.events import Event
from confide.inbox import NotificationRequest
from confide.protocol import ChatMessage, Error

WAIT = 5.0  # seconds a test waits for a condition before it fails rather than hangs


def who(user: str, role: str = "client", sessions: tuple[str, ...] = ("s1",)) -> Principal:
    return Principal(user, role, frozenset(sessions), 1e12)  # type: ignore[arg-type]


def msg(msg_id: str, text: str = "hi") -> ChatMessage:
    return ChatMessage(type="message", id=msg_id, body={"text": text})


def note(user: str = "bob", title: str = "t") -> NotificationRequest:
    return NotificationRequest(user=user, kind="reminder", title=title, body="b")


def frames(events: list[Event], kind: str | None = None) -> list[dict[str, Any]]:
    return [e.frame for e in events if kind is None or e.frame.get("type") == kind]


async def settle(rounds: int = 20) -> None:
    """Let every ready callback run (no time passes; thread work is not waited for)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def assert_blocked(task: asyncio.Future[Any], grace: float = 0.1) -> None:
    """A negative check: give `task` a moment to (wrongly) finish, and require it did not."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    assert not done, "the task should still be waiting"


async def until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for `cond()` to hold, letting the loop (and threads) run meanwhile."""
    deadline = _time.monotonic() + timeout
    while not cond():
        assert _time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


class Gate:
    """Wraps `target.<name>`: the first `count` calls wait in their thread until `open()`.

    `after=True` runs the real call first and holds its return (the work is done, the
    caller does not know yet). `fail` makes the held calls raise it instead.
    """

    def __init__(
        self, target: Any, name: str, *, count: int = 1, after: bool = False,
        fail: BaseException | None = None,
    ) -> None:
        self._real = getattr(target, name)
        self._count = count
        self._after = after
        self._fail = fail
        self._lock = threading.Lock()
        self.calls = 0
        self.entered = threading.Event()
        self.opened = threading.Event()
        setattr(target, name, self._call)

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            held = self.calls <= self._count
        if not held:
            return self._real(*args, **kwargs)
        result = self._real(*args, **kwargs) if self._after else None
        self.entered.set()
        assert self.opened.wait(WAIT), "gate never opened"
        if self._fail is not None:
            raise self._fail
        return result if self._after else self._real(*args, **kwargs)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT), "gated call never came"

    def open(self) -> None:
        self.opened.set()


GateFactory = Callable[..., Gate]


class Clock:
    """Stands in for the `time` module of `actors.host`: the test moves time forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return _time.monotonic() + self.offset

    def time(self) -> float:
        return _time.time() + self.offset

    def perf_counter(self) -> float:
        return _time.perf_counter()

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def started(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run `coro` as a task and let it get as far as it can without threads."""
    task = asyncio.ensure_future(coro)
    await settle()
    return task


_ERRORS: dict[str, type[ConfideError]] = {
    cls.code.value: cls
    for cls in (InvalidMessage, UnknownType, RateLimited, Forbidden, NotFound, Conflict, Internal)
}


async def send_batch(
    host: Host, session_id: str, conn_id: str, sender: Principal, msgs: list[ChatMessage]
) -> list[dict[str, Any]]:
    """One connection's messages through `chat_batch`: each answer as its frame."""
    items = [ChatItem(session_id, conn_id, sender, m) for m in msgs]
    answers = await host.chat_batch(items)
    out: list[dict[str, Any]] = []
    for answer in answers:
        if isinstance(answer, CloseConnection):
            raise answer
        out.append(answer.dump())
    return out


async def send(
    host: Host, session_id: str, conn_id: str, sender: Principal, message: ChatMessage
) -> dict[str, Any]:
    """One message through `chat_batch`: its ack frame; an error answer is raised as the
    core's exception of that code (a closing session as `CloseConnection`)."""
    [answer] = await host.chat_batch([ChatItem(session_id, conn_id, sender, message)])
    if isinstance(answer, CloseConnection):
        raise answer
    if isinstance(answer, Error):
        raise _ERRORS[answer.code](answer.message)
    return answer.dump()

"""The analytics endpoint's pump: subscriptions to live streams, encrypted submissions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from confide import b64
from confide.analytics import StreamRef, resolve
from confide.errors import ConfideError, Internal, InvalidMessage, NotFound, RateLimited
from confide.protocol import (
    Ack,
    Frame,
    Submit,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)
from gateway.fanout import Outgoing
from gateway.pumps.base import RESYNC, Pump

log = logging.getLogger("confide.analytics")

#: Contributions of one connection that may await their ack at once.
MAX_INFLIGHT_SUBMITS = 256


class UserSubmits:
    """Contributions awaiting their ack per user on this gateway replica (all of the
    user's connections together), by count and by bytes: `fhe_user_inflight` and
    `fhe_user_inflight_bytes`. One per replica process."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def take(self, user: str, size: int, max_count: int, max_bytes: int) -> bool:
        count, used = self.count.get(user, 0), self.bytes.get(user, 0)
        if count >= max_count or (count and used + size > max_bytes):
            return False
        self.count[user], self.bytes[user] = count + 1, used + size
        return True

    def give(self, user: str, size: int) -> None:
        count = self.count.get(user, 0) - 1
        if count <= 0:
            self.count.pop(user, None)
            self.bytes.pop(user, None)
        else:
            self.count[user], self.bytes[user] = count, self.bytes[user] - size


USER_SUBMITS = UserSubmits()


class AnalyticsPump(Pump):
    endpoint = "analytics"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: dict[str, StreamRef] = {}
        self._submits: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        await self.send_frame(Welcome(user=self.who.user, role=self.who.role,
                                      heartbeat_s=self.ctx.settings.heartbeat_s))

    def deliver(self, out: Outgoing) -> bool:
        # Only streams whose subscription the host accepted (not one being refused).
        return out.event.topic in self.streams and super().deliver(out)

    async def _subscribe(self, ref: StreamRef) -> dict[str, Any] | None:
        self.ctx.fanout.subscribe(ref.topic, self, ref.route)
        try:
            snapshot = await self.ctx.hosts.host_for(ref.route).stream_subscribe(
                ref, self.conn_id, self.who)
        except BaseException:
            if ref.topic not in self.streams:
                self.ctx.fanout.unsubscribe(ref.topic, self)
            raise
        return snapshot

    async def handle(self, frame: Frame) -> None:
        if isinstance(frame, Subscribe):
            ref = resolve(frame.stream, self.who, frame.key_id)
            snapshot = await self._subscribe(ref)
            self.streams[ref.topic] = ref
            self.push_frame(Subscribed(stream=ref.name, key_id=ref.key_id))
            if snapshot:
                self.push_frame(snapshot)
        elif isinstance(frame, Unsubscribe):
            ref = resolve(frame.stream, self.who, frame.key_id)
            if self.streams.pop(ref.topic, None) is None:
                raise NotFound("not subscribed to this stream")
            await self._unsubscribe(ref)
            self.push_frame(Unsubscribed(stream=ref.name, key_id=ref.key_id))
        elif isinstance(frame, Submit):
            await self.submit(frame)

    async def submit(self, frame: Submit) -> None:
        """Contributions are folded in batches: each waits for its own ack concurrently."""
        if not frame.stream.startswith("fhe:"):
            raise InvalidMessage("only fhe: streams take contributions", frame_id=frame.id)
        ref = resolve(frame.stream, self.who, frame.key_id)
        data = b64.decode_ciphertext(frame.ciphertext, frame.id)  # here, not on the host
        if len(self._submits) >= MAX_INFLIGHT_SUBMITS:
            raise RateLimited("too many contributions awaiting their ack", frame_id=frame.id)
        settings, user, size = self.ctx.settings, self.who.user, len(data)
        if not USER_SUBMITS.take(user, size, settings.fhe_user_inflight,
                                 settings.fhe_user_inflight_bytes):
            raise RateLimited("too many contributions of this user awaiting their ack",
                              frame_id=frame.id)
        task = asyncio.create_task(self._submit(ref, frame, data))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)
        task.add_done_callback(lambda _: USER_SUBMITS.give(user, size))

    async def _submit(self, ref: StreamRef, frame: Submit, data: bytes) -> None:
        try:
            await self.ctx.hosts.host_for(ref.route).fhe_submit(
                ref, data, self.who.user, str(frame.id))
        except ConfideError as err:
            err.frame_id = frame.id
            self.push_error(err)
        except Exception:
            log.warning("a contribution failed unexpectedly", exc_info=True)
            self.push_error(Internal("contribution not processed", frame_id=frame.id))
        else:
            self.push_frame(Ack(id=frame.id))

    async def _unsubscribe(self, ref: StreamRef) -> None:
        self.ctx.fanout.unsubscribe(ref.topic, self)
        await self.ctx.hosts.host_for(ref.route).stream_unsubscribe(ref, self.conn_id)

    async def render(self, item: Any) -> None:
        if item is RESYNC:
            for ref in list(self.streams.values()):
                try:
                    snapshot = await self._subscribe(ref)
                except ConfideError as err:  # e.g. the key was deleted: drop this stream
                    self.streams.pop(ref.topic, None)
                    self.ctx.fanout.unsubscribe(ref.topic, self)
                    self.push_error(err)
                    continue
                if snapshot:
                    await self.send_frame(snapshot)
        elif isinstance(item, Outgoing):
            await self.send_text(item.text)
        else:
            await super().render(item)

    async def finish(self) -> None:
        for task in list(self._submits):
            task.cancel()
        for ref in list(self.streams.values()):
            self.ctx.fanout.unsubscribe(ref.topic, self)
        for ref in list(self.streams.values()):
            with contextlib.suppress(Exception):  # best effort: hosts also reap leases
                await self.ctx.hosts.host_for(ref.route).stream_unsubscribe(ref, self.conn_id)

    def audit_frame(self, frame: Frame) -> tuple[str, str]:
        stream = getattr(frame, "stream", None)
        target = f"{stream}/{frame.key_id}" if isinstance(frame, Subscribe) and frame.key_id \
            else str(stream or self.endpoint)
        return f"stream.{getattr(frame, 'type', 'frame')}", target

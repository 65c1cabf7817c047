"""Open-loop chat load generator: one asyncio process drives one server at a time.

A load is S sessions × M members, each member sending R messages/s on a fixed schedule
(open loop: a late server never slows the senders down). Every message carries its send
time (`time.perf_counter()`, this process's clock) and a flag saying whether it was sent in
the measured window (after the warm-up); every member records the latency of every
delivery of a measured message. After the window, the generator waits for stragglers
(the drain), then closes every connection. Per load it reports:

- delivered ratio: deliveries received / (messages sent × members of their session);
- deliveries/s: deliveries received / (window start → last delivery, at least the window);
- latency p50/p99/p999 of send → receipt, over every delivery, the sender's own included;
- connect rate: members opened (hello → welcome done) per second, 50 handshakes in flight;
- CPU over the window: this process's (100 = one core), the server tree's and the rest of
  the machine's (cores). A saturated generator caps every server's figures, and other
  busy processes on the same cores make them unreliable: read them together.

The idle phase opens N connections (10 per session, distinct users), waits until the
server's memory settles, and reports the growth per connection.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

#: Handshakes in flight at once.
CONNECT_CONCURRENCY = 50
#: Application-level pings on idle connections (Confide closes after 2 × 25 s of silence).
KEEPALIVE_S = 20.0


@dataclass(frozen=True)
class Load:
    sessions: int
    members: int
    rate: float  # messages/s per member

    @property
    def name(self) -> str:
        return f"{self.sessions}x{self.members}x{self.rate:g}"

    @property
    def offered(self) -> float:
        """Deliveries/s offered: every message goes to every member of its session."""
        return self.sessions * self.members * self.rate * self.members


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    duration_s: float
    drain_s: float


@dataclass(frozen=True)
class Target:
    """A server under test: where members connect and what their `hello` says."""

    name: str
    port: int
    hello: Callable[[str, str], dict[str, Any]]  # (user, session) -> hello frame
    #: Sums over the server's process tree: memory bytes (scans the tree), CPU seconds
    #: (over the tree as of the last scan, cheap enough for the event loop).
    memory: Callable[[], int]
    cpu_seconds: Callable[[], float]
    scan: Callable[[], None]

    def url(self, session: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/{session}"


@dataclass
class Recorder:
    """What the members of one phase saw."""

    sent: Counter[str] = field(default_factory=Counter)  # measured messages, per session
    warm_sent: int = 0
    received: int = 0  # deliveries of measured messages
    warm_received: int = 0
    acks: int = 0
    last_receipt: float = 0.0
    latencies: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)  # actual - scheduled send time
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    connect_failures: Counter[str] = field(default_factory=Counter)


@dataclass
class Member:
    ws: ClientConnection
    user: str
    session: str


class Progress:
    """One `\\r`-updated status line on stderr."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.phase = "starting"
        self.started = time.perf_counter()
        self.rec: Recorder | None = None
        self.note = ""

    def set(self, phase: str, rec: Recorder | None = None) -> None:
        self.phase, self.rec, self.note = phase, rec, ""
        self.started = time.perf_counter()

    def render(self) -> None:
        line = f"[{self.server}] {self.phase} {time.perf_counter() - self.started:5.1f}s"
        if self.rec is not None:
            sent = sum(self.rec.sent.values()) + self.rec.warm_sent
            recv = self.rec.received + self.rec.warm_received
            line += f" sent={sent} recv={recv}"
        sys.stderr.write(f"\r{line} {self.note}".ljust(100)[:100])
        sys.stderr.flush()

    async def run(self) -> None:
        while True:
            self.render()
            await asyncio.sleep(0.5)


def quantile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def welcome(ws: ClientConnection) -> None:
    while json.loads(await ws.recv()).get("type") != "welcome":
        pass


async def open_member(target: Target, user: str, session: str, rec: Recorder) -> Member | None:
    """Connects, sends `hello`, waits for `welcome`; None (counted) on failure."""
    try:
        ws = await connect(target.url(session), compression=None, max_size=2**22,
                           ping_interval=None, open_timeout=60, close_timeout=2)
    except (OSError, WebSocketException, asyncio.TimeoutError) as e:
        rec.connect_failures[type(e).__name__] += 1
        return None
    try:
        await ws.send(json.dumps(target.hello(user, session)))
        await asyncio.wait_for(welcome(ws), 60)
    except (ConnectionClosed, asyncio.TimeoutError, ValueError) as e:
        code = getattr(getattr(e, "rcvd", None), "code", None)
        rec.connect_failures[f"{type(e).__name__}:{code}"] += 1
        await ws.close()
        return None
    return Member(ws, user, session)


async def open_all(target: Target, pairs: list[tuple[str, str]], rec: Recorder,
                   progress: Progress) -> tuple[list[Member], float]:
    """Opens every (user, session) with bounded concurrency; returns members, connects/s."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    done = 0

    async def one(user: str, session: str) -> Member | None:
        nonlocal done
        async with gate:
            member = await open_member(target, user, session, rec)
        done += 1
        progress.note = f"connected {done}/{len(pairs)}"
        return member

    start = time.perf_counter()
    opened = await asyncio.gather(*(one(u, s) for u, s in pairs))
    elapsed = time.perf_counter() - start
    members = [m for m in opened if m is not None]
    return members, len(members) / elapsed if elapsed > 0 else 0.0


async def read(member: Member, rec: Recorder) -> None:
    """Consumes every frame; times deliveries of measured messages."""
    ws = member.ws
    try:
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message":
                body = frame.get("body") or {}
                if body.get("m"):
                    rec.received += 1
                    rec.latencies.append(now - body["t"])
                    rec.last_receipt = now
                else:
                    rec.warm_received += 1
            elif kind == "ack":
                rec.acks += 1
            elif kind == "error":
                rec.errors[str(frame.get("code"))] += 1
    except ConnectionClosed:
        pass
    if ws.close_code not in (None, 1000):
        rec.closes[str(ws.close_code)] += 1


async def send(member: Member, rate: float, t0: float, t_measure: float, t_end: float,
               rec: Recorder) -> None:
    """Sends on a fixed schedule from t0 to t_end (a random phase spreads the members)."""
    period = 1.0 / rate
    due = t0 + random.random() * period
    k = 0
    while due < t_end:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        measured = due >= t_measure
        body = {"t": now, "from": member.user, "m": 1 if measured else 0}
        frame = {"type": "message", "id": f"{member.user}-{k}", "body": body}
        try:
            await member.ws.send(json.dumps(frame))
        except ConnectionClosed:
            return
        if measured:
            rec.sent[member.session] += 1
            rec.send_lag.append(now - due)
        else:
            rec.warm_sent += 1
        k += 1
        due += period


async def close_all(members: list[Member], tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*(m.ws.close() for m in members), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def keepalive(members: list[Member]) -> None:
    """`{"type":"ping"}` on every connection every KEEPALIVE_S, spread over the period."""
    while True:
        for member in list(members):
            await asyncio.sleep(KEEPALIVE_S / max(1, len(members)))
            try:
                await member.ws.send('{"type":"ping"}')
            except ConnectionClosed:
                continue


def member_pairs(tag: str, sessions: int, members: int) -> list[tuple[str, str]]:
    """(user, session) for every member; users are distinct across phases by `tag`."""
    return [(f"{tag}-u{s}-{m}", f"{tag}-s{s}") for s in range(sessions) for m in range(members)]


def load_figures(load: Load, members: list[Member], rec: Recorder, t_measure: float,
                 t_end: float) -> dict[str, Any]:
    per_session = Counter(m.session for m in members)
    expected = sum(n * per_session[s] for s, n in rec.sent.items())
    elapsed = max(rec.last_receipt, t_end) - t_measure
    ordered = sorted(rec.latencies)
    lag = sorted(rec.send_lag)
    return {
        "load": load.name, "sessions": load.sessions, "members": load.members,
        "rate": load.rate, "offered_deliveries_per_s": load.offered,
        "connected": len(members), "messages_sent": sum(rec.sent.values()),
        "deliveries_expected": expected, "deliveries_received": rec.received,
        "delivered_ratio": rec.received / expected if expected else None,
        "deliveries_per_s": rec.received / elapsed if elapsed > 0 else None,
        "latency_p50_ms": quantile_ms(ordered, 0.5),
        "latency_p99_ms": quantile_ms(ordered, 0.99),
        "latency_p999_ms": quantile_ms(ordered, 0.999),
        "send_lag_p99_ms": quantile_ms(lag, 0.99),
        "acks": rec.acks, "errors": dict(rec.errors), "closes": dict(rec.closes),
        "connect_failures": dict(rec.connect_failures),
    }


async def run_load(target: Target, load: Load, timing: Timing, tag: str,
                   progress: Progress) -> dict[str, Any]:
    """Connects a load's members, sends for warm-up + duration, drains, closes."""
    rec = Recorder()
    progress.set(f"{load.name} connect", rec)
    members, connect_rate = await open_all(
        target, member_pairs(tag, load.sessions, load.members), rec, progress)
    readers = [asyncio.create_task(read(m, rec)) for m in members]
    await asyncio.to_thread(target.scan)
    progress.set(f"{load.name} send", rec)
    t0 = time.perf_counter() + 0.1
    t_measure = t0 + timing.warmup_s
    t_end = t_measure + timing.duration_s
    senders = [asyncio.create_task(send(m, load.rate, t0, t_measure, t_end, rec))
               for m in members]
    me = psutil.Process()
    await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
    me.cpu_percent(None)
    psutil.cpu_percent(None)
    server_cpu0, window0 = target.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*senders)
    generator_cpu = me.cpu_percent(None)
    busy = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
    server_cpu = (target.cpu_seconds() - server_cpu0) / (time.perf_counter() - window0)
    progress.set(f"{load.name} drain", rec)
    expected = sum(n * load.members for n in rec.sent.values())
    while rec.received < expected and time.perf_counter() < t_end + timing.drain_s:
        await asyncio.sleep(0.05)
    figures = load_figures(load, members, rec, t_measure, t_end)
    progress.set(f"{load.name} close")
    await close_all(members, readers)
    # Cores busy over the window outside the generator and the server: other work on the
    # machine, which makes every figure of this load unreliable.
    others = max(0.0, busy - generator_cpu / 100 - server_cpu)
    return figures | {"connect_per_s": connect_rate, "generator_cpu_percent": generator_cpu,
                      "server_cpu_cores": server_cpu, "machine_busy_cores": busy,
                      "other_cpu_cores": others}


async def measure_connect(target: Target, count: int, tag: str,
                          progress: Progress) -> dict[str, Any]:
    """Opens `count` members (10 per session) and closes them: connects/s."""
    rec = Recorder()
    progress.set(f"connect {count}", rec)
    members, rate = await open_all(target, member_pairs(tag, max(1, count // 10), 10), rec,
                                   progress)
    readers = [asyncio.create_task(read(m, rec)) for m in members]
    await close_all(members, readers)
    return {"connections": len(members), "connect_per_s": rate,
            "connect_failures": dict(rec.connect_failures)}


async def settled_memory(memory: Callable[[], Awaitable[int]], progress: Progress) -> int:
    """The memory once two readings a second apart differ by under 0.5% (15 s at most)."""
    await asyncio.sleep(2.0)
    last = await memory()
    for _ in range(15):
        await asyncio.sleep(1.0)
        now = await memory()
        progress.note = f"settling {now / 2**20:.0f} MiB"
        if abs(now - last) < 0.005 * last:
            return now
        last = now
    return last


async def run_idle(target: Target, count: int, tag: str, progress: Progress) -> dict[str, Any]:
    """Memory growth per idle connection over the server's whole process tree."""

    async def memory() -> int:
        return await asyncio.to_thread(target.memory)

    rec = Recorder()
    progress.set(f"idle {count}", rec)
    before = await settled_memory(memory, progress)
    members, rate = await open_all(target, member_pairs(tag, max(1, count // 10), 10), rec,
                                   progress)
    readers = [asyncio.create_task(read(m, rec)) for m in members]
    pinger = asyncio.create_task(keepalive(members))
    after = await settled_memory(memory, progress)
    open_at_end = sum(1 for m in members if m.ws.close_code is None)
    progress.set(f"idle {count} close")
    pinger.cancel()
    await close_all(members, readers)
    per_conn = (after - before) / len(members) if members else None
    return {"connections": len(members), "open_at_end": open_at_end, "connect_per_s": rate,
            "memory_before_bytes": before, "memory_after_bytes": after,
            "bytes_per_connection": per_conn, "connect_failures": dict(rec.connect_failures),
            "closes": dict(rec.closes)}

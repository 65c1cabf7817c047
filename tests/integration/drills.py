"""Drills on the local three-node cluster (cluster/local.py): traffic during a failure.

`LocalCluster` drives `cluster/local.py` in subprocesses (the test process stays free of
the cluster's Ray). `Traffic` keeps chat clients sending and inbox clients receiving
notifications through a disruption, then checks: nothing acknowledged lost, nothing shown
twice, every client resumed (a message or notification created after the disruption
reached it) within the bound; and returns the figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from confide.auth import mint_token
from confide.client import ChatClient, NotificationsClient

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "cluster" / "local.py"

#: Every client must have resumed within this many seconds of the disruption (issue 7).
RESUME_BOUND_S = 10.0


def store_supports_postgres() -> bool:
    """The cluster runs on PostgreSQL (scripts/postgres.sh and the store are there)."""
    return (ROOT / "scripts" / "postgres.sh").exists() and (
        importlib.util.find_spec("confide.store.postgres") is not None)


@dataclass
class LocalCluster:
    data_dir: Path
    port: int
    secret: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
        env.pop("RAY_ADDRESS", None)
        return env | {"CONFIDE_DATA_DIR": str(self.data_dir), "CONFIDE_PORT": str(self.port),
                      "CONFIDE_JWT_SECRET": self.secret}

    def run(self, *args: str, timeout: float = 900) -> str:
        out = subprocess.run([sys.executable, str(LOCAL), *args], env=self.env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"local.py {' '.join(args)} failed:\n{out.stdout[-3000:]}"
                               f"\n{out.stderr[-3000:]}")
        return out.stdout

    def where(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.run("where").strip().splitlines()[-1])
        return found

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, sub: str, role: str = "client", sessions: list[str] | None = None) -> str:
        return mint_token(self.secret, sub, role=role, sessions=sessions, ttl_s=3600)


@dataclass
class Seen:
    """What one client received: (id, offset or None, receive time, creation time)."""

    items: list[tuple[str, int | None, float, float]] = field(default_factory=list)
    welcomes: int = 0
    #: (offset, recovered, epoch) of each welcome, for diagnosis
    welcome_log: list[tuple[Any, Any, Any]] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [i for i, _, _, _ in self.items]

    def resumed_after(self, t0: float) -> float | None:
        """Seconds from t0 to the first item created after t0 that reached this client."""
        later = [recv for _, _, recv, made in self.items if made > t0]
        return min(later) - t0 if later else None


class Traffic:
    """`chatters` clients in one chat session, `readers` inboxes fed by a REST producer."""

    def __init__(self, cluster: LocalCluster, session: str, users: list[str],
                 chatters: int = 3, interval_s: float = 0.5) -> None:
        self.cluster = cluster
        self.session = session
        self.users = users
        self.interval_s = interval_s
        self.chats: list[ChatClient] = []
        self.inboxes: list[NotificationsClient] = []
        self.chat_seen = [Seen() for _ in range(chatters)]
        self.inbox_seen = [Seen() for _ in users]
        self.sent: list[tuple[ChatClient, str]] = []
        self.accepted: dict[str, str] = {}  # notification id -> user
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        opts: dict[str, Any] = {"max_backoff_s": 2.0, "open_timeout_s": 10.0}
        for k, seen in enumerate(self.chat_seen):
            chat = ChatClient(self.cluster.ws(f"/ws/chat/{self.session}"),
                              self.cluster.token(f"c{k}", sessions=[self.session]), **opts)
            chat.on("message", self._on_message(seen))
            chat.on("welcome", self._on_welcome(seen))
            await chat.connect(timeout=60)
            self.chats.append(chat)
        for user, seen in zip(self.users, self.inbox_seen, strict=True):
            inbox = NotificationsClient(self.cluster.ws("/ws/notifications"),
                                        self.cluster.token(user), **opts)
            inbox.on("notification", self._on_note(seen))
            inbox.on("welcome", self._on_welcome(seen))
            await inbox.connect(timeout=60)
            self.inboxes.append(inbox)
        self._tasks = [asyncio.create_task(self._chat_loop(c)) for c in self.chats]
        self._tasks.append(asyncio.create_task(self._notify_loop()))

    @staticmethod
    def _on_message(seen: Seen) -> Callable[[dict[str, Any]], None]:
        def record(event: dict[str, Any]) -> None:
            seen.items.append((event["id"], event["offset"], time.time(),
                               float(event["body"]["t"])))
        return record

    @staticmethod
    def _on_note(seen: Seen) -> Callable[[dict[str, Any]], None]:
        def record(event: dict[str, Any]) -> None:
            seen.items.append((event["id"], None, time.time(), float(event["data"]["t"])))
        return record

    @staticmethod
    def _on_welcome(seen: Seen) -> Callable[[dict[str, Any]], None]:
        def record(event: dict[str, Any]) -> None:
            seen.welcomes += 1
            seen.welcome_log.append(
                (event.get("offset"), event.get("recovered"), event.get("epoch")))
        return record

    async def _chat_loop(self, chat: ChatClient) -> None:
        n = 0
        while not self._stop.is_set():
            message_id = await chat.send_message({"n": n, "t": time.time()})
            self.sent.append((chat, message_id))
            n += 1
            await asyncio.sleep(self.interval_s)

    async def _post(self, client: httpx.AsyncClient, user: str, n: int) -> None:
        """POST one notification until it is accepted (202), with one idempotency key."""
        key = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {self.cluster.token('drill', 'service')}",
                   "Idempotency-Key": key}
        body = {"user": user, "kind": "drill", "title": f"n{n}", "body": "x",
                "data": {"n": n, "t": time.time()}}
        deadline = time.monotonic() + 900  # a full cluster restart takes minutes here
        while time.monotonic() < deadline:
            try:
                r = await client.post("/api/notifications", json=body, headers=headers)
                if r.status_code == 202:
                    self.accepted[r.json()["id"]] = user
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        raise AssertionError("a notification was never accepted")

    async def _notify_loop(self) -> None:
        n = 0
        async with httpx.AsyncClient(base_url=self.cluster.http, timeout=30) as client:
            while not self._stop.is_set():
                await self._post(client, self.users[n % len(self.users)], n)
                n += 1
                await asyncio.sleep(self.interval_s)

    async def until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {what}\n{await self.diagnosis()}")
            await asyncio.sleep(0.2)

    async def diagnosis(self) -> str:
        """The clients' states, and the server's state of every missing notification."""
        acked = {mid for _, mid in self.sent}
        lines = []
        for c, seen in zip(self.chats, self.chat_seen, strict=True):
            offsets = sorted(o for _, o, _, _ in seen.items if o is not None)
            gaps = sorted(set(range(1, c.last_offset + 1)) - set(offsets))
            lines.append(f"chat {c.state} pending={len(c.pending)} last={c.last_offset} "
                         f"close={c.close_code} {c.close_reason} missing_acked="
                         f"{len(acked - set(seen.ids()))} gaps={gaps[:3]}..{gaps[-3:]} "
                         f"n_gaps={len(gaps)} welcomes={seen.welcome_log}")
        headers = {"Authorization": f"Bearer {self.cluster.token('drill', 'service')}"}
        async with httpx.AsyncClient(base_url=self.cluster.http, timeout=30) as client:
            for user, inbox, seen in zip(self.users, self.inboxes, self.inbox_seen,
                                         strict=True):
                missing = {i for i, u in self.accepted.items() if u == user} - set(seen.ids())
                states = []
                for nid in sorted(missing)[:5]:
                    r = await client.get(f"/api/notifications/{nid}", headers=headers)
                    states.append(r.json())
                lines.append(f"inbox {user} {inbox.state} close={inbox.close_code} "
                             f"{inbox.close_reason} welcomes={seen.welcomes} "
                             f"missing={len(missing)} {states}")
        return "\n".join(lines)

    async def finish(self, t0: float, settle_s: float = 120) -> dict[str, Any]:
        """Stop sending, wait for every ack and delivery, check, close; the figures."""
        # keep traffic going until every client has resumed (or the bound is far behind)
        everyone = self.chat_seen + self.inbox_seen
        await self.until("traffic after the disruption reaches every client",
                         lambda: all(s.resumed_after(t0) is not None for s in everyone)
                         or time.time() - t0 > 3 * RESUME_BOUND_S, 120)
        self._stop.set()
        await asyncio.gather(*self._tasks)
        try:
            acked = {mid: await chat.wait_acked(mid, timeout=settle_s)
                     for chat, mid in self.sent}
        except asyncio.TimeoutError:
            raise AssertionError(f"a message was never acked\n{await self.diagnosis()}") from None
        n = len(acked)
        await self.until("every acknowledged message reached every chat client",
                         lambda: all(set(acked) <= set(s.ids()) for s in self.chat_seen),
                         settle_s)
        for user, seen in zip(self.users, self.inbox_seen, strict=True):
            mine = {i for i, u in self.accepted.items() if u == user}
            await self.until(f"every accepted notification reached {user}",
                             lambda mine=mine, seen=seen: mine <= set(seen.ids()), settle_s)
        # nothing lost, nothing twice, offsets 1..n in order, the store agrees
        assert sorted(acked.values()) == list(range(1, n + 1))
        for seen in self.chat_seen:
            assert len(seen.ids()) == len(set(seen.ids())), "a chat client saw a duplicate"
            assert [o for _, o, _, _ in seen.items] == list(range(1, n + 1))
        for user, seen in zip(self.users, self.inbox_seen, strict=True):
            mine = {i for i, u in self.accepted.items() if u == user}
            assert len(seen.ids()) == len(set(seen.ids())), "an inbox showed a duplicate"
            assert set(seen.ids()) == mine
        k = min(n, 500)
        history = await self.chats[0].request_history(limit=k)
        assert sorted(m["offset"] for m in history["messages"]) == list(range(n - k + 1, n + 1))
        resumes = [s.resumed_after(t0) for s in everyone]
        await asyncio.gather(*(c.disconnect() for c in [*self.chats, *self.inboxes]))
        assert all(r is not None and r <= RESUME_BOUND_S for r in resumes), resumes
        done = [r for r in resumes if r is not None]
        return {"messages": n, "notifications": len(self.accepted),
                "resume_max_s": round(max(done), 2),
                "resume_median_s": round(statistics.median(done), 2),
                "reconnects": sum(s.welcomes - 1 for s in everyone)}


async def drill(cluster: LocalCluster, name: str, session: str, users: list[str],
                disrupt: Callable[[], Awaitable[float | None]], warmup_s: float = 3.0
                ) -> dict[str, Any]:
    """Traffic, then `disrupt()`, then the checks. Resume times count from the start of
    the disruption, or from the time `disrupt()` returns (when the service is back after
    a planned outage: a full cluster restart)."""
    traffic = Traffic(cluster, session, users)
    await traffic.start()
    await asyncio.sleep(warmup_s)
    t0 = time.time()
    back = await disrupt()
    figures = {"drill": name} | await traffic.finish(back or t0)
    if back:
        figures["resume_counted_from_s"] = round(back - t0, 1)  # after the disruption began
    report = os.environ.get("CONFIDE_DRILL_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps(figures) + "\n")
    print("DRILL", json.dumps(figures), flush=True)
    return figures

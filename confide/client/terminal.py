"""The live terminal commands of the CLI: `confide chat`, `confide inbox`, `confide watch`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from typing import Any, TextIO, get_args

from confide.client.analytics import AnalyticsClient
from confide.client.chat import ChatClient
from confide.client.errors import ClientError
from confide.client.events import Event
from confide.client.notifications import NotificationsClient
from confide.protocol import Status

CLEAR_SCREEN = "\x1b[H\x1b[2J"
CHAT_HELP = "commands: /status online|typing|idle|away, /history [N], /end, /quit"
_STATUSES: dict[str, Status] = {s: s for s in get_args(Status)}
#: Seconds `confide chat` waits, on /quit or end of input, for its messages to be acked.
DRAIN_S = 5.0
#: Seconds the live commands try to connect before giving up (later drops are retried).
CONNECT_TIMEOUT_S = 15.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render_state(event: Event) -> str | None:
    """A line for the connection's `state` and `close` events (None: nothing to show)."""
    if event["type"] == "state" and event.get("state") == "reconnecting":
        return "* reconnecting..."
    if event["type"] == "close":
        what = "connection lost" if event.get("reconnect") else "closed"
        detail = " ".join(str(x) for x in (event.get("code"), event.get("reason")) if x)
        return f"* {what} ({detail})"
    return None


def render_chat(event: Event) -> str | None:
    """A chat event as one line: messages as `[offset] sender: text`."""
    kind = event["type"]
    if kind == "message":
        body = event.get("body") or {}
        text = "<encrypted>" if event.get("encrypted") else _text(body.get("text", body))
        return f"[{event.get('offset')}] {event.get('sender')}: {text}"
    if kind == "presence":
        verb = "joined" if event.get("event") == "join" else "left"
        return f"* {event.get('user')} {verb} ({len(event.get('members') or [])} here)"
    if kind == "status":
        return f"* {event.get('user')} is {event.get('status')}"
    if kind == "ended":
        return f"* the session was ended by {event.get('by')}"
    if kind == "insight":
        return f"* encrypted insight for [{event.get('for_offset')}] ({event.get('model')})"
    if kind == "error":
        return f"! {event.get('code')}: {event.get('message')}"
    if kind == "welcome" and event.get("recovered") is False:
        return "* messages may be missing: /history reloads"
    return render_state(event)


def render_notification(event: Event) -> str | None:
    if event["type"] == "notification":
        title, body = event.get("title"), event.get("body")
        return f"[{event.get('kind')}] {title}: {body} ({event.get('id')})"
    if event["type"] == "error":
        return f"! {event.get('code')}: {event.get('message')}"
    return render_state(event)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", _text(value)))
    return rows


def render_metrics(frame: Event) -> str:
    """A `metrics` or `aggregate` frame as a full screen: clear, title, key/value table."""
    if frame["type"] == "aggregate":
        data: dict[str, Any] = {
            "key_id": frame.get("key_id"),
            "count": frame.get("count"),
            "sum": f"<{len(str(frame.get('sum', '')))} base64 chars>",
        }
    else:
        data = frame.get("data") or {}
    rows = _flatten(data)
    width = max((len(k) for k, _ in rows), default=0)
    stamp = time.strftime("%H:%M:%S", time.localtime(float(frame.get("ts") or time.time())))
    lines = [f"{frame.get('stream')}  {stamp}", ""]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return CLEAR_SCREEN + "\n".join(lines) + "\n"


def _stdin_lines() -> asyncio.Queue[str | None]:
    """Lines of stdin, read by a daemon thread (works for ttys, pipes and files); None at EOF."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except RuntimeError:
            return  # the loop is gone: the command is over

    threading.Thread(target=pump, name="confide-stdin", daemon=True).start()
    return lines


def _show(line: str | None, out: TextIO) -> None:
    if line:
        print(line, file=out, flush=True)


async def _print_events(client: ChatClient, out: TextIO) -> None:
    async for event in client.events():
        _show(render_chat(event), out)


async def _drain(client: ChatClient) -> None:
    """Wait (up to DRAIN_S) for the messages still in the outbox to be acked."""
    with contextlib.suppress(ClientError, asyncio.TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(client.wait_acked(i) for i in client.pending)), DRAIN_S
        )


async def _chat_command(client: ChatClient, line: str, out: TextIO) -> bool:
    """Run one input line; False to quit."""
    command, _, arg = line.strip().partition(" ")
    if command == "/quit":
        return False
    if command == "/status" and arg in _STATUSES:
        await client.send_status(_STATUSES[arg])
    elif command == "/history":
        history = await client.request_history(limit=int(arg) if arg.isdigit() else 20)
        for message in history.get("messages", []):
            print(render_chat(message), file=out)
    elif command == "/end":
        await client.end()
    elif command.startswith("/"):
        print(CHAT_HELP, file=out)
    elif line.strip():
        await client.send_message({"text": line})
    return True


async def chat(url: str, token: str, out: TextIO = sys.stdout) -> int:
    """Interactive chat on stdin/stdout until /quit, end of input or a final close."""
    client = ChatClient(url, token)
    await client.connect(CONNECT_TIMEOUT_S)
    print(f"* {client.session_id} as {client.user}. {CHAT_HELP}", file=out, flush=True)
    printer = asyncio.create_task(_print_events(client, out))
    lines = _stdin_lines()
    try:
        while True:
            read = asyncio.ensure_future(lines.get())
            await asyncio.wait({read, printer}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                break
            line = read.result()
            try:
                go_on = line is not None and await _chat_command(client, line, out)
            except (ClientError, asyncio.TimeoutError) as e:
                print(f"! {e}", file=out, flush=True)
                continue
            if not go_on:
                await _drain(client)
                break
    finally:
        await client.disconnect()
        await printer
    return 0 if client.close_code in (1000, 4410) else 1


async def inbox(url: str, token: str, out: TextIO = sys.stdout) -> int:
    """Print notifications as they come (acked as delivered) until interrupted."""
    client = NotificationsClient(url, token)
    try:
        welcome = await client.connect(CONNECT_TIMEOUT_S)
        print(
            f"* {welcome.get('pending')} pending, {welcome.get('unread')} unread",
            file=out,
            flush=True,
        )
        async for event in client.events():
            _show(render_notification(event), out)
    finally:
        await client.disconnect()
    return 0 if client.close_code == 1000 else 1


async def watch(
    url: str, token: str, stream: str, key_id: str | None, out: TextIO = sys.stdout
) -> int:
    """Show a stream's latest metrics, redrawn in place, until interrupted."""
    client = AnalyticsClient(url, token)
    for kind in ("state", "close"):
        client.on(kind, lambda e: _show(render_state(e), out))
    try:
        await client.connect(CONNECT_TIMEOUT_S)
        async for frame in await client.subscribe(stream, key_id):
            out.write(render_metrics(frame))
            out.flush()
    finally:
        await client.disconnect()
    return 0 if client.close_code == 1000 else 1

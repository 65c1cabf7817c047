"""The Confide Python SDK: asyncio clients for chat, notifications and analytics.

See docs/sdk.md. Every client reconnects by itself (full-jitter backoff) and delivers events
through callbacks (`on`) and an async iterator (`events`, `next_event`).
"""

from confide.client.analytics import AnalyticsClient, Subscription
from confide.client.chat import ChatClient
from confide.client.connection import Connection, State
from confide.client.errors import (
    ClientClosed,
    ClientError,
    ConnectError,
    ConnectionLost,
    ServerError,
)
from confide.client.events import Event
from confide.client.notifications import NotificationsClient
from confide.client.options import ConnectionOptions, backoff_delay

__all__ = [
    "AnalyticsClient",
    "ChatClient",
    "ClientClosed",
    "ClientError",
    "ConnectError",
    "Connection",
    "ConnectionLost",
    "ConnectionOptions",
    "Event",
    "NotificationsClient",
    "ServerError",
    "State",
    "Subscription",
    "backoff_delay",
]

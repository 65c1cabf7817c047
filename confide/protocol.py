"""Wire models of protocol v1: every frame a client sends or the server emits.

Client frames are one discriminated union on `type`; `parse_client_frame` turns raw text
into a model or raises `InvalidMessage` / `UnknownType` (never echoing the frame).
Server frames are models too; `Frame.dump()` gives the JSON-ready dict.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from confide import strictjson
from confide.errors import InvalidMessage, UnknownType

SUBPROTOCOL = "confide.v1"

Endpoint = Literal["chat", "notifications", "analytics"]
Role = Literal["client", "therapist", "admin", "service"]
Status = Literal["online", "typing", "idle", "away"]
AckState = Literal["delivered", "read"]
FrameId = str | int


class Frame(BaseModel):
    """Base of every frame: unknown fields are ignored, models are immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    def dump(self) -> dict[str, Any]:
        """The frame as a JSON-ready dict, without top-level fields that are unset (None)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}

    def to_json(self) -> str:
        return strictjson.dumps(self.dump())


# --------------------------------------------------------------------------- client → server


class Resume(Frame):
    offset: int = Field(ge=0)
    epoch: str = Field(max_length=64)


class Hello(Frame):
    type: Literal["hello"]
    token: str | None = Field(default=None, max_length=8192)
    resume: Resume | None = None
    client: str | None = Field(default=None, max_length=128)


class Ping(Frame):
    type: Literal["ping"]
    id: FrameId | None = None


class EncryptedBody(Frame):
    model_config = ConfigDict(extra="allow", frozen=True)
    ciphertext: str
    alg: str = Field(max_length=64)
    key_id: str = Field(max_length=128)


class Features(Frame):
    key_id: str = Field(max_length=128)
    ciphertext: str


class ChatMessage(Frame):
    type: Literal["message"]
    id: str = Field(min_length=1, max_length=128)
    body: dict[str, Any]
    encrypted: bool = False

    @model_validator(mode="after")
    def _check_body(self) -> ChatMessage:
        if self.encrypted:
            EncryptedBody.model_validate(self.body)
        if "features" in self.body:
            Features.model_validate(self.body["features"])
        return self


class StatusUpdate(Frame):
    type: Literal["status"]
    status: Status


class HistoryRequest(Frame):
    type: Literal["history"]
    before: int | None = Field(default=None, ge=1)
    limit: int = Field(default=50, ge=1, le=500)


class End(Frame):
    type: Literal["end"]


class NotificationAck(Frame):
    type: Literal["ack"]
    id: str = Field(min_length=1, max_length=64)
    state: AckState


class ListRequest(Frame):
    type: Literal["list"]
    state: Literal["unread", "all"] = "unread"
    limit: int = Field(default=50, ge=1, le=500)
    before: str | None = Field(default=None, max_length=64)


class Subscribe(Frame):
    type: Literal["subscribe"]
    stream: str = Field(min_length=1, max_length=200)
    key_id: str | None = Field(default=None, max_length=128)


class Unsubscribe(Frame):
    type: Literal["unsubscribe"]
    stream: str = Field(min_length=1, max_length=200)
    key_id: str | None = Field(default=None, max_length=128)


class Submit(Frame):
    type: Literal["submit"]
    id: str = Field(min_length=1, max_length=128)
    stream: str = Field(min_length=1, max_length=200)
    key_id: str = Field(max_length=128)
    ciphertext: str


ClientFrame = Annotated[
    Hello
    | Ping
    | ChatMessage
    | StatusUpdate
    | HistoryRequest
    | End
    | NotificationAck
    | ListRequest
    | Subscribe
    | Unsubscribe
    | Submit,
    Field(discriminator="type"),
]

_ENDPOINT_TYPES: dict[str, dict[str, type[Frame]]] = {
    "chat": {
        "ping": Ping,
        "message": ChatMessage,
        "status": StatusUpdate,
        "history": HistoryRequest,
        "end": End,
    },
    "notifications": {"ping": Ping, "ack": NotificationAck, "list": ListRequest},
    "analytics": {
        "ping": Ping,
        "subscribe": Subscribe,
        "unsubscribe": Unsubscribe,
        "submit": Submit,
    },
}

_client_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def _load_object(text: str | bytes) -> dict[str, Any]:
    try:
        # Strict: NaN, Infinity and numbers that overflow a double are refused.
        data = strictjson.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        raise InvalidMessage("frame is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise InvalidMessage("frame must be a JSON object")
    if not isinstance(data.get("type"), str):
        raise InvalidMessage("frame needs a string field 'type'", frame_id=frame_id(data))
    return data


def frame_id(data: dict[str, Any]) -> FrameId | None:
    """The frame's `id`, to carry on its error frame (strings and integers only)."""
    value = data.get("id")
    if isinstance(value, str) and len(value) <= 128:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _describe(error: ValidationError) -> str:
    """Which fields are wrong, never their values."""
    fields = sorted({".".join(str(p) for p in e["loc"]) or "frame" for e in error.errors()})
    return "invalid field(s): " + ", ".join(fields[:5])


def parse_hello(text: str | bytes) -> Hello | None:
    """The first frame: a `Hello`, or None when it is anything else (close 4400)."""
    try:
        data = _load_object(text)
    except InvalidMessage:
        return None
    if data["type"] != "hello":
        return None
    try:
        return Hello.model_validate(data)
    except ValidationError:
        return None


def parse_client_frame(text: str | bytes, endpoint: Endpoint) -> Frame:
    """Parse a frame after the handshake, for one endpoint."""
    data = _load_object(text)
    model = _ENDPOINT_TYPES[endpoint].get(data["type"])
    if model is None:
        raise UnknownType(f"unknown frame type for {endpoint}", frame_id=frame_id(data))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidMessage(_describe(e), frame_id=frame_id(data)) from None


# --------------------------------------------------------------------------- server → client


class Member(Frame):
    user: str
    role: Role
    status: Status


class Welcome(Frame):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["welcome"] = "welcome"
    user: str
    role: Role
    heartbeat_s: float


class ChatWelcome(Welcome):
    """`welcome` on `/ws/chat/{session_id}`: the log's position and the members."""

    session_id: str
    epoch: str
    offset: int
    members: list[Member]
    recovered: bool


class InboxWelcome(Welcome):
    """`welcome` on `/ws/notifications`: how many notifications wait."""

    pending: int
    unread: int


class Pong(Frame):
    type: Literal["pong"] = "pong"
    id: FrameId | None = None


class Ack(Frame):
    type: Literal["ack"] = "ack"
    id: str
    offset: int | None = None


class MessageEvent(Frame):
    type: Literal["message"] = "message"
    session_id: str
    offset: int
    epoch: str
    id: str
    sender: str
    ts: float
    body: dict[str, Any]
    encrypted: bool


class StatusEvent(Frame):
    type: Literal["status"] = "status"
    user: str
    status: Status
    ts: float


class Presence(Frame):
    type: Literal["presence"] = "presence"
    event: Literal["join", "leave"]
    user: str
    members: list[Member]


class History(Frame):
    type: Literal["history"] = "history"
    messages: list[MessageEvent]
    complete: bool


class Ended(Frame):
    type: Literal["ended"] = "ended"
    by: str


class Error(Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    id: FrameId | None = None


class Notification(Frame):
    type: Literal["notification"] = "notification"
    id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    state: str | None = None


class Notifications(Frame):
    type: Literal["notifications"] = "notifications"
    items: list[Notification]


class Subscribed(Frame):
    type: Literal["subscribed"] = "subscribed"
    stream: str
    key_id: str | None = None


class Unsubscribed(Frame):
    type: Literal["unsubscribed"] = "unsubscribed"
    stream: str
    key_id: str | None = None


class Metrics(Frame):
    type: Literal["metrics"] = "metrics"
    stream: str
    ts: float
    data: dict[str, Any]


class Aggregate(Frame):
    type: Literal["aggregate"] = "aggregate"
    stream: str
    key_id: str
    count: int
    sum: str
    mean: str | None = None
    ts: float


class Insight(Frame):
    type: Literal["insight"] = "insight"
    for_offset: int
    key_id: str
    model: str
    ciphertext: str


ServerFrame = Annotated[
    Welcome
    | Pong
    | Ack
    | MessageEvent
    | StatusEvent
    | Presence
    | History
    | Ended
    | Error
    | Notification
    | Notifications
    | Subscribed
    | Unsubscribed
    | Metrics
    | Aggregate
    | Insight,
    Field(discriminator="type"),
]

server_adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def parse_server_frame(data: dict[str, Any]) -> ServerFrame:
    """Used by the SDK: a server frame as its model (raises ValidationError)."""
    return server_adapter.validate_python(data)


# --------------------------------------------------------- REST: audit trail (1.1)


class AuditQuery(BaseModel):
    """`GET /api/audit?user=&session=&since=&limit=` (admins only). Query strings are
    parsed leniently (`limit=50`), then bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    #: Events of this actor.
    user: str | None = Field(default=None, min_length=1, max_length=128)
    #: Events whose target is this chat session.
    session: str | None = Field(default=None, min_length=1, max_length=128)
    #: Events at or after this time (Unix seconds).
    since: float | None = Field(default=None, allow_inf_nan=False)
    limit: int = Field(default=100, ge=1, le=1000)


class AuditEvent(Frame):
    """One access event: no bodies, tokens or ciphertexts, only who did what to which."""

    ts: float
    actor: str
    action: str
    target: str
    #: `ok`, `denied` (authenticated but not allowed) or `unauthenticated`.
    outcome: str


class AuditEvents(Frame):
    """The answer of `GET /api/audit`: newest first."""

    events: list[AuditEvent]

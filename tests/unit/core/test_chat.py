"""The chat session entity: membership, presence, resume, ordering, idempotency, ending."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import confide.chat as chat_module
from confide.auth import Principal
from confide.chat import ChatSession, ResumePlan
from confide.errors import CloseCode, CloseConnection, Forbidden
from confide.protocol import ChatMessage, Resume

Make = Callable[..., Principal]


def msg(msg_id: str, body: dict[str, object] | None = None, encrypted: bool = False) -> ChatMessage:
    return ChatMessage(type="message", id=msg_id, body=body or {"t": msg_id},
                       encrypted=encrypted)


def session(last: int = 0, first: int | None = None, ended: bool = False) -> ChatSession:
    from confide.store.base import SessionRecord

    record = SessionRecord(
        "s1", "epoch-1", 0.0, last_offset=last,
        first_offset=first if first is not None else 1,
        ended_at=5.0 if ended else None, config={"model": "m"},
    )
    return ChatSession.load(record)


# ------------------------------------------------------------------ load


def test_load_from_record() -> None:
    s = session(last=30, first=11, ended=True)
    assert (s.session_id, s.epoch, s.topic) == ("s1", "epoch-1", "chat:s1")
    assert (s.last_offset, s.first_offset, s.ended) == (30, 11, True)
    assert s.config == {"model": "m"}
    assert s.connection_count == 0


# ------------------------------------------------------------------ join / leave / presence


def test_first_join_welcome_and_presence(principal: Make) -> None:
    s = session(last=7)
    welcome, plan, events = s.join("c1", principal("alice"), None)
    assert welcome == {
        "session_id": "s1", "epoch": "epoch-1", "offset": 7,
        "members": [{"user": "alice", "role": "client", "status": "online"}],
        "recovered": True,
    }
    assert plan == ResumePlan(True, None, 7)
    assert len(events) == 1
    e = events[0]
    assert e.topic == "chat:s1"
    assert e.frame == {"type": "presence", "event": "join", "user": "alice",
                       "members": welcome["members"]}
    assert e.exclude_user is None and e.close_code is None


def test_presence_only_on_first_and_last_connection_of_a_user(principal: Make) -> None:
    s = session()
    alice = principal("alice")
    assert len(s.join("c1", alice, None)[2]) == 1
    welcome, _, events = s.join("c2", alice, None)  # second tab
    assert events == []
    assert welcome["members"] == [{"user": "alice", "role": "client", "status": "online"}]
    assert s.connection_count == 2
    assert s.leave("c1") == []  # still online through c2
    (leave,) = s.leave("c2")
    assert leave.frame == {"type": "presence", "event": "leave", "user": "alice", "members": []}
    assert s.connection_count == 0


def test_members_lists_each_user_once(principal: Make) -> None:
    s = session()
    s.join("c1", principal("alice"), None)
    s.join("c2", principal("tom", role="therapist"), None)
    s.join("c3", principal("alice"), None)
    _, _, events = s.join("c4", principal("bob"), None)
    members = sorted(s.members(), key=lambda m: m["user"])
    assert members == [
        {"user": "alice", "role": "client", "status": "online"},
        {"user": "bob", "role": "client", "status": "online"},
        {"user": "tom", "role": "therapist", "status": "online"},
    ]
    assert events[0].frame["members"] == s.members()  # the joiner is listed
    (leave,) = s.leave("c2")
    assert {m["user"] for m in leave.frame["members"]} == {"alice", "bob"}  # the leaver is not


def test_quiet_join_has_no_presence(principal: Make) -> None:
    s = session()
    _, _, events = s.join("c1", principal("alice"), None, quiet=True)
    assert events == []
    assert s.connection_count == 1


def test_leave_unknown_connection(principal: Make) -> None:
    s = session()
    s.join("c1", principal("alice"), None)
    assert s.leave("nope") == []
    assert s.leave("c1") != []
    assert s.leave("c1") == []  # twice


def test_non_member_join_closes_4403(principal: Make) -> None:
    s = session()
    with pytest.raises(CloseConnection) as err:
        s.join("c1", principal("mallory", sessions=("s2",)), None)
    assert err.value.close_code == CloseCode.FORBIDDEN == 4403
    assert s.connection_count == 0


def test_wildcard_member_may_join(principal: Make) -> None:
    s = session()
    welcome, _, _ = s.join("c1", principal("admin", role="admin", sessions=("*",)), None)
    assert welcome["members"][0]["role"] == "admin"


def test_ended_session_refuses_join_4410(principal: Make) -> None:
    s = session(ended=True)
    with pytest.raises(CloseConnection) as err:
        s.join("c1", principal("alice"), None)
    assert err.value.close_code == CloseCode.SESSION_ENDED == 4410
    assert s.connection_count == 0


# ------------------------------------------------------------------ resume plans


@pytest.mark.parametrize(
    ("resume", "plan"),
    [
        (None, ResumePlan(True, None, 50)),  # no resume: nothing replayed, recovered
        (Resume(offset=50, epoch="epoch-1"), ResumePlan(True, 50, 50)),  # up to date
        (Resume(offset=45, epoch="epoch-1"), ResumePlan(True, 45, 50)),  # replay 46..50
        (Resume(offset=20, epoch="epoch-1"), ResumePlan(True, 20, 50)),  # first retained is 21
        (Resume(offset=19, epoch="epoch-1"), ResumePlan(False, None, 50)),  # 20 is gone
        (Resume(offset=0, epoch="epoch-1"), ResumePlan(False, None, 50)),
        (Resume(offset=51, epoch="epoch-1"), ResumePlan(False, None, 50)),  # beyond last
        (Resume(offset=45, epoch="epoch-0"), ResumePlan(False, None, 50)),  # foreign epoch
    ],
)
def test_resume_plans(principal: Make, resume: Resume | None, plan: ResumePlan) -> None:
    s = session(last=50, first=21)
    welcome, got, _ = s.join("c1", principal(), resume)
    assert got == plan
    assert welcome["recovered"] is plan.recovered
    assert welcome["offset"] == 50


def test_resume_on_empty_session(principal: Make) -> None:
    s = session()
    assert s.plan_resume(Resume(offset=0, epoch="epoch-1")) == ResumePlan(True, 0, 0)
    assert s.plan_resume(Resume(offset=1, epoch="epoch-1")).recovered is False


def test_resume_after_trimming(principal: Make) -> None:
    s = session(last=10)
    alice = principal()
    s.join("c1", alice, None)
    for i in range(10):
        s.committed(s.accept("c1", alice, msg(f"m{i}"), float(i)).offset)
    s.trimmed(retention=5)  # offsets 16..20 retained
    assert s.first_offset == 16
    assert s.plan_resume(Resume(offset=15, epoch="epoch-1")) == ResumePlan(True, 15, 20)
    assert s.plan_resume(Resume(offset=14, epoch="epoch-1")).recovered is False
    s.trimmed(retention=100)  # never moves back
    assert s.first_offset == 16


# ------------------------------------------------------------------ messages


def test_accept_gives_consecutive_offsets(principal: Make) -> None:
    s = session()
    alice, bob = principal("alice"), principal("bob")
    s.join("c1", alice, None)
    s.join("c2", bob, None)
    stored = [
        s.accept("c1", alice, msg("a1"), 1.0),
        s.accept("c2", bob, msg("b1", encrypted=True,
                                body={"ciphertext": "QQ==", "alg": "x", "key_id": "k"}), 2.0),
        s.accept("c1", alice, msg("a2"), 3.0),
    ]
    assert [m.offset for m in stored] == [1, 2, 3]
    assert s.last_offset == 3
    m = stored[1]
    assert (m.session_id, m.epoch, m.id, m.sender, m.ts, m.encrypted) == (
        "s1", "epoch-1", "b1", "bob", 2.0, True)
    assert m.body == {"ciphertext": "QQ==", "alg": "x", "key_id": "k"}


def test_accept_continues_after_loaded_offset(principal: Make) -> None:
    s = session(last=41)
    s.join("c1", principal(), None)
    assert s.accept("c1", principal(), msg("x"), 0.0).offset == 42


def test_published_event_is_the_message_frame_to_everyone(principal: Make) -> None:
    s = session()
    alice = principal()
    s.join("c1", alice, None)
    stored = s.accept("c1", alice, msg("a1"), 1.0)
    event = s.published(stored)
    assert event.topic == "chat:s1"
    assert event.frame == stored.frame()
    assert event.for_connection("alice", "client")  # sender included
    assert event.for_connection("tom", "therapist")


def test_sender_is_the_joined_user(principal: Make) -> None:
    s = session()
    s.join("c1", principal("alice"), None)
    assert s.accept("c1", principal("alice"), msg("m"), 0.0).sender == "alice"


def test_idempotency_cache(principal: Make) -> None:
    s = session()
    alice, bob = principal("alice"), principal("bob")
    s.join("c1", alice, None)
    s.join("c2", bob, None)
    assert s.known_offset("alice", "m1") is None
    s.accept("c1", alice, msg("m1"), 0.0)
    assert s.known_offset("alice", "m1") == 1
    assert s.known_offset("bob", "m1") is None  # ids are per sender
    s.remember("carol", "x", 99)
    assert s.known_offset("carol", "x") == 99


def test_idempotency_cache_is_bounded_lru(
    principal: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_module, "IDEMPOTENCY_CACHE", 3)
    s = session()
    for i in range(3):
        s.remember("a", f"m{i}", i)
    s.remember("a", "m0", 0)  # refreshed: now the newest
    s.remember("a", "m3", 3)
    assert s.known_offset("a", "m1") is None  # the oldest was evicted
    assert [s.known_offset("a", f"m{i}") for i in (0, 2, 3)] == [0, 2, 3]


def test_reloaded_entity_reattaches_a_known_member(principal: Make) -> None:
    """A host restart forgets connections; a member's frame re-attaches it quietly."""
    s = session(last=5)
    alice = principal("alice")
    stored = s.accept("c-old", alice, msg("m"), 1.0)
    assert stored.offset == 6 and stored.sender == "alice"
    assert s.connection_count == 1
    assert s.members() == [{"user": "alice", "role": "client", "status": "online"}]
    assert s.leave("c-old")[0].frame["event"] == "leave"


def test_reloaded_entity_refuses_a_non_member(principal: Make) -> None:
    s = session(last=5)
    mallory = principal("mallory", sessions=("other",))
    with pytest.raises(Forbidden):
        s.accept("c-x", mallory, msg("m"), 1.0)
    with pytest.raises(Forbidden):
        s.set_status("c-x", mallory, "typing", 1.0)
    with pytest.raises(Forbidden):
        s.end("c-x", principal("mallory", role="therapist", sessions=("other",)))
    assert s.last_offset == 5
    assert s.connection_count == 0


# ------------------------------------------------------------------ status


def test_status_event_excludes_sender(principal: Make) -> None:
    s = session()
    alice = principal("alice")
    s.join("c1", alice, None)
    s.join("c2", alice, None)
    s.join("c3", principal("bob"), None)
    (event,) = s.set_status("c1", alice, "typing", 12.5)
    assert event.frame == {"type": "status", "user": "alice", "status": "typing", "ts": 12.5}
    assert event.exclude_user == "alice"
    assert not event.for_connection("alice", "client")
    assert event.for_connection("bob", "client")
    assert {m["user"]: m["status"] for m in s.members()} == {"alice": "typing", "bob": "online"}


# ------------------------------------------------------------------ end


def test_only_a_therapist_may_end(principal: Make) -> None:
    s = session()
    alice = principal("alice")
    admin = principal("root", role="admin", sessions=("*",))
    s.join("c1", alice, None)
    s.join("c2", admin, None)
    for conn, who in (("c1", alice), ("c2", admin)):
        with pytest.raises(Forbidden):
            s.end(conn, who)
    assert not s.ended


def test_therapist_ends_session(principal: Make) -> None:
    s = session()
    tom, alice = principal("tom", role="therapist"), principal("alice")
    s.join("c1", tom, None)
    s.join("c2", alice, None)
    (event,) = s.end("c1", tom)
    assert s.ended
    assert event.frame == {"type": "ended", "by": "tom"}
    assert event.close_code == CloseCode.SESSION_ENDED == 4410
    assert event.for_connection("alice", "client") and event.for_connection("tom", "therapist")
    with pytest.raises(CloseConnection) as err:
        s.join("c3", principal("bob"), None)
    assert err.value.close_code == 4410
    with pytest.raises(CloseConnection) as err:
        s.accept("c2", alice, msg("late"), 9.0)
    assert err.value.close_code == 4410
    assert s.last_offset == 0


# ------------------------------------------------------------------ history


@pytest.mark.parametrize(
    ("before", "bound"), [(None, 11), (1, 1), (5, 5), (11, 11), (12, 11), (10_000, 11)]
)
def test_history_bounds(before: int | None, bound: int) -> None:
    assert session(last=10).history_bounds(before) == bound


def test_joins_and_resumes_see_only_committed_offsets(principal: Make) -> None:
    s = session(last=3)
    alice = principal()
    s.join("c1", alice, None)
    stored = s.accept("c1", alice, msg("in-flight"), 1.0)  # offset 4, not yet durable
    welcome, plan, _ = s.join("c2", principal("bob"), None)
    assert welcome["offset"] == 3 and plan.upto == 3
    assert s.plan_resume(Resume(offset=4, epoch="epoch-1")).recovered is False
    s.committed(stored.offset)
    welcome, plan, _ = s.join("c3", principal("cat"), Resume(offset=3, epoch="epoch-1"))
    assert welcome["offset"] == 4 and plan == ResumePlan(True, 3, 4)


def test_connections_of_a_dead_replica_are_dropped(principal: Make) -> None:
    s = session()
    s.join("gw1:a", principal("alice"), None)
    s.join("gw2:b", principal("bob"), None)
    s.join("gw1:c", principal("bob"), None)
    events = s.drop_connections("gw1:")
    assert [(e.frame["event"], e.frame["user"]) for e in events] == [("leave", "alice")]
    assert [m["user"] for m in s.members()] == ["bob"]
    assert s.connection_count == 1


# ------------------------------------------------------------------ idempotency decision


def test_a_cached_id_is_a_retry_and_needs_no_lookup() -> None:
    s = session()
    s.remember("alice", "m1", 4)
    assert not s.needs_lookup("alice", "m1")
    assert s.earlier_offset("alice", "m1") == 4
    assert s.earlier_offset("bob", "m1") is None  # ids are per sender


def test_a_store_hit_is_remembered_and_a_cached_twin_wins_over_it() -> None:
    s = session(last=10)
    s.ids_complete = False
    assert s.needs_lookup("alice", "old")
    assert s.earlier_offset("alice", "old", stored=3) == 3
    assert not s.needs_lookup("alice", "old")  # cached now
    s.remember("alice", "raced", 9)  # accepted while the store was being asked
    assert s.earlier_offset("alice", "raced", stored=None) == 9


def test_a_complete_cache_answers_new_ids_without_the_store() -> None:
    s = session()
    s.preload_ids([])
    assert s.ids_complete and not s.needs_lookup("alice", "new")
    assert s.earlier_offset("alice", "new") is None

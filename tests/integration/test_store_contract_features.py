"""The ChatStore contract of issue 12's features, run against every adapter as
test_store_contract.py runs the rest (its fixtures: SQLite on a file, DynamoDB over HTTP on a
moto server): edits, deletes and reactions of messages, unread counts, room records and public
rooms, per-user room state. Then what is particular to each adapter: DynamoDB's items and
requests (no Scan, a conditional write per change), SQLite's migration of an older file."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_store_contract import (
    _operations_sent,
    connect,
    dynamodb_tables,
    error,
    message,
    post,
    run_concurrently,
    scripted_store,
    store,
    table_names,
    unique_tables,
)

from wschat.storage import ChatStore, StoreUnavailable, TableNames
from wschat.storage.base import RoomInfo, RoomUser, StoredMessage, direct_room
from wschat.storage.dynamodb import DynamoDBStore, ensure_tables
from wschat.storage.dynamodb_tables import PUBLIC_INDEX
from wschat.storage.sqlite import SqliteStore
from wschat.storage.sqlite_schema import MIGRATION_2, SCHEMA, SCHEMA_VERSION

__all__ = ["dynamodb_tables", "store"]  # fixtures, shared with the rest of the contract

pytestmark = pytest.mark.integration

TS = 1_732_498_512_345
LATER = TS + 60_000
THUMBS, PARTY, HEART, SMILE = "👍", "🎉", "❤️", "🙂"


def say(store: ChatStore, room: str, text: str, *, sender: str = "alice") -> StoredMessage:
    return store.append_message(message(room, text, sender=sender))


def react(
    store: ChatStore, stored: StoredMessage, user: str, emoji: str, *, on: bool = True, cap: int = 3
) -> StoredMessage | None:
    return store.react(stored.room, stored.id, user=user, emoji=emoji, on=on, max_emojis=cap)


# --- the contract: edits --------------------------------------------------------------------


def test_a_new_message_is_unedited_undeleted_and_unreacted(store: ChatStore) -> None:
    stored = say(store, "lobby", "hi")

    assert (stored.edited_at, stored.deleted, stored.reactions) == (None, False, {})
    assert store.get_message("lobby", stored.id) == stored
    assert store.message_history("lobby").messages == [stored]


def test_get_message_of_a_missing_or_expired_message_is_none(store: ChatStore) -> None:
    stored = say(store, "lobby", "hi")
    expired = store.append_message(message("lobby", "old", expires_in=-10))

    assert store.get_message("lobby", "01ZZZZZZZZZZZZZZZZZZZZZZZZ") is None
    assert store.get_message("random", stored.id) is None
    assert store.get_message("lobby", expired.id) is None


def test_the_author_edits_their_own_message(store: ChatStore) -> None:
    stored = say(store, "lobby", "helo")
    say(store, "lobby", "next")

    edited = store.edit_message("lobby", stored.id, author="alice", text="hello", edited_at=LATER)

    assert edited == StoredMessage("lobby", stored.id, "alice", "hello", TS, edited_at=LATER)
    assert store.get_message("lobby", stored.id) == edited
    assert [m.text for m in store.message_history("lobby").messages] == ["hello", "next"]
    again = store.edit_message(
        "lobby", stored.id, author="alice", text="hello!", edited_at=LATER + 1
    )
    assert again is not None and (again.text, again.edited_at) == ("hello!", LATER + 1)


def test_nobody_else_edits_a_message(store: ChatStore) -> None:
    stored = say(store, "lobby", "mine")

    assert (
        store.edit_message("lobby", stored.id, author="bob", text="yours", edited_at=LATER) is None
    )

    assert store.get_message("lobby", stored.id) == stored


def test_editing_a_missing_deleted_or_expired_message_is_none(store: ChatStore) -> None:
    deleted = say(store, "lobby", "gone")
    store.delete_message("lobby", deleted.id, deleted_at=LATER, author="alice")
    expired = store.append_message(message("lobby", "old", expires_in=-10))

    for message_id in (deleted.id, expired.id, "01ZZZZZZZZZZZZZZZZZZZZZZZZ"):
        edit = store.edit_message("lobby", message_id, author="alice", text="x", edited_at=LATER)
        assert edit is None, message_id
    tombstone = store.get_message("lobby", deleted.id)
    assert tombstone is not None and tombstone.text == "" and tombstone.edited_at is None


def test_direct_messages_are_edited_and_deleted_by_their_key(store: ChatStore) -> None:
    key = direct_room("alice", "bob")
    sent = store.append_message(message(key, "hi bob", sender="alice", to="bob"))

    edited = store.edit_message(key, sent.id, author="alice", text="hi, bob", edited_at=LATER)
    assert edited is not None and (edited.text, edited.to) == ("hi, bob", "bob")
    assert store.delete_message(key, sent.id, deleted_at=LATER, author="bob") is None
    deleted = store.delete_message(key, sent.id, deleted_at=LATER, author="alice")

    assert deleted is not None and deleted.deleted and deleted.to == "bob"


# --- the contract: deletes ------------------------------------------------------------------


def test_deleting_leaves_a_tombstone_in_its_place(store: ChatStore) -> None:
    first, middle, last = (say(store, "lobby", text) for text in ("one", "two", "three"))
    react(store, middle, "bob", THUMBS)
    store.edit_message("lobby", middle.id, author="alice", text="TWO", edited_at=LATER)

    tombstone = store.delete_message("lobby", middle.id, deleted_at=LATER + 5, author="alice")

    assert tombstone == StoredMessage(
        "lobby", middle.id, "alice", "", TS, edited_at=LATER, deleted=True, reactions={}
    )
    assert store.get_message("lobby", middle.id) == tombstone
    history = store.message_history("lobby").messages
    assert [(m.id, m.text, m.deleted) for m in history] == [
        (first.id, "one", False),
        (middle.id, "", True),
        (last.id, "three", False),
    ]


def test_an_author_deletes_only_their_own_and_a_moderator_anyones(store: ChatStore) -> None:
    alices = say(store, "lobby", "alice's")
    bobs = say(store, "lobby", "bob's", sender="bob")

    assert store.delete_message("lobby", bobs.id, deleted_at=LATER, author="alice") is None
    assert store.get_message("lobby", bobs.id) == bobs
    own = store.delete_message("lobby", alices.id, deleted_at=LATER, author="alice")
    moderated = store.delete_message("lobby", bobs.id, deleted_at=LATER, author=None)

    assert own is not None and own.deleted and own.sender == "alice"
    assert moderated is not None and moderated.deleted and moderated.sender == "bob"


def test_deleting_a_deleted_missing_or_expired_message_is_none(store: ChatStore) -> None:
    stored = say(store, "lobby", "once")
    expired = store.append_message(message("lobby", "old", expires_in=-10))
    assert store.delete_message("lobby", stored.id, deleted_at=LATER, author=None) is not None

    assert store.delete_message("lobby", stored.id, deleted_at=LATER, author=None) is None
    assert store.delete_message("lobby", stored.id, deleted_at=LATER, author="alice") is None
    assert store.delete_message("lobby", expired.id, deleted_at=LATER, author=None) is None
    assert (
        store.delete_message("lobby", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", deleted_at=1, author=None)
        is None
    )


def test_of_racing_deletes_exactly_one_wins(store: ChatStore) -> None:
    stored = say(store, "lobby", "contested")

    results = run_concurrently(
        6, lambda n: store.delete_message("lobby", stored.id, deleted_at=LATER + n, author=None)
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].deleted
    assert store.get_message("lobby", stored.id) == winners[0]


def test_an_edit_racing_a_delete_never_brings_the_text_back(store: ChatStore) -> None:
    messages = [say(store, "lobby", f"m{n}") for n in range(4)]

    def work(n: int) -> None:
        for stored in messages:
            if n == 0:
                store.delete_message("lobby", stored.id, deleted_at=LATER, author="alice")
            else:
                store.edit_message(
                    "lobby", stored.id, author="alice", text=f"e{n}", edited_at=LATER
                )

    run_concurrently(4, work)

    for stored in messages:
        after = store.get_message("lobby", stored.id)
        assert after is not None and after.deleted and after.text == ""


# --- the contract: reactions ----------------------------------------------------------------


def test_reactions_are_users_by_emoji_sorted_one_per_user_per_emoji(store: ChatStore) -> None:
    stored = say(store, "lobby", "party?")

    react(store, stored, "carol", PARTY)
    react(store, stored, "alice", PARTY)
    react(store, stored, "bob", THUMBS)
    twice = react(store, stored, "alice", PARTY)

    expected = {PARTY: ("alice", "carol"), THUMBS: ("bob",)}
    assert twice is not None and twice.reactions == expected
    assert list(twice.reactions) == sorted(expected)
    assert store.get_message("lobby", stored.id) == twice
    assert store.message_history("lobby").messages == [twice]


def test_removing_a_reaction_and_the_last_one_of_an_emoji(store: ChatStore) -> None:
    stored = say(store, "lobby", "hm")
    react(store, stored, "alice", THUMBS)
    react(store, stored, "bob", THUMBS)
    react(store, stored, "bob", PARTY)

    one_less = react(store, stored, "alice", THUMBS, on=False)
    assert one_less is not None and one_less.reactions == {PARTY: ("bob",), THUMBS: ("bob",)}
    no_party = react(store, stored, "bob", PARTY, on=False)
    assert no_party is not None and no_party.reactions == {THUMBS: ("bob",)}
    none_left = react(store, stored, "bob", THUMBS, on=False)
    assert none_left is not None and none_left.reactions == {}
    assert store.get_message("lobby", stored.id) == none_left


def test_removing_a_reaction_that_is_not_there_changes_nothing(store: ChatStore) -> None:
    stored = say(store, "lobby", "hm")
    with_one = react(store, stored, "alice", THUMBS)

    assert react(store, stored, "bob", THUMBS, on=False) == with_one
    assert react(store, stored, "alice", PARTY, on=False) == with_one
    assert store.get_message("lobby", stored.id) == with_one


def test_a_new_emoji_past_the_cap_is_refused_existing_ones_still_take_users(
    store: ChatStore,
) -> None:
    stored = say(store, "lobby", "vote")
    for emoji in (THUMBS, PARTY, HEART):
        assert react(store, stored, "alice", emoji, cap=3) is not None

    assert react(store, stored, "bob", SMILE, cap=3) is None
    joined = react(store, stored, "bob", HEART, cap=3)
    assert joined is not None and joined.reactions[HEART] == ("alice", "bob")
    assert SMILE not in joined.reactions
    # The last reaction of an emoji gone, there is room for another.
    react(store, stored, "alice", THUMBS, on=False)
    freed = react(store, stored, "bob", SMILE, cap=3)
    assert freed is not None and set(freed.reactions) == {PARTY, HEART, SMILE}
    assert react(store, stored, "carol", THUMBS, cap=0) is None  # no new emoji at all


def test_reacting_to_a_missing_deleted_or_expired_message_is_none(store: ChatStore) -> None:
    deleted = say(store, "lobby", "gone")
    store.delete_message("lobby", deleted.id, deleted_at=LATER, author=None)
    expired = store.append_message(message("lobby", "old", expires_in=-10))
    missing = StoredMessage("lobby", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", "x", "", TS)

    for target in (deleted, expired, missing):
        assert react(store, target, "bob", THUMBS) is None
        assert react(store, target, "bob", THUMBS, on=False) is None
    tombstone = store.get_message("lobby", deleted.id)
    assert tombstone is not None and tombstone.reactions == {}


def test_concurrent_reactions_all_land_and_the_cap_holds(store: ChatStore) -> None:
    stored = say(store, "lobby", "everyone react")
    emojis = ["🅰", "🅱", "🅲", "🅳", "🅴", "🅵"]

    same = run_concurrently(6, lambda n: react(store, stored, f"user{n}", THUMBS, cap=3))
    assert all(result is not None for result in same)
    capped = run_concurrently(6, lambda n: react(store, stored, "zed", emojis[n], cap=3))

    after = store.get_message("lobby", stored.id)
    assert after is not None
    assert after.reactions[THUMBS] == tuple(f"user{n}" for n in range(6))
    assert len(after.reactions) == 3  # THUMBS and two of the six, whichever came first
    assert sum(result is not None for result in capped) == 2


def test_concurrent_toggles_leave_each_users_last_choice(store: ChatStore) -> None:
    stored = say(store, "lobby", "toggle")

    def toggle(n: int) -> None:
        for k in range(5):
            react(store, stored, f"user{n}", THUMBS, on=k % 2 == 0)  # on, off, ..., on

    run_concurrently(4, toggle)

    after = store.get_message("lobby", stored.id)
    assert after is not None and after.reactions == {THUMBS: ("user0", "user1", "user2", "user3")}


def test_a_delete_racing_reactions_leaves_none(store: ChatStore) -> None:
    stored = say(store, "lobby", "going")
    react(store, stored, "alice", THUMBS)

    def work(n: int) -> None:
        if n == 0:
            store.delete_message("lobby", stored.id, deleted_at=LATER, author=None)
        else:
            for emoji in (PARTY, HEART, THUMBS):
                react(store, stored, f"user{n}", emoji, cap=10)

    run_concurrently(4, work)
    # Reactions that were refused, or landed before the delete, are all gone now.
    for n in range(1, 4):
        assert react(store, stored, f"user{n}", SMILE) is None

    after = store.get_message("lobby", stored.id)
    assert after is not None and after.deleted and after.reactions == {}


# --- the contract: unread counts ------------------------------------------------------------


def test_unread_count_counts_live_messages_after_the_mark_up_to_the_limit(
    store: ChatStore,
) -> None:
    ids = post(store, "lobby", *(f"m{n}" for n in range(8)))
    store.append_message(message("lobby", "expired", expires_in=-10))
    store.delete_message("lobby", ids[6], deleted_at=LATER, author=None)
    post(store, "random", "elsewhere")

    assert store.unread_count("lobby", after=ids[2], limit=100) == 4  # m3 m4 m5 m7
    assert store.unread_count("lobby", after=ids[2], limit=3) == 3
    assert store.unread_count("lobby", after=None, limit=100) == 7
    assert store.unread_count("lobby", after=ids[-1], limit=100) == 0
    assert store.unread_count("lobby", after=ids[2], limit=0) == 0
    assert store.unread_count("nowhere", after=None, limit=10) == 0


# --- the contract: rooms --------------------------------------------------------------------


def test_a_created_room_has_its_owner_topic_and_visibility(store: ChatStore) -> None:
    assert store.get_room("general") is None

    assert store.create_room("general", owner="alice", topic="hi", private=False, created_at=TS)

    assert store.get_room("general") == RoomInfo("general", "alice", "hi", False, TS)
    assert store.create_room("secret", owner="bob", topic="", private=True, created_at=LATER)
    assert store.get_room("secret") == RoomInfo("secret", "bob", "", True, LATER)


def test_creating_a_room_that_has_an_owner_changes_nothing(store: ChatStore) -> None:
    store.create_room("general", owner="alice", topic="hi", private=False, created_at=TS)

    again = store.create_room("general", owner="bob", topic="mine", private=True, created_at=LATER)

    assert again is False
    assert store.get_room("general") == RoomInfo("general", "alice", "hi", False, TS)


def test_a_room_with_messages_and_no_owner_can_be_created_and_keeps_numbering(
    store: ChatStore,
) -> None:
    before = post(store, "lobby", "old-0", "old-1")
    assert store.get_room("lobby") is None

    assert store.create_room(
        "lobby", owner="alice", topic="the lobby", private=False, created_at=TS
    )
    after = post(store, "lobby", "new-0")

    assert before[-1] < after[0]
    assert store.get_room("lobby") == RoomInfo("lobby", "alice", "the lobby", False, TS)
    assert [m.text for m in store.message_history("lobby").messages] == ["old-0", "old-1", "new-0"]


def test_a_room_created_before_its_first_message_numbers_from_scratch(store: ChatStore) -> None:
    store.create_room("fresh", owner="alice", topic="", private=False, created_at=TS)

    ids = post(store, "fresh", "one", "two")

    assert ids[0] < ids[1]
    assert store.get_room("fresh") == RoomInfo("fresh", "alice", "", False, TS)


def test_of_racing_creators_exactly_one_owns_the_room(store: ChatStore) -> None:
    results = run_concurrently(
        6,
        lambda n: store.create_room(
            "contested", owner=f"user{n}", topic=f"t{n}", private=False, created_at=TS + n
        ),
    )

    assert results.count(True) == 1
    winner = results.index(True)
    assert store.get_room("contested") == RoomInfo(
        "contested", f"user{winner}", f"t{winner}", False, TS + winner
    )


def test_set_topic_changes_a_created_rooms_topic_only(store: ChatStore) -> None:
    post(store, "uncreated", "hi")
    store.create_room("general", owner="alice", topic="old", private=False, created_at=TS)

    assert store.set_topic("general", "new") is True
    assert store.set_topic("uncreated", "x") is False
    assert store.set_topic("nowhere", "x") is False

    assert store.get_room("general") == RoomInfo("general", "alice", "new", False, TS)
    assert store.get_room("uncreated") is None and store.get_room("nowhere") is None


def test_messages_racing_room_changes_lose_neither(store: ChatStore) -> None:
    lock = threading.Lock()
    stored: list[str] = []

    def work(n: int) -> None:
        if n == 0:
            store.create_room("busy", owner="alice", topic="t0", private=False, created_at=TS)
            for k in range(1, 6):
                store.set_topic("busy", f"t{k}")
            return
        for k in range(5):
            message_id = store.append_message(message("busy", f"{n}-{k}")).id
            with lock:
                stored.append(message_id)

    run_concurrently(4, work)

    assert store.get_room("busy") == RoomInfo("busy", "alice", "t5", False, TS)
    history = store.message_history("busy", limit=100).messages
    assert sorted(m.id for m in history) == sorted(stored) and len(set(stored)) == 15


def test_public_rooms_lists_created_public_rooms_in_name_order(store: ChatStore) -> None:
    names = [f"room-{n:02d}" for n in range(12)]
    for n, name in enumerate(reversed(names)):
        store.create_room(name, owner="alice", topic=name, private=False, created_at=TS + n)
    store.create_room("room-05x", owner="bob", topic="", private=True, created_at=TS)
    post(store, "room-00a", "messages, but never created")

    pages: list[list[str]] = []
    after: str | None = None
    while page := store.public_rooms(after=after, limit=5):
        pages.append([info.room for info in page])
        after = page[-1].room

    assert pages == [names[:5], names[5:10], names[10:]]
    first = store.public_rooms(after=None, limit=1)
    assert first == [RoomInfo("room-00", "alice", "room-00", False, TS + 11)]
    assert store.public_rooms(after=names[-1], limit=5) == []
    assert store.public_rooms(after=None, limit=0) == []


def test_public_rooms_shows_a_new_topic(store: ChatStore) -> None:
    store.create_room("general", owner="alice", topic="old", private=False, created_at=TS)
    store.set_topic("general", "new")

    # DynamoDB's index is eventually consistent; moto (like a quiet table) has caught up.
    assert store.public_rooms(after=None, limit=10) == [
        RoomInfo("general", "alice", "new", False, TS)
    ]


def test_room_member_count_counts_the_rooms_connections(store: ChatStore) -> None:
    for n in range(7):
        connect(store, f"conn-{n}=", f"user{n % 3}", "lobby", *(["small"] if n < 2 else []))

    assert store.room_member_count("lobby") == 7
    assert store.room_member_count("small") == 2
    assert store.room_member_count("empty") == 0
    store.leave_room("lobby", "conn-0=")
    assert store.room_member_count("lobby") == 6


# --- the contract: room users ---------------------------------------------------------------


def test_a_user_with_nothing_set_in_a_room_has_no_record(store: ChatStore) -> None:
    assert store.get_room_user("general", "alice") is None

    store.set_role("general", "alice", None)  # clearing makes no record
    store.set_muted("general", "alice", None)

    assert store.get_room_user("general", "alice") is None
    assert store.room_users("general", limit=10) == []


def test_roles_are_set_changed_and_cleared(store: ChatStore) -> None:
    store.set_role("general", "alice", "owner")
    store.set_role("general", "bob", "moderator")
    assert store.get_room_user("general", "alice") == RoomUser("general", "alice", role="owner")

    store.set_role("general", "bob", "member")
    assert store.get_room_user("general", "bob") == RoomUser("general", "bob", role="member")
    store.set_role("general", "bob", None)
    assert store.get_room_user("general", "bob") == RoomUser("general", "bob")
    assert store.get_room_user("random", "alice") is None


def test_an_invitation_is_given_once(store: ChatStore) -> None:
    store.set_role("secret", "bob", "member")

    assert store.invite("secret", "bob") is True
    assert store.invite("secret", "bob") is False
    assert store.invite("secret", "carol") is True

    assert store.get_room_user("secret", "bob") == RoomUser(
        "secret", "bob", role="member", invited=True
    )
    assert store.get_room_user("secret", "carol") == RoomUser("secret", "carol", invited=True)
    assert run_concurrently(5, lambda _: store.invite("secret", "dave")).count(True) == 1


def test_a_mute_is_set_and_lifted(store: ChatStore) -> None:
    store.set_muted("general", "bob", LATER)
    assert store.get_room_user("general", "bob") == RoomUser("general", "bob", muted_until=LATER)

    store.set_muted("general", "bob", None)

    assert store.get_room_user("general", "bob") == RoomUser("general", "bob")


def test_a_read_mark_only_moves_forward(store: ChatStore) -> None:
    ids = post(store, "general", "m0", "m1", "m2")

    assert store.mark_read("general", "alice", ids[1]) == ids[1]
    assert store.mark_read("general", "alice", ids[0]) == ids[1]  # a stale tab: not back
    assert store.mark_read("general", "alice", ids[1]) == ids[1]
    assert store.mark_read("general", "alice", ids[2]) == ids[2]

    assert store.get_room_user("general", "alice") == RoomUser("general", "alice", last_read=ids[2])


def test_of_racing_read_marks_the_greatest_wins(store: ChatStore) -> None:
    ids = post(store, "general", *(f"m{n}" for n in range(6)))

    results = run_concurrently(6, lambda n: store.mark_read("general", "alice", ids[n]))

    assert all(result >= ids[n] for n, result in enumerate(results))
    user = store.get_room_user("general", "alice")
    assert user is not None and user.last_read == ids[-1]


def test_read_marks_reads_a_users_marks_in_many_rooms(store: ChatStore) -> None:
    rooms = [f"room-{n:03d}" for n in range(130)]  # DynamoDB: more than one BatchGetItem
    for n, room in enumerate(rooms):
        if n % 3:
            store.mark_read(room, "alice", f"mark-{n:03d}")
        store.mark_read(room, "bob", "bobs")
    store.set_role("room-000", "alice", "owner")  # a record without a mark

    marks = store.read_marks("alice", [*rooms, "room-001", "nowhere"])

    assert marks == {room: f"mark-{n:03d}" for n, room in enumerate(rooms) if n % 3}
    assert store.read_marks("alice", []) == {}
    assert store.read_marks("carol", rooms[:3]) == {}


def test_room_users_pages_through_a_rooms_users_in_name_order(store: ChatStore) -> None:
    users = [f"user{n:02d}" for n in range(7)]
    for user in reversed(users):
        store.set_role("general", user, "member")
    store.set_role("other", "zed", "owner")

    first = store.room_users("general", limit=4)
    rest = store.room_users("general", after=first[-1].user, limit=4)

    assert [u.user for u in first] == users[:4] and [u.user for u in rest] == users[4:]
    assert all(u == RoomUser("general", u.user, role="member") for u in first + rest)
    assert store.room_users("general", limit=0) == []


def test_room_user_state_is_kept_apart_by_room_and_setting(store: ChatStore) -> None:
    ids = post(store, "general", "m0")
    store.set_role("general", "alice", "moderator")
    store.invite("general", "alice")
    store.set_muted("general", "alice", LATER)
    store.mark_read("general", "alice", ids[0])
    store.set_role("random", "alice", "member")

    store.set_role("general", "alice", None)

    assert store.get_room_user("general", "alice") == RoomUser(
        "general", "alice", role=None, invited=True, muted_until=LATER, last_read=ids[0]
    )
    assert store.get_room_user("random", "alice") == RoomUser("random", "alice", role="member")


# --- DynamoDB: items and requests -------------------------------------------------------------


def _item(client: Any, table: str, **key: str) -> dict[str, Any]:
    reply = client.get_item(TableName=table, Key={k: {"S": v} for k, v in key.items()})
    return dict(reply.get("Item", {}))


def test_dynamodb_message_items_hold_edits_reactions_and_tombstones(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    stored = say(store, "lobby", "hi")
    store.edit_message("lobby", stored.id, author="alice", text="hello", edited_at=LATER)
    react(store, stored, "bob", THUMBS)
    react(store, stored, "carol", THUMBS)
    react(store, stored, "bob", PARTY)

    item = _item(dynamodb_client, dynamodb_tables.messages, room="lobby", id=stored.id)
    assert item["text"] == {"S": "hello"} and item["editedAt"] == {"N": str(LATER)}
    assert sorted(item["emojis"]["SS"]) == sorted([THUMBS, PARTY])
    assert sorted(item[f"r:{THUMBS}"]["SS"]) == ["bob", "carol"]
    assert item[f"r:{PARTY}"] == {"SS": ["bob"]}

    react(store, stored, "bob", PARTY, on=False)  # the last of its emoji
    item = _item(dynamodb_client, dynamodb_tables.messages, room="lobby", id=stored.id)
    assert item["emojis"] == {"SS": [THUMBS]} and f"r:{PARTY}" not in item

    store.delete_message("lobby", stored.id, deleted_at=LATER + 1, author=None)
    item = _item(dynamodb_client, dynamodb_tables.messages, room="lobby", id=stored.id)
    # The text is gone from the store, not hidden; so is every reaction.
    assert item["text"] == {"S": ""} and item["deletedAt"] == {"N": str(LATER + 1)}
    assert not [name for name in item if name == "emojis" or name.startswith("r:")]
    assert {"sender", "ts", "expiresAt", "editedAt"} <= set(item)


def test_dynamodb_room_records_and_room_user_items(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    last = say(store, "general", "hi").id
    store.create_room("general", owner="alice", topic="hi", private=False, created_at=TS)
    store.create_room("secret", owner="bob", topic="", private=True, created_at=TS)
    store.set_role("general", "alice", "owner")
    store.invite("general", "bob")
    store.set_muted("general", "bob", LATER)
    store.mark_read("general", "bob", last)

    assert _item(dynamodb_client, dynamodb_tables.rooms, room="general") == {
        "room": {"S": "general"},
        "lastId": {"S": last},
        "owner": {"S": "alice"},
        "topic": {"S": "hi"},
        "private": {"BOOL": False},
        "createdAt": {"N": str(TS)},
        "listed": {"S": "public"},
    }
    assert "listed" not in _item(dynamodb_client, dynamodb_tables.rooms, room="secret")
    assert _item(dynamodb_client, dynamodb_tables.room_users, room="general", user="bob") == {
        "room": {"S": "general"},
        "user": {"S": "bob"},
        "invited": {"BOOL": True},
        "mutedUntil": {"N": str(LATER)},
        "lastRead": {"S": last},
    }
    assert _item(dynamodb_client, dynamodb_tables.room_users, room="general", user="alice") == {
        "room": {"S": "general"},
        "user": {"S": "alice"},
        "role": {"S": "owner"},
    }


def test_dynamodb_features_never_scan_and_change_with_one_conditional_write(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    stored = say(store, "lobby", "hi")
    store.create_room("lobby", owner="alice", topic="", private=False, created_at=TS)
    every: dict[str, Callable[[], Any]] = {
        "get_message": lambda: store.get_message("lobby", stored.id),
        "edit_message": lambda: store.edit_message(
            "lobby", stored.id, author="alice", text="x", edited_at=LATER
        ),
        "react": lambda: react(store, stored, "bob", THUMBS),
        "unread_count": lambda: store.unread_count("lobby", after=None, limit=10),
        "create_room": lambda: store.create_room(
            "general", owner="bob", topic="", private=False, created_at=TS
        ),
        "get_room": lambda: store.get_room("lobby"),
        "set_topic": lambda: store.set_topic("lobby", "t"),
        "public_rooms": lambda: store.public_rooms(after=None, limit=10),
        "room_member_count": lambda: store.room_member_count("lobby"),
        "get_room_user": lambda: store.get_room_user("lobby", "bob"),
        "room_users": lambda: store.room_users("lobby", limit=10),
        "set_role": lambda: store.set_role("lobby", "bob", "moderator"),
        "invite": lambda: store.invite("lobby", "bob"),
        "set_muted": lambda: store.set_muted("lobby", "bob", LATER),
        "mark_read": lambda: store.mark_read("lobby", "bob", stored.id),
        "read_marks": lambda: store.read_marks("bob", ["lobby"]),
        "delete_message": lambda: store.delete_message(
            "lobby", stored.id, deleted_at=LATER, author=None
        ),
    }
    sent = {name: _operations_sent(dynamodb_client, action) for name, action in every.items()}

    assert all(op != "Scan" for ops in sent.values() for op, _ in ops)
    for name in ("edit_message", "react", "create_room", "set_topic", "invite", "mark_read"):
        [(operation, params)] = sent[name]
        assert operation == "UpdateItem" and "ConditionExpression" in params, name
    [(_, read), (_, write)] = sent["delete_message"]  # what to remove, then remove it
    assert read["ConsistentRead"] is True and "ConditionExpression" in write
    [(operation, params)] = sent["public_rooms"]
    assert (operation, params["IndexName"]) == ("Query", PUBLIC_INDEX)
    for name in ("unread_count", "room_member_count"):
        [(operation, params)] = sent[name]
        assert (operation, params["Select"]) == ("Query", "COUNT"), name
    [(operation, _)] = sent["read_marks"]
    assert operation == "BatchGetItem"


def test_dynamodb_read_marks_asks_in_batches_of_100(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    rooms = [f"room-{n:03d}" for n in range(250)]

    sent = _operations_sent(dynamodb_client, lambda: store.read_marks("alice", rooms))

    sizes = [len(params["RequestItems"][dynamodb_tables.room_users]["Keys"]) for _, params in sent]
    assert sizes == [100, 100, 50]


def test_dynamodb_unread_count_reads_no_more_than_the_limit(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    post(store, "lobby", *(f"m{n}" for n in range(10)))

    sent = _operations_sent(
        dynamodb_client, lambda: store.unread_count("lobby", after=None, limit=4)
    )

    [(_, params)] = sent
    assert params["Limit"] == 4 and params["ConsistentRead"] is True


def test_ensure_tables_makes_the_room_users_table_and_the_public_index(
    dynamodb_client: Any,
) -> None:
    tables = unique_tables()
    try:
        ensure_tables(dynamodb_client, tables)
        users = dynamodb_client.describe_table(TableName=tables.room_users)["Table"]
        rooms = dynamodb_client.describe_table(TableName=tables.rooms)["Table"]
        ttl = dynamodb_client.describe_time_to_live(TableName=tables.room_users)
    finally:
        for name in table_names(tables):
            dynamodb_client.delete_table(TableName=name)

    assert [(k["AttributeName"], k["KeyType"]) for k in users["KeySchema"]] == [
        ("room", "HASH"),
        ("user", "RANGE"),
    ]
    assert users["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    [index] = rooms["GlobalSecondaryIndexes"]
    assert index["IndexName"] == PUBLIC_INDEX == "public-index"
    assert index["KeySchema"] == [
        {"AttributeName": "listed", "KeyType": "HASH"},
        {"AttributeName": "room", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["owner", "topic", "createdAt"],
    }


def test_ensure_tables_adds_the_public_index_to_a_rooms_table_made_before_it(
    dynamodb_client: Any,
) -> None:
    tables = unique_tables()
    # The rooms table as wschat made it before room records: lastId only, no index.
    dynamodb_client.create_table(
        TableName=tables.rooms,
        AttributeDefinitions=[{"AttributeName": "room", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "room", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.put_item(
        TableName=tables.rooms, Item={"room": {"S": "lobby"}, "lastId": {"S": "01AAAAAAAA"}}
    )
    try:
        ensure_tables(dynamodb_client, tables)
        store = DynamoDBStore(dynamodb_client, tables)

        assert store.create_room("lobby", owner="alice", topic="", private=False, created_at=TS)
        assert [info.room for info in store.public_rooms(after=None, limit=5)] == ["lobby"]
        assert say(store, "lobby", "hi").id > "01AAAAAAAA"
    finally:
        for name in table_names(tables):
            dynamodb_client.delete_table(TableName=name)


def test_a_delete_that_always_loses_its_race_is_unavailable(aws_env: None) -> None:
    item = {
        "room": {"S": "lobby"},
        "id": {"S": "01AAAAAAAA"},
        "sender": {"S": "alice"},
        "text": {"S": "hi"},
        "ts": {"N": str(TS)},
        "expiresAt": {"N": str(int(time.time()) + 3600)},
    }
    script = {
        "GetItem": (200, {"Item": item}),
        "*": (400, error("ConditionalCheckFailedException")),
    }
    with scripted_store(script) as (dynamo, asked), pytest.raises(StoreUnavailable):
        dynamo.delete_message("lobby", "01AAAAAAAA", deleted_at=LATER, author=None)

    assert asked.count("GetItem") == asked.count("UpdateItem") > 1


def test_unprocessed_read_mark_keys_are_asked_for_again(aws_env: None) -> None:
    table = TableNames().room_users
    key = {"room": {"S": "lobby"}, "user": {"S": "alice"}}
    script = {"BatchGetItem": (200, {"Responses": {}, "UnprocessedKeys": {table: {"Keys": [key]}}})}
    with scripted_store(script) as (dynamo, asked), pytest.raises(StoreUnavailable):
        dynamo.read_marks("alice", ["lobby"])

    assert asked.count("BatchGetItem") > 1


# --- SQLite: a file made by an earlier wschat ------------------------------------------------


def test_a_version_2_file_keeps_its_history_and_gains_the_features(tmp_path: Path) -> None:
    path = tmp_path / "wschat.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA + MIGRATION_2 + "PRAGMA user_version = 2;")
    expires = int(time.time()) + 3600
    old.execute(
        'INSERT INTO "chat-messages" VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        ("lobby", "01AAAAAAAAAAAAAAAAAAAAAAAA", "alice", "from before", TS, None, None, expires),
    )
    old.execute('INSERT INTO "chat-rooms" VALUES (?, ?)', ("lobby", "01AAAAAAAAAAAAAAAAAAAAAAAA"))
    old.commit()
    old.close()

    store = SqliteStore(path)
    try:
        [kept] = store.message_history("lobby").messages
        assert kept == StoredMessage(
            "lobby", "01AAAAAAAAAAAAAAAAAAAAAAAA", "alice", "from before", TS
        )
        assert store.get_room("lobby") is None
        assert store.create_room("lobby", owner="alice", topic="", private=False, created_at=TS)
        assert say(store, "lobby", "after").id > kept.id
        assert react(store, kept, "bob", THUMBS) is not None
        assert store.mark_read("lobby", "bob", kept.id) == kept.id
    finally:
        store.close()

    # Opened again (another worker, the next start): nothing to migrate, everything kept.
    store = SqliteStore(path)
    try:
        assert store.get_room("lobby") == RoomInfo("lobby", "alice", "", False, TS)
        assert store.get_message("lobby", kept.id) == StoredMessage(
            "lobby", kept.id, "alice", "from before", TS, reactions={THUMBS: ("bob",)}
        )
        assert store.read_marks("bob", ["lobby"]) == {"lobby": kept.id}
    finally:
        store.close()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 3


def test_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "wschat.sqlite3"

    opened = run_concurrently(4, lambda _: SqliteStore(path))
    try:
        say(opened[0], "lobby", "hi")
        assert all(len(s.message_history("lobby").messages) == 1 for s in opened)
    finally:
        for each in opened:
            each.close()


def test_a_store_opens_while_another_connection_holds_the_files_write_lock(tmp_path: Path) -> None:
    # The switch to WAL needs an exclusive lock; with another writer holding the file, SQLite
    # answers "database is locked" at once instead of waiting, so the store must wait itself.
    path = tmp_path / "wschat.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE elsewhere (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO elsewhere VALUES (1)")
    released = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    released.start()
    try:
        store = SqliteStore(path)
    finally:
        released.join()
        other.close()
    try:
        say(store, "lobby", "hi")
        assert [m.text for m in store.message_history("lobby").messages] == ["hi"]
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

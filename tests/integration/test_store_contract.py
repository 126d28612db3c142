"""The ChatStore contract, run against every adapter: SQLite on a file, DynamoDB over real HTTP on
a moto server (five fresh tables per test). The same test passing for both is what lets the local
gateway stand in for AWS. DynamoDB-only behaviour (the tables and items, errors, configuration
from the environment) follows the contract."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from wschat import ids
from wschat.storage import (
    CONNECTION_TTL_SECONDS,
    ChatStore,
    Connection,
    StoreError,
    StoreUnavailable,
    TableNames,
    open_store_from_env,
)
from wschat.storage.base import Member, NewMessage, RateLimit, StoredMessage, direct_room
from wschat.storage.dynamodb import DynamoDBStore, ensure_tables
from wschat.storage.dynamodb_tables import NAME_INDEX
from wschat.storage.sqlite import SqliteStore

pytestmark = pytest.mark.integration

PAGE_SIZE = 100
CONNECTED_AT_MS = 1_700_000_000_123
TS = 1_732_498_512_345  # a message's epoch milliseconds

# Connection ids as API Gateway hands them out: 16 characters of base64, '=' padded, and the
# alphabet includes '+' and '/'.
API_GATEWAY_IDS = ["L0SM9cOFvHcCIhw=", "a+b/CdefGhIjKlM=", "Zz0+/9cOFvHcCIh=", "AAAAAAAAAAAAAAA="]
ALICE, BOB, CAROL = API_GATEWAY_IDS[:3]


def unique_tables() -> TableNames:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    defaults = TableNames()
    return TableNames(**{field: f"{prefix}-{getattr(defaults, field)}" for field in TableNames.ENV})


def table_names(tables: TableNames) -> list[str]:
    return [getattr(tables, field) for field in TableNames.ENV]


@pytest.fixture
def dynamodb_tables(dynamodb_client: Any) -> Iterator[TableNames]:
    """Five fresh tables on the moto server, dropped afterwards."""
    tables = unique_tables()
    ensure_tables(dynamodb_client, tables)
    yield tables
    for name in table_names(tables):
        dynamodb_client.delete_table(TableName=name)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChatStore]:
    """A fresh, empty store of each kind, scanning in pages of PAGE_SIZE."""
    opened: ChatStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "wschat.sqlite3", scan_page_size=PAGE_SIZE)
    else:
        # Looked up lazily so `-k sqlite` runs never start the moto server.
        client = request.getfixturevalue("dynamodb_client")
        tables = request.getfixturevalue("dynamodb_tables")
        opened = DynamoDBStore(client, tables, scan_page_size=PAGE_SIZE)
    yield opened
    opened.close()


@pytest.fixture
def writers_in_separate_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Message ids made as by many Lambda processes, each with its own generator: one process
    never hands out an id below one it made before, so in-process threads alone would hide a
    store that lets two writers race."""

    def new_id_in_a_fresh_process(now_ms: int | None = None) -> str:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        return ids._encode(ms, 10) + ids._encode(secrets.randbits(79), 16)

    monkeypatch.setattr(ids, "new_id", new_id_in_a_fresh_process)


def connect(store: ChatStore, connection_id: str, name: str = "", *rooms: str) -> Connection:
    connection = Connection.opened(
        connection_id, CONNECTED_AT_MS, name=name, rooms=frozenset(rooms)
    )
    store.put_connection(connection)
    return connection


def join(store: ChatStore, room: str, connection_id: str, name: str) -> bool:
    return store.join_room(room, connection_id, name, CONNECTED_AT_MS // 1000 + 3600)


def message(
    room: str,
    text: str,
    *,
    ts: int = TS,
    sender: str = "alice",
    client_id: str | None = None,
    to: str | None = None,
    expires_in: int = 3600,
) -> NewMessage:
    return NewMessage(
        room=room,
        sender=sender,
        text=text,
        ts=ts,
        expires_at=int(time.time()) + expires_in,
        client_id=client_id,
        to=to,
    )


def post(store: ChatStore, room: str, *texts: str) -> list[str]:
    """Append one message per text; their ids."""
    return [store.append_message(message(room, text)).id for text in texts]


def texts(store: ChatStore, room: str, **query: Any) -> tuple[list[str], bool]:
    page = store.message_history(room, **query)
    return [m.text for m in page.messages], page.more


def run_concurrently(workers: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(n)`` for n in range(workers), each on its own thread, started together."""
    start = threading.Barrier(workers)

    def run(n: int) -> Any:
        start.wait()
        return work(n)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


# --- the contract: connections ---------------------------------------------------------------


def test_put_then_get_returns_the_same_record(store: ChatStore) -> None:
    connection = Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS)
    store.put_connection(connection)

    stored = store.get_connection("L0SM9cOFvHcCIhw=")

    assert stored == connection
    assert stored == Connection(
        connection_id="L0SM9cOFvHcCIhw=",
        connected_at=CONNECTED_AT_MS,
        expires_at=CONNECTED_AT_MS // 1000 + CONNECTION_TTL_SECONDS,
    )


def test_a_connection_with_a_name_and_rooms_round_trips(store: ChatStore) -> None:
    connection = connect(store, ALICE, "alice", "lobby", "random")

    assert store.get_connection(ALICE) == connection
    assert connection.name == "alice"
    assert connection.rooms == {"lobby", "random"}


def test_putting_a_connection_makes_it_a_member_of_its_rooms(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby", "random")

    assert store.room_members("lobby") == [Member("lobby", ALICE, "alice")]
    assert store.room_members("random") == [Member("random", ALICE, "alice")]


def test_room_member_ids_pages_through_a_room_in_id_order(store: ChatStore) -> None:
    members = [f"conn-{n:03d}=" for n in range(23)]
    for connection_id in reversed(members):
        connect(store, connection_id, "", "big")
    connect(store, "elsewhere=", "", "small")

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = store.room_member_ids("big", after=after, limit=10)
        if not page:
            break
        pages.append(page)
        after = page[-1]

    assert [len(page) for page in pages] == [10, 10, 3]
    assert [cid for page in pages for cid in page] == members
    assert store.room_member_ids("big", after=members[-1], limit=10) == []
    assert store.room_member_ids("nowhere", limit=10) == []
    assert store.room_member_ids("big", limit=0) == []
    store.leave_room("big", members[0])
    assert store.room_member_ids("big", limit=2) == members[1:3]


def test_a_connection_in_more_rooms_than_one_transaction_holds_joins_them_all(
    store: ChatStore,
) -> None:
    rooms = [f"room-{n:03d}" for n in range(120)]  # DynamoDB: 100 items per transaction
    connect(store, ALICE, "alice", *rooms)

    assert store.get_connection(ALICE) == Connection.opened(
        ALICE, CONNECTED_AT_MS, name="alice", rooms=frozenset(rooms)
    )
    assert all(store.room_members(room) == [Member(room, ALICE, "alice")] for room in rooms)

    store.remove_connection(ALICE)

    assert all(store.room_members(room) == [] for room in rooms)


def test_putting_a_connection_again_overwrites_it(store: ChatStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))
    reconnected = Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS + 60_000)
    store.put_connection(reconnected)

    assert store.get_connection("L0SM9cOFvHcCIhw=") == reconnected
    assert list(store.scan_connection_ids()) == ["L0SM9cOFvHcCIhw="]


def test_delete_forgets_only_that_connection(store: ChatStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))
    store.put_connection(Connection.opened("a+b/CdefGhIjKlM=", CONNECTED_AT_MS))

    store.delete_connection("L0SM9cOFvHcCIhw=")

    assert store.get_connection("L0SM9cOFvHcCIhw=") is None
    assert store.get_connection("a+b/CdefGhIjKlM=") is not None
    assert list(store.scan_connection_ids()) == ["a+b/CdefGhIjKlM="]


def test_deleting_an_unknown_connection_is_not_an_error(store: ChatStore) -> None:
    store.delete_connection("never-connected=")

    assert list(store.scan_connection_ids()) == []


def test_get_of_an_unknown_connection_returns_none(store: ChatStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    assert store.get_connection("never-connected=") is None


def test_scan_of_an_empty_store_yields_nothing(store: ChatStore) -> None:
    assert list(store.scan_connection_ids()) == []


def test_scan_returns_every_id_exactly_once_across_pages(store: ChatStore) -> None:
    ids = [f"conn-{n:04d}-{uuid.uuid4().hex[:6]}=" for n in range(2 * PAGE_SIZE + 50)]
    for connection_id in ids:
        store.put_connection(Connection.opened(connection_id, CONNECTED_AT_MS))

    scanned = list(store.scan_connection_ids())

    assert len(scanned) == len(ids)  # no id twice across page boundaries
    assert sorted(scanned) == sorted(ids)


def test_api_gateway_connection_ids_round_trip(store: ChatStore) -> None:
    for n, connection_id in enumerate(API_GATEWAY_IDS):
        store.put_connection(Connection.opened(connection_id, CONNECTED_AT_MS + n))

    for n, connection_id in enumerate(API_GATEWAY_IDS):
        assert store.get_connection(connection_id) == Connection.opened(
            connection_id, CONNECTED_AT_MS + n
        )
    assert sorted(store.scan_connection_ids()) == sorted(API_GATEWAY_IDS)

    for connection_id in API_GATEWAY_IDS:
        store.delete_connection(connection_id)
    assert list(store.scan_connection_ids()) == []


# --- the contract: names ------------------------------------------------------------------------


def test_rename_updates_the_record_and_every_membership(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby", "random")
    connect(store, BOB, "bob", "lobby")

    renamed = store.rename_connection(ALICE, "alicia")

    assert renamed == Connection.opened(
        ALICE, CONNECTED_AT_MS, name="alicia", rooms=frozenset({"lobby", "random"})
    )
    assert store.get_connection(ALICE) == renamed
    assert sorted(store.room_members("lobby"), key=lambda m: m.name) == [
        Member("lobby", ALICE, "alicia"),
        Member("lobby", BOB, "bob"),
    ]
    assert store.room_members("random") == [Member("random", ALICE, "alicia")]


def test_renaming_an_unknown_connection_returns_none_and_stores_nothing(
    store: ChatStore,
) -> None:
    assert store.rename_connection("never-connected=", "ghost") is None

    assert store.get_connection("never-connected=") is None
    assert store.connection_ids_named("ghost") == []


def test_connection_ids_named_finds_every_connection_using_the_name(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    connect(store, BOB, "alice", "lobby")  # a second tab
    connect(store, CAROL, "carol", "lobby")

    assert sorted(store.connection_ids_named("alice")) == sorted([ALICE, BOB])
    assert store.connection_ids_named("carol") == [CAROL]
    assert store.connection_ids_named("dave") == []


def test_connection_ids_named_follows_renames(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")

    store.rename_connection(ALICE, "alicia")

    assert store.connection_ids_named("alicia") == [ALICE]
    assert store.connection_ids_named("alice") == []


# --- the contract: rooms ------------------------------------------------------------------------


def test_join_adds_the_member_to_the_room_and_the_room_to_the_connection(
    store: ChatStore,
) -> None:
    connect(store, ALICE, "alice", "lobby")

    assert join(store, "random", ALICE, "alice") is True

    connection = store.get_connection(ALICE)
    assert connection is not None and connection.rooms == {"lobby", "random"}
    assert store.room_members("random") == [Member("random", ALICE, "alice")]


def test_joining_a_room_twice_returns_false_and_keeps_one_membership(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")

    assert join(store, "lobby", ALICE, "alice") is False
    assert join(store, "random", ALICE, "alice") is True
    assert join(store, "random", ALICE, "alice") is False

    assert store.room_members("random") == [Member("random", ALICE, "alice")]


def test_joining_after_the_record_is_gone_returns_false_and_adds_nothing(
    store: ChatStore,
) -> None:
    connect(store, ALICE, "alice", "lobby")
    store.remove_connection(ALICE)  # $disconnect ran while the join was on its way

    assert join(store, "random", ALICE, "alice") is False

    assert store.room_members("random") == []
    assert store.get_connection(ALICE) is None


def test_leave_removes_the_membership_and_the_room(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby", "random")

    assert store.leave_room("random", ALICE) is True
    assert store.leave_room("random", ALICE) is False

    connection = store.get_connection(ALICE)
    assert connection is not None and connection.rooms == {"lobby"}
    assert store.room_members("random") == []
    assert store.room_members("lobby") == [Member("lobby", ALICE, "alice")]


def test_leaving_every_room_leaves_a_connection_in_none(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")

    store.leave_room("lobby", ALICE)

    assert store.get_connection(ALICE) == Connection.opened(ALICE, CONNECTED_AT_MS, name="alice")


def test_leaving_a_room_never_joined_returns_false(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    connect(store, BOB, "bob", "random")

    assert store.leave_room("random", ALICE) is False
    assert store.leave_room("random", "never-connected=") is False

    assert store.room_members("random") == [Member("random", BOB, "bob")]


def test_leaving_after_the_record_is_gone_still_removes_the_membership(
    store: ChatStore,
) -> None:
    connect(store, ALICE, "alice", "lobby", "random")
    store.delete_connection(ALICE)  # the record only, as the seed's DeleteItem

    assert store.leave_room("random", ALICE) is True

    assert store.room_members("random") == []


def test_room_members_lists_each_member_of_that_room_only(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby", "random")
    connect(store, BOB, "bob", "lobby")
    connect(store, CAROL, "carol", "random")
    join(store, "games", BOB, "bob")

    def members(room: str) -> list[Member]:
        return sorted(store.room_members(room), key=lambda m: m.connection_id)

    assert members("lobby") == sorted(
        [Member("lobby", ALICE, "alice"), Member("lobby", BOB, "bob")],
        key=lambda m: m.connection_id,
    )
    assert members("random") == sorted(
        [Member("random", ALICE, "alice"), Member("random", CAROL, "carol")],
        key=lambda m: m.connection_id,
    )
    assert members("games") == [Member("games", BOB, "bob")]
    assert members("empty") == []


def test_room_members_reads_at_most_the_limit(store: ChatStore) -> None:
    ids = [f"member-{n:02d}=" for n in range(5)]
    for n, connection_id in enumerate(ids):
        connect(store, connection_id, f"user{n}", "lobby")

    assert len(store.room_members("lobby", limit=3)) == 3
    assert {m.connection_id for m in store.room_members("lobby", limit=3)} <= set(ids)
    assert len(store.room_members("lobby", limit=6)) == 5
    assert store.room_members("lobby", limit=0) == []
    assert store.room_members("empty", limit=3) == []


def test_room_member_count_counts_no_further_than_its_limit(store: ChatStore) -> None:
    for n in range(5):
        connect(store, f"member-{n:02d}=", f"user{n}", "lobby", "small" if n < 2 else "lobby")
    connect(store, "elsewhere=", "other", "other")

    assert store.room_member_count("lobby", limit=3) == 3  # counted no further than asked
    assert store.room_member_count("lobby", limit=6) == 5
    assert store.room_member_count("small", limit=6) == 2
    assert store.room_member_count("lobby", limit=0) == 0
    assert store.room_member_count("empty", limit=3) == 0
    store.leave_room("small", "member-00=")
    assert store.room_member_count("small", limit=6) == 1


def test_remove_connection_deletes_the_record_and_every_membership(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby", "random", "games")
    for n in range(27):  # 30 rooms: more than one DynamoDB batch of 25
        join(store, f"extra-{n:02d}", ALICE, "alice")
    connect(store, BOB, "bob", "lobby")
    rooms = frozenset({"lobby", "random", "games"} | {f"extra-{n:02d}" for n in range(27)})

    removed = store.remove_connection(ALICE)

    assert removed == Connection.opened(ALICE, CONNECTED_AT_MS, name="alice", rooms=rooms)
    assert store.get_connection(ALICE) is None
    assert list(store.scan_connection_ids()) == [BOB]
    assert [room for room in sorted(rooms) if store.room_members(room)] == ["lobby"]
    assert store.room_members("lobby") == [Member("lobby", BOB, "bob")]


def test_removing_an_unknown_connection_returns_none(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")

    assert store.remove_connection("never-connected=") is None

    assert store.room_members("lobby") == [Member("lobby", ALICE, "alice")]


# --- the contract: rate limits --------------------------------------------------------------


def test_a_full_bucket_allows_a_burst_then_refuses(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    limit = RateLimit(rate_per_second=1, burst=3)

    taken = [store.take_token(ALICE, TS, limit) for _ in range(4)]

    assert taken == [True, True, True, False]


def test_the_bucket_refills_at_the_rate_up_to_the_burst(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    limit = RateLimit(rate_per_second=10, burst=3)
    for _ in range(3):
        store.take_token(ALICE, TS, limit)

    assert store.take_token(ALICE, TS + 50, limit) is False  # half a token
    assert store.take_token(ALICE, TS + 100, limit) is True  # one token
    assert store.take_token(ALICE, TS + 100, limit) is False
    later = TS + 60_000  # long enough for 600 tokens, but a bucket holds 3
    assert [store.take_token(ALICE, later, limit) for _ in range(4)] == [True, True, True, False]


def test_each_connection_has_its_own_bucket(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    connect(store, BOB, "bob", "lobby")
    limit = RateLimit(rate_per_second=1, burst=1)

    assert store.take_token(ALICE, TS, limit) is True
    assert store.take_token(ALICE, TS, limit) is False
    assert store.take_token(BOB, TS, limit) is True


def test_admit_reads_the_record_and_takes_from_the_same_bucket(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    limit = RateLimit(rate_per_second=1, burst=2)

    connection, admitted = store.admit(ALICE, TS, limit)
    assert connection == store.get_connection(ALICE) and admitted
    assert store.take_token(ALICE, TS, limit) is True  # the second of two
    connection, admitted = store.admit(ALICE, TS, limit)
    assert connection is not None and connection.name == "alice" and not admitted
    assert store.admit("never-connected=", TS, limit) == (None, True)


def test_take_token_of_an_unknown_connection_allows_it(store: ChatStore) -> None:
    limit = RateLimit(rate_per_second=1, burst=1)

    assert [store.take_token("never-connected=", TS, limit) for _ in range(3)] == [True] * 3
    assert store.get_connection("never-connected=") is None


def test_concurrent_takers_never_take_more_than_the_burst(store: ChatStore) -> None:
    connect(store, ALICE, "alice", "lobby")
    limit = RateLimit(rate_per_second=1, burst=10)

    # Every taker at the same millisecond: nothing refills, and tokensAt never changes.
    taken = run_concurrently(6, lambda _: [store.take_token(ALICE, TS, limit) for _ in range(4)])

    assert sum(t.count(True) for t in taken) == 10


# --- the contract: messages -------------------------------------------------------------------


def test_an_appended_message_is_stored_as_given_under_a_new_id(store: ChatStore) -> None:
    stored = store.append_message(message("lobby", "hi", client_id="c-1"))

    assert stored == StoredMessage("lobby", stored.id, "alice", "hi", TS, "c-1", None)
    assert store.message_history("lobby").messages == [stored]


def test_message_ids_in_a_room_strictly_increase(store: ChatStore) -> None:
    first = store.append_message(message("lobby", "one", ts=TS)).id
    second = store.append_message(message("lobby", "two", ts=TS)).id  # same millisecond
    third = store.append_message(message("lobby", "three", ts=TS - 60_000)).id  # clock behind

    assert first < second < third


@pytest.mark.usefixtures("writers_in_separate_processes")
def test_concurrent_appends_to_one_room_get_ids_in_the_order_they_are_stored(
    store: ChatStore,
) -> None:
    lock = threading.Lock()
    stored: list[str] = []  # ids whose append_message has returned
    out_of_order: list[tuple[str, str]] = []

    def writer(n: int) -> list[str]:
        mine = []
        for k in range(6):
            with lock:
                highest_before = max(stored, default="")
            message_id = store.append_message(message("lobby", f"{n}-{k}", ts=TS)).id
            with lock:
                # Stored after every message that was stored before this one started.
                if message_id <= highest_before:
                    out_of_order.append((message_id, highest_before))
                stored.append(message_id)
            mine.append(message_id)
        return mine

    per_writer = run_concurrently(6, writer)

    assert out_of_order == []
    assert len(set(stored)) == len(stored) == 36
    assert all(mine == sorted(mine) for mine in per_writer)
    history = store.message_history("lobby", limit=100)
    assert [m.id for m in history.messages] == sorted(stored)


def test_rooms_number_their_messages_apart(store: ChatStore) -> None:
    post(store, "lobby", "l1", "l2")
    post(store, "random", "r1")
    post(store, "lobby", "l3")

    assert texts(store, "lobby") == (["l1", "l2", "l3"], False)
    assert texts(store, "random") == (["r1"], False)
    assert texts(store, "empty") == ([], False)


def test_direct_room_is_one_conversation_key_for_both_users(store: ChatStore) -> None:
    key = direct_room("bob", "alice")
    assert key == direct_room("alice", "bob") == "dm:alice:bob"

    sent = store.append_message(message(key, "hi bob", sender="alice", to="bob", client_id="c"))
    answered = store.append_message(message(direct_room("bob", "alice"), "hi", sender="bob"))

    assert store.message_history("dm:alice:bob").messages == [sent, answered]
    assert sent.to == "bob" and answered.to is None


# --- the contract: history -------------------------------------------------------------------


def test_history_without_a_position_is_the_newest_page_oldest_first(store: ChatStore) -> None:
    post(store, "lobby", "m0", "m1", "m2", "m3", "m4")

    assert texts(store, "lobby", limit=3) == (["m2", "m3", "m4"], True)
    assert texts(store, "lobby", limit=5) == (["m0", "m1", "m2", "m3", "m4"], False)
    assert texts(store, "lobby", limit=9) == (["m0", "m1", "m2", "m3", "m4"], False)


def test_history_before_an_id_scrolls_back(store: ChatStore) -> None:
    ids = post(store, "lobby", "m0", "m1", "m2", "m3", "m4")

    assert texts(store, "lobby", before=ids[3], limit=2) == (["m1", "m2"], True)
    assert texts(store, "lobby", before=ids[2], limit=2) == (["m0", "m1"], False)
    assert texts(store, "lobby", before=ids[0], limit=2) == ([], False)


def test_history_after_an_id_reads_forward(store: ChatStore) -> None:
    ids = post(store, "lobby", "m0", "m1", "m2", "m3", "m4")

    assert texts(store, "lobby", after=ids[1], limit=2) == (["m2", "m3"], True)
    assert texts(store, "lobby", after=ids[2], limit=2) == (["m3", "m4"], False)
    assert texts(store, "lobby", after=ids[4], limit=2) == ([], False)


def test_catch_up_after_the_last_id_seen_returns_exactly_the_missed_messages(
    store: ChatStore,
) -> None:
    seen = post(store, "lobby", "seen-0", "seen-1", "seen-2")
    missed = post(store, "lobby", "missed-0", "missed-1", "missed-2", "missed-3")
    post(store, "random", "elsewhere")

    page = store.message_history("lobby", after=seen[-1], limit=50)

    assert [m.id for m in page.messages] == missed
    assert [m.text for m in page.messages] == ["missed-0", "missed-1", "missed-2", "missed-3"]
    assert page.more is False


def test_history_hides_expired_messages_and_does_not_count_them(store: ChatStore) -> None:
    def append(text: str, expires_in: int) -> str:
        return store.append_message(message("lobby", text, expires_in=expires_in)).id

    first = append("live-0", 3600)
    append("expired-0", -10)
    append("expired-1", -10)
    append("live-1", 3600)
    append("expired-2", -10)
    append("live-2", 3600)

    assert texts(store, "lobby", limit=2) == (["live-1", "live-2"], True)
    assert texts(store, "lobby", limit=3) == (["live-0", "live-1", "live-2"], False)
    assert texts(store, "lobby", after=first, limit=1) == (["live-1"], True)
    assert texts(store, "lobby", after=first, limit=2) == (["live-1", "live-2"], False)


# --- DynamoDB: the tables and items as template.yaml declares them ------------------------------


def test_dynamodb_items_use_the_tables_attribute_names_and_types(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    item = dynamodb_client.get_item(
        TableName=dynamodb_tables.connections, Key={"connectionId": {"S": "L0SM9cOFvHcCIhw="}}
    )["Item"]

    # No name and no rooms: no attributes for them (an index key and a set cannot be empty).
    assert item == {
        "connectionId": {"S": "L0SM9cOFvHcCIhw="},
        "connectedAt": {"N": str(CONNECTED_AT_MS)},
        "expiresAt": {"N": str(CONNECTED_AT_MS // 1000 + CONNECTION_TTL_SECONDS)},
    }


def test_dynamodb_chat_items_use_the_tables_attribute_names_and_types(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    connection = connect(store, ALICE, "alice", "lobby", "random")
    store.take_token(ALICE, TS, RateLimit(rate_per_second=10, burst=20))
    new = message("lobby", "hi", client_id="c-1")
    stored = store.append_message(new)

    def item(table: str, **key: str) -> dict[str, Any]:
        reply = dynamodb_client.get_item(TableName=table, Key={k: {"S": v} for k, v in key.items()})
        return dict(reply["Item"])

    assert item(dynamodb_tables.connections, connectionId=ALICE) == {
        "connectionId": {"S": ALICE},
        "connectedAt": {"N": str(CONNECTED_AT_MS)},
        "expiresAt": {"N": str(connection.expires_at)},
        "name": {"S": "alice"},
        "rooms": {"SS": ["lobby", "random"]},
        "tokens": {"N": "19"},
        "tokensAt": {"N": str(TS)},
    }
    assert item(dynamodb_tables.members, room="random", connectionId=ALICE) == {
        "room": {"S": "random"},
        "connectionId": {"S": ALICE},
        "name": {"S": "alice"},
        "expiresAt": {"N": str(connection.expires_at)},
    }
    assert item(dynamodb_tables.messages, room="lobby", id=stored.id) == {
        "room": {"S": "lobby"},
        "id": {"S": stored.id},
        "sender": {"S": "alice"},
        "text": {"S": "hi"},
        "ts": {"N": str(TS)},
        "clientId": {"S": "c-1"},
        "expiresAt": {"N": str(new.expires_at)},
    }  # no recipient: a None attribute is left out
    assert item(dynamodb_tables.rooms, room="lobby") == {
        "room": {"S": "lobby"},
        "lastId": {"S": stored.id},
    }


def test_dynamodb_a_nameless_connection_keeps_no_name_attribute(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    connect(store, ALICE, "alice", "lobby")

    assert store.rename_connection(ALICE, "") == Connection.opened(
        ALICE, CONNECTED_AT_MS, rooms=frozenset({"lobby"})
    )
    item = dynamodb_client.get_item(
        TableName=dynamodb_tables.connections, Key={"connectionId": {"S": ALICE}}
    )["Item"]
    assert "name" not in item
    assert store.connection_ids_named("alice") == []


def test_ensure_tables_is_idempotent_and_makes_keys_index_and_ttl(dynamodb_client: Any) -> None:
    tables = unique_tables()
    try:
        ensure_tables(dynamodb_client, tables)
        ensure_tables(dynamodb_client, tables)

        described = {
            name: dynamodb_client.describe_table(TableName=name)["Table"]
            for name in table_names(tables)
        }
        ttl = {
            name: dynamodb_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            for name in table_names(tables)
        }
    finally:
        for name in table_names(tables):
            dynamodb_client.delete_table(TableName=name)

    def keys(name: str) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in described[name]["KeySchema"]]

    assert keys(tables.connections) == [("connectionId", "HASH")]
    assert keys(tables.members) == [("room", "HASH"), ("connectionId", "RANGE")]
    assert keys(tables.messages) == [("room", "HASH"), ("id", "RANGE")]
    assert keys(tables.rooms) == [("room", "HASH")]
    assert keys(tables.room_users) == [("room", "HASH"), ("user", "RANGE")]
    assert all(
        t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST" for t in described.values()
    )
    [index] = described[tables.connections]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == NAME_INDEX == "name-index"
    assert index["KeySchema"] == [{"AttributeName": "name", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    expiring = {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    assert ttl[tables.connections] == ttl[tables.members] == ttl[tables.messages] == expiring
    assert ttl[tables.rooms]["TimeToLiveStatus"] == "DISABLED"  # a room's lastId never expires
    assert ttl[tables.room_users]["TimeToLiveStatus"] == "DISABLED"  # nor a user's read mark


def test_ensure_tables_adds_the_name_index_to_a_connections_table_made_before_it(
    dynamodb_client: Any,
) -> None:
    tables = unique_tables()
    # The connections table as wschat made it before names: key only, no index.
    dynamodb_client.create_table(
        TableName=tables.connections,
        AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.put_item(
        TableName=tables.connections, Item={"connectionId": {"S": ALICE}, "name": {"S": "alice"}}
    )
    try:
        ensure_tables(dynamodb_client, tables)
        store = DynamoDBStore(dynamodb_client, tables)

        assert store.connection_ids_named("alice") == [ALICE]
    finally:
        for name in table_names(tables):
            dynamodb_client.delete_table(TableName=name)


def _operations_sent(client: Any, action: Callable[[], Any]) -> list[tuple[str, dict[str, Any]]]:
    """The DynamoDB operations (name, parameters) ``action`` makes through ``client``."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.dynamodb", record)
    try:
        action()
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb", record)
    return sent


def test_dynamodb_connections_by_name_are_a_query_of_the_name_index(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    connect(store, ALICE, "alice", "lobby")
    connect(store, BOB, "bob", "lobby")

    sent = _operations_sent(dynamodb_client, lambda: store.connection_ids_named("alice"))

    assert [(name, params.get("IndexName")) for name, params in sent] == [("Query", NAME_INDEX)]


def test_dynamodb_history_reads_one_query_page_of_limit_plus_one(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables)
    post(store, "lobby", *(f"m{n}" for n in range(10)))

    sent = _operations_sent(dynamodb_client, lambda: store.message_history("lobby", limit=3))

    [(operation, params)] = sent
    assert operation == "Query"
    assert params["Limit"] == 4
    assert params["ConsistentRead"] is True
    assert params["ScanIndexForward"] is False


def test_dynamodb_scan_asks_for_pages_of_the_configured_size(
    dynamodb_client: Any, dynamodb_tables: TableNames
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_tables, scan_page_size=PAGE_SIZE)
    for n in range(2 * PAGE_SIZE + 50):
        store.put_connection(Connection.opened(f"conn-{n:04d}=", CONNECTED_AT_MS))

    sent = _operations_sent(dynamodb_client, lambda: sum(1 for _ in store.scan_connection_ids()))

    assert [operation for operation, _ in sent] == ["Scan"] * 3
    assert all(params["Limit"] == PAGE_SIZE for _, params in sent)
    assert all(params["ProjectionExpression"] == "connectionId" for _, params in sent)


# --- DynamoDB: what callers see when the table or the service is not there --------------------


def _every_operation(store: ChatStore) -> dict[str, Callable[[], Any]]:
    limit = RateLimit()
    return {
        "put": lambda: store.put_connection(Connection.opened(ALICE, 1)),
        "put_with_rooms": lambda: store.put_connection(
            Connection.opened(ALICE, 1, rooms=frozenset({"lobby"}))
        ),
        "get": lambda: store.get_connection(ALICE),
        "delete": lambda: store.delete_connection(ALICE),
        "scan": lambda: list(store.scan_connection_ids()),
        "rename": lambda: store.rename_connection(ALICE, "alice"),
        "named": lambda: store.connection_ids_named("alice"),
        "take_token": lambda: store.take_token(ALICE, TS, limit),
        "join": lambda: join(store, "lobby", ALICE, "alice"),
        "leave": lambda: store.leave_room("lobby", ALICE),
        "members": lambda: store.room_members("lobby"),
        "remove": lambda: store.remove_connection(ALICE),
        "append": lambda: store.append_message(message("lobby", "hi")),
        "history": lambda: store.message_history("lobby"),
        "get_message": lambda: store.get_message("lobby", "01AAAAAAAA"),
        "edit": lambda: store.edit_message("lobby", "01A", author="a", text="x", edited_at=1),
        "delete_message": lambda: store.delete_message("lobby", "01A", deleted_at=1, author=None),
        "react": lambda: store.react("lobby", "01A", user="a", emoji="e", on=True, max_emojis=1),
        "unreact": lambda: store.react("lobby", "01A", user="a", emoji="e", on=False, max_emojis=1),
        "unread": lambda: store.unread_count("lobby", after=None, limit=10),
        "create_room": lambda: store.create_room(
            "lobby", owner="a", topic="", private=False, created_at=1
        ),
        "get_room": lambda: store.get_room("lobby"),
        "set_topic": lambda: store.set_topic("lobby", "t"),
        "public_rooms": lambda: store.public_rooms(after=None, limit=10),
        "member_count": lambda: store.room_member_count("lobby"),
        "get_room_user": lambda: store.get_room_user("lobby", "a"),
        "room_users": lambda: store.room_users("lobby", limit=10),
        "set_role": lambda: store.set_role("lobby", "a", "member"),
        "invite": lambda: store.invite("lobby", "a"),
        "set_muted": lambda: store.set_muted("lobby", "a", 1),
        "mark_read": lambda: store.mark_read("lobby", "a", "01A"),
        "read_marks": lambda: store.read_marks("a", ["lobby"]),
    }


OPERATIONS = ["put", "put_with_rooms", "get", "delete", "scan", "rename", "named", "take_token"]
OPERATIONS += ["join", "leave", "members", "remove", "append", "history"]
OPERATIONS += ["get_message", "edit", "delete_message", "react", "unreact", "unread"]
OPERATIONS += ["create_room", "get_room", "set_topic", "public_rooms", "member_count"]
OPERATIONS += ["get_room_user", "room_users", "set_role", "invite", "set_muted", "mark_read"]
OPERATIONS += ["read_marks"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_missing_table_raises_store_error(dynamodb_client: Any, operation: str) -> None:
    store = DynamoDBStore(dynamodb_client, unique_tables())

    with pytest.raises(StoreError) as raised:
        _every_operation(store)[operation]()

    assert not isinstance(raised.value, StoreUnavailable)  # retrying will not create the table
    assert isinstance(raised.value.__cause__, ClientError)
    assert raised.value.__cause__.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound, so nothing else takes it, but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_unreachable_endpoint_raises_store_unavailable_quickly(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, closed_port: int, operation: str
) -> None:
    # The production client (from_environment: retries, timeouts), pointed at a dead endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port}")
    store = DynamoDBStore.from_environment(TableNames())

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        _every_operation(store)[operation]()
    elapsed = time.monotonic() - started
    store.close()

    assert isinstance(raised.value.__cause__, BotoCoreError)
    assert elapsed < 15.0  # a few refused attempts with standard-mode backoff, never a hang


class _ScriptedDynamoDB(BaseHTTPRequestHandler):
    """Answers each DynamoDB operation as scripted: ``{operation: (status, JSON body)}``, with
    ``"*"`` for any other; records the operations it was asked for."""

    script: dict[str, tuple[int, dict[str, Any]]]
    asked: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.asked.append(operation)
        status, reply = self.script.get(operation) or self.script["*"]
        body = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def error(code: str, **fields: Any) -> dict[str, Any]:
    """A DynamoDB error body: its ``__type`` and message."""
    return {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected", **fields}


def cancelled(*reasons: str) -> tuple[int, dict[str, Any]]:
    """A TransactWriteItems answer: cancelled, with one reason per item."""
    return 400, error(
        "TransactionCanceledException", CancellationReasons=[{"Code": r} for r in reasons]
    )


@contextmanager
def scripted_store(
    script: dict[str, tuple[int, dict[str, Any]]],
) -> Iterator[tuple[DynamoDBStore, list[str]]]:
    """A DynamoDBStore whose endpoint on 127.0.0.1 answers as ``script`` says (botocore's own
    retries off), and the list of operations the endpoint was asked for."""
    asked: list[str] = []
    handler = type("Handler", (_ScriptedDynamoDB,), {"script": script, "asked": asked})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            config=Config(retries={"total_max_attempts": 1}),
        )
        yield DynamoDBStore(client, TableNames()), asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ProvisionedThroughputExceededException", StoreUnavailable),
        (400, "ThrottlingException", StoreUnavailable),
        (400, "RequestLimitExceeded", StoreUnavailable),
        (500, "InternalServerError", StoreUnavailable),
        (503, "ServiceUnavailable", StoreUnavailable),
        (400, "ValidationException", StoreError),
        (400, "AccessDeniedException", StoreError),
    ],
)
def test_dynamodb_errors_map_to_store_errors(
    aws_env: None, status: int, code: str, expected: type[StoreError]
) -> None:
    with (
        scripted_store({"*": (status, error(code))}) as (store, _),
        pytest.raises(StoreError) as raised,
    ):
        store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    assert type(raised.value) is expected
    assert isinstance(raised.value.__cause__, ClientError)


def test_a_transaction_that_keeps_conflicting_is_retried_then_unavailable(aws_env: None) -> None:
    script = {"*": cancelled("TransactionConflict", "None")}
    with scripted_store(script) as (store, asked), pytest.raises(StoreUnavailable):
        join(store, "lobby", ALICE, "alice")

    assert 1 < asked.count("TransactWriteItems") <= 5


def test_a_transaction_cancelled_by_a_malformed_item_is_a_store_error(aws_env: None) -> None:
    script = {"*": cancelled("ValidationError", "None")}
    with scripted_store(script) as (store, asked), pytest.raises(StoreError) as raised:
        join(store, "lobby", ALICE, "alice")

    assert not isinstance(raised.value, StoreUnavailable)
    assert asked == ["TransactWriteItems"]  # retrying the same item cannot help


def test_an_append_that_always_loses_the_race_for_the_next_id_is_unavailable(
    aws_env: None,
) -> None:
    script = {"GetItem": (200, {}), "*": cancelled("ConditionalCheckFailed", "None")}
    with scripted_store(script) as (store, asked), pytest.raises(StoreUnavailable):
        store.append_message(message("lobby", "hi"))

    # Each try reads the room's last id again before writing.
    assert asked.count("GetItem") == asked.count("TransactWriteItems") > 1


def test_a_token_take_that_always_loses_the_race_is_unavailable(aws_env: None) -> None:
    script = {
        "GetItem": (200, {"Item": {"connectionId": {"S": ALICE}}}),
        "*": (400, error("ConditionalCheckFailedException")),
    }
    with scripted_store(script) as (store, asked), pytest.raises(StoreUnavailable):
        store.take_token(ALICE, TS, RateLimit())

    assert asked.count("GetItem") == asked.count("UpdateItem") > 1


# --- Configuration from the environment, as a Lambda function gets it --------------------------


def test_open_store_from_env_reaches_the_tables_named_by_the_environment(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    dynamodb_client: Any,
    dynamodb_tables: TableNames,
) -> None:
    monkeypatch.setenv("WSCHAT_STORE", "dynamodb")
    for field, variable in TableNames.ENV.items():
        monkeypatch.setenv(variable, getattr(dynamodb_tables, field))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)

    store = open_store_from_env()
    try:
        connection = connect(store, ALICE, "alice", "lobby")
        assert store.get_connection(ALICE) == connection
        assert list(store.scan_connection_ids()) == [ALICE]
        stored = store.append_message(message("lobby", "hi"))
        store.mark_read("lobby", "alice", stored.id)
        # Each record is in the table its variable names, on the moto server.
        for table, key in [
            (dynamodb_tables.connections, {"connectionId": {"S": ALICE}}),
            (dynamodb_tables.members, {"room": {"S": "lobby"}, "connectionId": {"S": ALICE}}),
            (dynamodb_tables.messages, {"room": {"S": "lobby"}, "id": {"S": stored.id}}),
            (dynamodb_tables.rooms, {"room": {"S": "lobby"}}),
            (dynamodb_tables.room_users, {"room": {"S": "lobby"}, "user": {"S": "alice"}}),
        ]:
            assert "Item" in dynamodb_client.get_item(TableName=table, Key=key), table
        store.delete_connection(ALICE)
        assert store.get_connection(ALICE) is None
    finally:
        store.close()

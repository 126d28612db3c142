"""The chat's use cases (docs/protocol.md) through ``ChatService``, with no Lambda around it:
the real SQLite store in memory, a recording Sender and a clock moved by hand.

The service raises ``ProtocolError`` for a frame it refuses and sends nothing itself; the
handlers turn that into the one ``error`` reply (``test_handlers.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.unit.conftest import Chat, Clock, RecordingSender

from wschat import protocol
from wschat.auth import AuthError, issue_token
from wschat.chat.lifecycle import guest_name
from wschat.protocol import ProtocolError
from wschat.service import ChatConfig, ChatService
from wschat.storage.base import RateLimit

ALICE, BOB, CAROL = "conn-alice", "conn-bob", "conn-carol"
SECRET = "test-secret-for-hs256-at-least-32-bytes!"
SEED_FRAME = '{"action":"sendMessage","message":"hi"}'


@pytest.fixture
def make_chat() -> Iterator[Callable[..., Chat]]:
    """``make_chat(config)``: a Chat with other settings, closed after the test."""
    made: list[Chat] = []

    def make(config: ChatConfig | None = None, *, clock: Clock | None = None) -> Chat:
        made.append(Chat(config, clock=clock))
        return made[-1]

    yield make
    for chat in made:
        chat.close()


@pytest.fixture
def trio(chat: Chat) -> Chat:
    """alice, bob and carol connected, all in lobby; what connecting sent is forgotten."""
    for connection_id, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        chat.connect(connection_id, name=name)
    chat.sender.clear()
    return chat


def say(chat: Chat, connection_id: str, *texts: str, room: str = "lobby") -> list[str]:
    """Send messages a tenth of a second apart (the default rate); returns their ids."""
    ids = []
    for text in texts:
        chat.clock.advance(100)
        outcome = chat.do(connection_id, "sendMessage", message=text, room=room)
        assert outcome.message_id is not None
        ids.append(outcome.message_id)
    return ids


def history(chat: Chat, connection_id: str, **fields: Any) -> dict[str, Any]:
    """The ``history`` event a connection gets for one history frame."""
    chat.sender.clear()
    chat.do(connection_id, "history", **fields)
    [page] = chat.sender.received(connection_id)
    assert page["type"] == "history"
    return page


def texts(page: dict[str, Any]) -> list[str]:
    return [message["text"] for message in page["messages"]]


def rooms_of(chat: Chat, connection_id: str) -> set[str] | None:
    record = chat.store.get_connection(connection_id)
    return None if record is None else set(record.rooms)


def name_of(chat: Chat, connection_id: str) -> str | None:
    record = chat.store.get_connection(connection_id)
    return None if record is None else record.name


# --- $connect ---------------------------------------------------------------------------------


def test_connection_without_a_name_is_guest_and_four_characters_of_its_id(chat: Chat) -> None:
    assert chat.connect("Cq3vTfXwoE0CIeQ=") == "guest-cq3v"

    assert name_of(chat, "Cq3vTfXwoE0CIeQ=") == "guest-cq3v"


def test_guest_names_skip_characters_a_name_cannot_have() -> None:
    assert guest_name("+/=Ab9xyz") == "guest-ab9x"
    assert guest_name("+/==") == "guest-anon"
    assert protocol.check_name(guest_name("Cq3vTfXwoE0CIeQ="), None)


def test_name_in_the_query_names_the_connection(chat: Chat) -> None:
    assert chat.connect(ALICE, name="alice") == "alice"

    assert name_of(chat, ALICE) == "alice"
    assert rooms_of(chat, ALICE) == {"lobby"}


def test_rooms_in_the_query_are_joined_besides_lobby(chat: Chat) -> None:
    chat.connect(ALICE, name="alice", room="a,b")

    assert rooms_of(chat, ALICE) == {"lobby", "a", "b"}
    for room in ("lobby", "a", "b"):
        assert [m.connection_id for m in chat.store.room_members(room)] == [ALICE]


def test_room_query_ignores_blanks_spaces_and_repeats(chat: Chat) -> None:
    chat.connect(ALICE, name="alice", room=" a, ,a,lobby,")

    assert rooms_of(chat, ALICE) == {"lobby", "a"}


@pytest.mark.parametrize(
    "query",
    [
        {"name": "two words"},
        {"name": "x" * 33},
        {"name": "system"},
        {"name": "Server"},
        {"name": "alice", "room": "General"},
        {"name": "alice", "room": "a,b c"},
        {"name": "alice", "room": "a,_b"},
    ],
    ids=lambda query: json.dumps(query),
)
def test_invalid_name_or_room_refuses_the_connection_and_stores_nothing(
    trio: Chat, query: dict[str, str]
) -> None:
    with pytest.raises(ProtocolError) as caught:
        trio.connect("conn-dave", **query)

    assert caught.value.code == protocol.BAD_REQUEST
    assert trio.store.get_connection("conn-dave") is None
    assert len(trio.store.room_members("lobby")) == 3
    assert trio.store.room_members("a") == []
    assert trio.sender.posts == []


def test_joining_on_connect_is_announced_to_the_other_members_not_the_newcomer(
    chat: Chat,
) -> None:
    chat.connect(ALICE, name="alice", room="a")
    chat.connect(BOB, name="bob")
    chat.sender.clear()

    chat.connect(CAROL, name="carol", room="a")

    assert chat.sender.received(CAROL) == []
    assert chat.sender.received(ALICE) == [
        {
            "type": "joined",
            "room": "lobby",
            "name": "carol",
            "ts": chat.clock.now,
            "members": ["alice", "bob", "carol"],
        },
        {
            "type": "joined",
            "room": "a",
            "name": "carol",
            "ts": chat.clock.now,
            "members": ["alice", "carol"],
        },
    ]
    assert chat.sender.types(BOB) == ["joined"], "bob is not in a"


def test_first_connection_sends_nothing(chat: Chat) -> None:
    chat.connect(ALICE, name="alice", room="a")

    assert chat.sender.posts == []


def test_a_connection_is_not_taken_for_gone_during_its_own_connect(trio: Chat) -> None:
    # Until $connect returns, API Gateway answers 410 for the new connection.
    trio.sender.gone = {"conn-dave"}

    trio.connect("conn-dave", name="dave")

    assert trio.store.get_connection("conn-dave") is not None
    assert "conn-dave" not in trio.sender.recipients()


def test_a_message_sent_while_a_connection_is_connecting_does_not_forget_it(trio: Chat) -> None:
    # Two Lambdas on one store: bob's sendMessage runs while dave's $connect announces him.
    bob_sender = RecordingSender()
    bob_sender.gone = {"conn-dave"}  # API Gateway: 410 until dave's $connect returns
    bob_lambda = ChatService(trio.store, bob_sender, ChatConfig(), now_ms=trio.clock)

    def bob_sends_meanwhile(connection_id: str, event: dict[str, Any]) -> None:
        if event["type"] == "joined" and not bob_sender.posts:
            bob_lambda.handle(BOB, SEED_FRAME)

    trio.sender.on_post = bob_sends_meanwhile

    trio.connect("conn-dave", name="dave")

    assert bob_sender.recipients("message") == {ALICE, BOB, CAROL}
    assert trio.store.get_connection("conn-dave") is not None


# --- $connect with sign-in on ------------------------------------------------------------------
# The authorizer (wschat.handlers.authorize, tests/unit/test_sign_in_tokens.py) checks tokens;
# the service takes the name from its context, and without one refuses: fail closed.


@pytest.fixture
def guarded(make_chat: Callable[..., Chat]) -> Chat:
    return make_chat(ChatConfig(auth_required=True))


def signed_in(chat: Chat, connection_id: str, user: str, **query: str) -> str:
    """``$connect`` after the authorizer allowed ``user``."""
    context = {"principalId": f"sub-{user}", "name": user, "sub": f"sub-{user}"}
    return chat.service.connect(connection_id, chat.clock(), query, context)


@pytest.mark.parametrize(
    "query",
    [{}, {"name": "alice"}, {"token": issue_token("alice", SECRET)}],
    ids=["nothing", "name-only", "token-but-no-authorizer"],
)
def test_with_sign_in_on_a_connect_the_authorizer_did_not_name_is_refused(
    guarded: Chat, query: dict[str, str]
) -> None:
    with pytest.raises(AuthError) as caught:
        guarded.connect(ALICE, **query)

    assert caught.value.status == 401
    assert guarded.store.get_connection(ALICE) is None


def test_with_sign_in_on_the_name_is_the_authorizers_whatever_the_query_says(
    guarded: Chat,
) -> None:
    name = signed_in(guarded, ALICE, "alice", name="mallory")

    assert name == "alice"
    assert name_of(guarded, ALICE) == "alice"


def test_with_sign_in_on_set_name_is_unauthorized_and_changes_nothing(guarded: Chat) -> None:
    signed_in(guarded, ALICE, "alice")
    signed_in(guarded, BOB, "bob")
    guarded.sender.clear()

    error = guarded.refused(ALICE, "setName", name="bob2")

    assert (error.code, error.action) == (protocol.UNAUTHORIZED, "setName")
    assert name_of(guarded, ALICE) == "alice"
    assert guarded.sender.posts == []


# --- $disconnect ------------------------------------------------------------------------------


def test_disconnect_forgets_the_connection_and_tells_each_of_its_rooms(trio: Chat) -> None:
    trio.do(ALICE, "join", room="a")
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    outcome = trio.service.disconnect(ALICE)

    assert trio.store.get_connection(ALICE) is None
    assert {m.connection_id for m in trio.store.room_members("a")} == {BOB}
    assert [(e["type"], e["room"], e["members"]) for e in trio.sender.received(BOB)] == [
        ("left", "a", ["bob"]),
        ("left", "lobby", ["bob", "carol"]),
    ]
    assert trio.sender.types(CAROL) == ["left"]
    assert ALICE not in trio.sender.recipients()
    assert outcome.delivered == 3


def test_disconnect_of_an_unknown_connection_does_nothing(trio: Chat) -> None:
    outcome = trio.service.disconnect("conn-unknown")

    assert trio.sender.posts == []
    assert outcome.delivered == 0
    assert len(trio.store.room_members("lobby")) == 3


# --- sendMessage ------------------------------------------------------------------------------


def test_seed_frame_is_a_message_to_everyone_in_lobby(trio: Chat) -> None:
    trio.service.handle(ALICE, SEED_FRAME)

    assert trio.sender.recipients("message") == {ALICE, BOB, CAROL}
    [message] = trio.sender.received(BOB)
    assert message == {
        "type": "message",
        "id": message["id"],
        "room": "lobby",
        "from": "alice",
        "text": "hi",
        "ts": trio.clock.now,
    }


def test_sender_gets_an_ack_before_its_own_message(trio: Chat) -> None:
    trio.do(ALICE, "sendMessage", message="hi")

    ack, message = trio.sender.received(ALICE)
    assert ack == {
        "type": "ack",
        "id": message["id"],
        "clientId": None,
        "ts": message["ts"],
        "room": "lobby",
    }
    assert message["type"] == "message"
    assert trio.sender.recipients("ack") == {ALICE}


def test_the_ack_and_the_message_go_in_one_sender_call(trio: Chat) -> None:
    calls = trio.sender.batch_calls

    trio.do(ALICE, "sendMessage", message="hi")
    trio.do(ALICE, "direct", to="bob", message="psst")

    assert trio.sender.batch_calls == calls + 2


def test_client_id_is_echoed_in_the_ack_and_the_message(trio: Chat) -> None:
    trio.do(ALICE, "sendMessage", message="hi", clientId="tab1-42")

    ack, message = trio.sender.received(ALICE)
    assert ack["clientId"] == message["clientId"] == "tab1-42"
    assert trio.sender.received(CAROL) == [message]


def test_message_without_client_id_carries_none(trio: Chat) -> None:
    trio.do(ALICE, "sendMessage", message="hi")

    [message] = trio.sender.received(BOB)
    assert "clientId" not in message


def test_message_reaches_every_member_of_its_room_and_nobody_else(trio: Chat) -> None:
    trio.do(ALICE, "join", room="a")
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    trio.do(BOB, "sendMessage", message="just us", room="a")

    assert trio.sender.recipients("message") == {ALICE, BOB}
    assert trio.sender.received(CAROL) == []
    assert [m["room"] for m in trio.sender.received(ALICE)] == ["a"]


def test_message_to_a_room_not_joined_is_not_in_room_and_stores_nothing(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    error = trio.refused(ALICE, "sendMessage", message="let me in", room="a")

    assert (error.code, error.action) == (protocol.NOT_IN_ROOM, "sendMessage")
    assert "'a'" in error.message
    assert trio.store.message_history("a").messages == []
    assert trio.sender.posts == [], "the service sends nothing; the handler replies the error"


def test_message_to_a_room_that_does_not_exist_is_not_in_room(trio: Chat) -> None:
    error = trio.refused(ALICE, "sendMessage", message="hello?", room="nowhere")

    assert error.code == protocol.NOT_IN_ROOM


def test_message_of_the_limit_is_sent_and_one_over_it_is_too_long(trio: Chat) -> None:
    trio.do(ALICE, "sendMessage", message="x" * 4000)

    error = trio.refused(ALICE, "sendMessage", message="x" * 4001)

    assert (error.code, error.action) == (protocol.TOO_LONG, "sendMessage")
    assert [len(m.text) for m in trio.store.message_history("lobby").messages] == [4000]


def test_message_limit_comes_from_wschat_max_message_chars(
    make_chat: Callable[..., Chat],
) -> None:
    chat = make_chat(ChatConfig.from_env({"WSCHAT_MAX_MESSAGE_CHARS": "10"}))
    chat.connect(ALICE, name="alice")

    chat.do(ALICE, "sendMessage", message="x" * 10)
    error = chat.refused(ALICE, "sendMessage", message="x" * 11)

    assert error.code == protocol.TOO_LONG
    assert "10" in error.message


def test_message_is_stored_before_anyone_receives_it(trio: Chat) -> None:
    seen_in_store: list[bool] = []

    def check(connection_id: str, event: dict[str, Any]) -> None:
        if event["type"] in ("ack", "message"):
            stored = trio.store.message_history(event.get("room", "lobby")).messages
            seen_in_store.append(event["id"] in [m.id for m in stored])

    trio.sender.on_post = check

    trio.do(ALICE, "sendMessage", message="durable")

    assert seen_in_store == [True] * 4, "the ack and three messages, each after the write"


def test_history_shows_a_sent_message(trio: Chat) -> None:
    [message_id] = say(trio, ALICE, "remember me")

    page = history(trio, BOB, room="lobby")

    [message] = page["messages"]
    assert (message["id"], message["from"], message["text"]) == (message_id, "alice", "remember me")


def test_gone_member_is_removed_and_its_rooms_told_it_left(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    trio.do(ALICE, "join", room="a")
    trio.sender.clear()
    trio.sender.gone = {BOB}
    trio.clock.advance(31_000)  # past $connect's time limit: a 410 now means bob is gone

    outcome = trio.do(ALICE, "sendMessage", message="anyone?")

    assert trio.store.get_connection(BOB) is None
    assert {m.connection_id for m in trio.store.room_members("a")} == {ALICE}
    assert trio.sender.received(CAROL, "message")[0]["text"] == "anyone?"
    left = [(e["room"], e["name"], e["members"]) for e in trio.sender.received(ALICE, "left")]
    assert left == [("a", "bob", ["alice"]), ("lobby", "bob", ["alice", "carol"])]
    assert [e["room"] for e in trio.sender.received(CAROL, "left")] == ["lobby"]
    assert outcome.gone == 1


def test_failing_member_does_not_stop_the_others(trio: Chat) -> None:
    trio.sender.failing = {BOB: "LimitExceededException"}

    outcome = trio.do(ALICE, "sendMessage", message="hi")

    assert trio.sender.recipients("message") == {ALICE, CAROL}
    assert trio.store.get_connection(BOB) is not None, "a failure is not a 410"
    assert (outcome.delivered, outcome.gone, outcome.failed) == (2, 0, 1)
    [(warning, extra)] = trio.log.warnings
    assert warning == "delivery failed"
    assert extra == {"recipient": BOB, "reason": "LimitExceededException"}


def test_outcome_names_the_action_and_the_stored_message(trio: Chat) -> None:
    outcome = trio.do(ALICE, "sendMessage", message="hi")

    assert outcome.action == "sendMessage"
    assert outcome.message_id == trio.store.message_history("lobby").messages[0].id
    assert outcome.delivered == 3


def test_ack_to_a_sender_that_is_gone_is_dropped_quietly(trio: Chat) -> None:
    trio.sender.gone = {ALICE}
    trio.clock.advance(31_000)  # past $connect's time limit: a 410 now means alice is gone

    trio.do(ALICE, "sendMessage", message="and I'm gone")

    assert trio.sender.recipients("message") == {BOB, CAROL}
    assert trio.store.get_connection(ALICE) is None, "its message post found it gone"


# --- join -------------------------------------------------------------------------------------


def test_join_is_announced_to_the_room_with_its_members(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    trio.do(ALICE, "join", room="a")

    joined = {
        "type": "joined",
        "room": "a",
        "name": "alice",
        "ts": trio.clock.now,
        "members": ["alice", "bob"],
    }
    assert trio.sender.received(BOB) == [joined]
    assert trio.sender.received(ALICE)[0] == joined
    assert trio.sender.received(CAROL) == []
    assert rooms_of(trio, ALICE) == {"lobby", "a"}


def test_joiner_gets_presence_and_a_history_page_after_joined(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    say(trio, BOB, "one", "two", room="a")
    trio.sender.clear()

    trio.do(ALICE, "join", room="a")

    assert trio.sender.types(ALICE) == ["joined", "presence", "history"]
    _, presence, page = trio.sender.received(ALICE)
    assert presence == {"type": "presence", "room": "a", "members": ["alice", "bob"]}
    assert (page["room"], texts(page), page["more"]) == ("a", ["one", "two"], False)


def test_joins_history_page_is_the_newest_fifty(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    say(trio, BOB, *[f"#{n}" for n in range(55)], room="a")
    trio.sender.clear()

    trio.do(ALICE, "join", room="a")

    page = trio.sender.received(ALICE, "history")[0]
    assert texts(page) == [f"#{n}" for n in range(5, 55)]
    assert page["more"] is True


def test_joining_a_room_again_announces_nothing(trio: Chat) -> None:
    trio.do(ALICE, "join", room="a")
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    trio.do(ALICE, "join", room="a")

    assert trio.sender.received(BOB) == []
    assert trio.sender.types(ALICE) == ["presence", "history"]


def test_join_of_an_invalid_room_is_bad_request(trio: Chat) -> None:
    error = trio.refused(ALICE, "join", room="Not A Room")

    assert (error.code, error.action) == (protocol.BAD_REQUEST, "join")
    assert rooms_of(trio, ALICE) == {"lobby"}


# --- leave ------------------------------------------------------------------------------------


def test_leave_is_announced_to_the_room_and_the_leaver(trio: Chat) -> None:
    for connection_id in (ALICE, BOB):
        trio.do(connection_id, "join", room="a")
    trio.sender.clear()

    trio.do(ALICE, "leave", room="a")

    left = {"type": "left", "room": "a", "name": "alice", "ts": trio.clock.now, "members": ["bob"]}
    assert trio.sender.received(BOB) == [left]
    assert trio.sender.received(ALICE) == [left]
    assert trio.sender.received(CAROL) == []
    assert rooms_of(trio, ALICE) == {"lobby"}


def test_last_one_out_is_told_the_room_is_empty(trio: Chat) -> None:
    trio.do(ALICE, "join", room="a")
    trio.sender.clear()

    trio.do(ALICE, "leave", room="a")

    [left] = trio.sender.received(ALICE)
    assert (left["type"], left["members"]) == ("left", [])


def test_leave_of_a_room_not_joined_is_not_in_room(trio: Chat) -> None:
    error = trio.refused(ALICE, "leave", room="a")

    assert (error.code, error.action) == (protocol.NOT_IN_ROOM, "leave")
    assert trio.sender.posts == []


def test_after_leaving_a_room_its_messages_miss_the_leaver(trio: Chat) -> None:
    for connection_id in (ALICE, BOB):
        trio.do(connection_id, "join", room="a")
    trio.do(ALICE, "leave", room="a")
    trio.sender.clear()

    trio.do(BOB, "sendMessage", message="bye alice", room="a")

    assert trio.sender.recipients("message") == {BOB}
    assert trio.refused(ALICE, "sendMessage", message="wait", room="a").code == "not_in_room"
    assert trio.refused(ALICE, "history", room="a").code == "not_in_room"


# --- setName ----------------------------------------------------------------------------------


def test_rename_is_announced_to_every_room_of_the_renamer(trio: Chat) -> None:
    for connection_id in (ALICE, BOB):
        trio.do(connection_id, "join", room="a")
    trio.sender.clear()

    trio.do(ALICE, "setName", name="ann")

    def renames(connection_id: str) -> list[tuple[str, str, str, list[str]]]:
        events = trio.sender.received(connection_id, "renamed")
        return [(e["room"], e["from"], e["to"], e["members"]) for e in events]

    assert renames(BOB) == [
        ("a", "alice", "ann", ["ann", "bob"]),
        ("lobby", "alice", "ann", ["ann", "bob", "carol"]),
    ]
    assert renames(CAROL) == [("lobby", "alice", "ann", ["ann", "bob", "carol"])]
    assert renames(ALICE) == renames(BOB)
    assert trio.sender.types(ALICE)[-1] == "hello"


def test_after_set_name_hello_and_messages_use_the_new_name(trio: Chat) -> None:
    trio.do(ALICE, "setName", name="ann")
    trio.sender.clear()

    trio.do(ALICE, "hello")
    trio.do(ALICE, "sendMessage", message="it's ann now")

    hello = trio.sender.received(ALICE, "hello")[0]
    assert hello == {
        "type": "hello",
        "connectionId": ALICE,
        "name": "ann",
        "rooms": ["lobby"],
        "protocol": 1,
        "unread": {"lobby": 0},
    }
    assert trio.sender.received(BOB, "message")[0]["from"] == "ann"
    assert trio.store.connection_ids_named("alice") == []
    assert trio.store.connection_ids_named("ann") == [ALICE]


def test_set_name_to_the_current_name_only_says_hello(trio: Chat) -> None:
    trio.do(ALICE, "setName", name="alice")

    assert trio.sender.types(ALICE) == ["hello"]
    assert trio.sender.recipients() == {ALICE}


@pytest.mark.parametrize(
    "name", ["x" * 33, "two words", "system", "SYSTEM", "server", "wschat", "", "a/b", 7, None]
)
def test_bad_name_is_bad_request_and_changes_nothing(trio: Chat, name: Any) -> None:
    error = trio.refused(ALICE, "setName", name=name)

    assert (error.code, error.action) == (protocol.BAD_REQUEST, "setName")
    assert name_of(trio, ALICE) == "alice"
    assert trio.sender.posts == []


# --- who and hello ----------------------------------------------------------------------------


def test_who_answers_the_sorted_names_each_once(chat: Chat) -> None:
    for connection_id, name in [("c1", "carol"), ("c2", "alice"), ("c3", "bob"), ("c4", "alice")]:
        chat.connect(connection_id, name=name)
    chat.sender.clear()

    chat.do("c3", "who")

    assert chat.sender.received("c3") == [
        {"type": "presence", "room": "lobby", "members": ["alice", "bob", "carol"]}
    ]
    assert chat.sender.recipients() == {"c3"}


def test_who_of_another_room(trio: Chat) -> None:
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    trio.do(BOB, "who", room="a")

    assert trio.sender.received(BOB) == [{"type": "presence", "room": "a", "members": ["bob"]}]


def test_hello_tells_the_connection_who_and_where_it_is(chat: Chat) -> None:
    chat.connect(ALICE, name="alice", room="zeta,alpha")

    chat.do(ALICE, "hello")

    assert chat.sender.received(ALICE) == [
        {
            "type": "hello",
            "connectionId": ALICE,
            "name": "alice",
            "rooms": ["alpha", "lobby", "zeta"],
            "protocol": protocol.PROTOCOL_VERSION,
            "unread": {"alpha": 0, "lobby": 0, "zeta": 0},
        }
    ]


# --- history ----------------------------------------------------------------------------------


@pytest.fixture
def five(trio: Chat) -> list[str]:
    """Five messages #0..#4 in lobby; their ids."""
    return say(trio, ALICE, *[f"#{n}" for n in range(5)])


def test_history_without_a_cursor_is_the_newest_page_oldest_first(
    trio: Chat, five: list[str]
) -> None:
    page = history(trio, BOB, room="lobby", limit=2)

    assert page["room"] == "lobby"
    assert texts(page) == ["#3", "#4"]
    assert page["more"] is True, "older messages exist"
    assert history(trio, BOB, room="lobby")["more"] is False


def test_history_before_scrolls_back(trio: Chat, five: list[str]) -> None:
    page = history(trio, BOB, room="lobby", before=five[4], limit=2)
    assert (texts(page), page["more"]) == (["#2", "#3"], True)

    page = history(trio, BOB, room="lobby", before=five[2], limit=2)
    assert (texts(page), page["more"]) == (["#0", "#1"], False)


def test_history_after_catches_up_exactly_the_missed_messages(trio: Chat, five: list[str]) -> None:
    page = history(trio, BOB, room="lobby", after=five[1])
    assert (texts(page), page["more"]) == (["#2", "#3", "#4"], False)

    page = history(trio, BOB, room="lobby", after=five[0], limit=2)
    assert (texts(page), page["more"]) == (["#1", "#2"], True), "newer messages exist"

    page = history(trio, BOB, room="lobby", after=five[4])
    assert (texts(page), page["more"]) == ([], False)


def test_history_echoes_the_cursor_it_was_asked_with(trio: Chat, five: list[str]) -> None:
    # So a client knows whether `more` means newer messages or older ones.
    assert history(trio, BOB, room="lobby", after=five[1])["after"] == five[1]
    assert history(trio, BOB, room="lobby", before=five[1])["before"] == five[1]
    newest = history(trio, BOB, room="lobby")
    assert "after" not in newest and "before" not in newest


@pytest.mark.parametrize("limit", [1, 100])
def test_history_limit_of_1_to_100_is_accepted(trio: Chat, five: list[str], limit: int) -> None:
    assert len(history(trio, BOB, room="lobby", limit=limit)["messages"]) == min(limit, 5)


@pytest.mark.parametrize("limit", [0, 101, -1, "5", True, 2.5, None], ids=repr)
def test_history_limit_out_of_bounds_or_not_a_whole_number_is_bad_request(
    trio: Chat, limit: Any
) -> None:
    error = trio.refused(BOB, "history", room="lobby", limit=limit)

    assert (error.code, error.action) == (protocol.BAD_REQUEST, "history")
    assert trio.sender.posts == []


def test_history_after_and_before_together_is_bad_request(trio: Chat, five: list[str]) -> None:
    error = trio.refused(BOB, "history", room="lobby", after=five[0], before=five[4])

    assert error.code == protocol.BAD_REQUEST


def test_history_of_a_room_not_joined_is_not_in_room(trio: Chat) -> None:
    trio.do(ALICE, "join", room="a")
    say(trio, ALICE, "secret", room="a")

    error = trio.refused(BOB, "history", room="a")

    assert (error.code, error.action) == (protocol.NOT_IN_ROOM, "history")


def test_history_with_a_user_lists_the_direct_messages_of_both_sides(trio: Chat) -> None:
    trio.do(ALICE, "direct", to="bob", message="hi bob")
    trio.clock.advance(100)
    trio.do(BOB, "direct", to="alice", message="hi alice")
    trio.clock.advance(100)
    trio.do(CAROL, "direct", to="bob", message="not for alice")

    for reader, other in ((ALICE, "bob"), (BOB, "alice")):
        page = history(trio, reader, **{"with": other})
        assert page["with"] == other
        assert "room" not in page
        assert [(m["type"], m["from"], m["to"], m["text"]) for m in page["messages"]] == [
            ("direct", "alice", "bob", "hi bob"),
            ("direct", "bob", "alice", "hi alice"),
        ]
    assert texts(history(trio, CAROL, **{"with": "alice"})) == []


def test_room_history_does_not_list_direct_messages(trio: Chat) -> None:
    trio.do(ALICE, "direct", to="bob", message="psst")

    assert texts(history(trio, BOB, room="lobby")) == []


# --- direct -----------------------------------------------------------------------------------


def test_direct_reaches_every_connection_of_the_recipient_and_of_the_sender(chat: Chat) -> None:
    for connection_id, name in [
        ("alice-1", "alice"),
        ("alice-2", "alice"),
        ("bob-1", "bob"),
        ("bob-2", "bob"),
        ("carol-1", "carol"),
    ]:
        chat.connect(connection_id, name=name)
    chat.sender.clear()

    chat.do("alice-1", "direct", to="bob", message="psst", clientId="d-1")

    assert sorted(cid for cid, _ in chat.sender.posts if cid != "alice-1") == [
        "alice-2",
        "bob-1",
        "bob-2",
    ], "each once"
    ack, direct = chat.sender.received("alice-1")
    assert direct == {
        "type": "direct",
        "id": direct["id"],
        "from": "alice",
        "to": "bob",
        "text": "psst",
        "ts": chat.clock.now,
        "clientId": "d-1",
    }
    assert ack == {
        "type": "ack",
        "id": direct["id"],
        "clientId": "d-1",
        "ts": chat.clock.now,
        "to": "bob",
    }
    assert chat.sender.received("bob-2") == [direct]
    assert chat.sender.received("carol-1") == []


def test_direct_to_a_name_nobody_has_is_no_such_user_and_stores_nothing(trio: Chat) -> None:
    error = trio.refused(ALICE, "direct", to="dave", message="hello?")

    assert (error.code, error.action) == (protocol.NO_SUCH_USER, "direct")
    assert "dave" in error.message
    assert texts(history(trio, ALICE, **{"with": "dave"})) == []


def test_direct_to_a_user_who_left_is_no_such_user(trio: Chat) -> None:
    trio.service.disconnect(BOB)

    assert trio.refused(ALICE, "direct", to="bob", message="still there?").code == "no_such_user"


def test_direct_to_ones_own_name_reaches_each_own_connection_once(chat: Chat) -> None:
    chat.connect("alice-1", name="alice")
    chat.connect("alice-2", name="alice")
    chat.sender.clear()

    chat.do("alice-1", "direct", to="alice", message="note to self")

    assert chat.sender.types("alice-1") == ["ack", "direct"]
    assert chat.sender.types("alice-2") == ["direct"]
    assert texts(history(chat, "alice-2", **{"with": "alice"})) == ["note to self"]


# --- rate limit -------------------------------------------------------------------------------


@pytest.fixture
def limited(make_chat: Callable[..., Chat]) -> Chat:
    """Bursts of 3, refilled at the default 10 per second; alice and bob in lobby."""
    chat = make_chat(ChatConfig.from_env({"WSCHAT_RATE_BURST": "3"}))
    assert chat.service.config.rate_limit == RateLimit(rate_per_second=10.0, burst=3)
    chat.connect(ALICE, name="alice")
    chat.connect(BOB, name="bob")
    chat.sender.clear()
    return chat


def test_the_frame_after_a_burst_is_rate_limited_and_goes_nowhere(limited: Chat) -> None:
    for n in range(3):
        limited.do(ALICE, "sendMessage", message=f"#{n}")
    limited.sender.clear()

    error = limited.refused(ALICE, "sendMessage", message="#3")

    assert (error.code, error.action) == (protocol.RATE_LIMITED, "sendMessage")
    assert "3" in error.message
    assert limited.sender.posts == []
    stored = [m.text for m in limited.store.message_history("lobby").messages]
    assert stored == ["#0", "#1", "#2"]


def test_tokens_refill_with_time(limited: Chat) -> None:
    for n in range(3):
        limited.do(ALICE, "sendMessage", message=f"#{n}")

    limited.clock.advance(99)
    assert limited.refused(ALICE, "who").code == protocol.RATE_LIMITED
    limited.clock.advance(1)  # 100 ms at 10 per second: one token
    limited.do(ALICE, "sendMessage", message="#3")
    assert limited.refused(ALICE, "who").code == protocol.RATE_LIMITED

    limited.clock.advance(1_000)  # 10 tokens at 10 per second, but the bucket holds 3
    for _ in range(3):
        limited.do(ALICE, "who")
    assert limited.refused(ALICE, "who").code == protocol.RATE_LIMITED


def test_every_action_counts_against_the_rate(limited: Chat) -> None:
    limited.do(ALICE, "who")
    limited.do(ALICE, "hello")
    limited.do(ALICE, "join", room="a")

    assert limited.refused(ALICE, "sendMessage", message="hi").code == protocol.RATE_LIMITED


def test_rate_is_per_connection(limited: Chat) -> None:
    for n in range(3):
        limited.do(ALICE, "sendMessage", message=f"#{n}")

    limited.do(BOB, "sendMessage", message="my turn")

    assert [m["text"] for m in limited.sender.received(ALICE, "message")][-1] == "my turn"


def test_rate_limited_frame_is_refused_before_its_fields_are_used(limited: Chat) -> None:
    for _ in range(3):
        limited.do(ALICE, "who")

    # Not in room "a" either: the rate is what the client hears about.
    assert limited.refused(ALICE, "sendMessage", message="x", room="a").code == "rate_limited"


# --- what any frame goes through --------------------------------------------------------------


def test_frame_from_a_connection_the_store_does_not_know_is_unavailable(trio: Chat) -> None:
    error = trio.refused("conn-unknown", "sendMessage", message="hi")

    assert (error.code, error.action) == (protocol.UNAVAILABLE, "sendMessage")
    assert trio.store.message_history("lobby").messages == []


def test_action_outside_the_allowed_ones_is_unknown_action_and_does_nothing(trio: Chat) -> None:
    body = json.dumps({"action": "sendMessage", "message": "hi"})

    with pytest.raises(ProtocolError) as caught:
        trio.service.handle(ALICE, body, allowed=("join", "leave"))

    assert (caught.value.code, caught.value.action) == (protocol.UNKNOWN_ACTION, "sendMessage")
    assert trio.store.message_history("lobby").messages == []
    assert trio.sender.posts == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", protocol.INVALID_JSON),
        ("[]", protocol.INVALID_JSON),
        ('{"action": "shout"}', protocol.UNKNOWN_ACTION),
        ('{"message": "hi"}', protocol.BAD_REQUEST),
    ],
)
def test_frame_that_does_not_parse_is_refused_by_the_service(
    trio: Chat, body: str, code: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        trio.service.handle(ALICE, body)

    assert caught.value.code == code
    assert trio.sender.posts == []


# --- big rooms --------------------------------------------------------------------------------


@pytest.fixture
def crowded(make_chat: Callable[..., Chat]) -> Chat:
    """Presence events only in rooms of at most 1; alice, bob and carol in lobby."""
    chat = make_chat(ChatConfig(presence_event_limit=1))
    for connection_id, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        chat.connect(connection_id, name=name)
    chat.sender.clear()
    return chat


def test_rooms_over_the_presence_limit_get_no_joined_left_or_renamed(crowded: Chat) -> None:
    crowded.connect("conn-dave", name="dave")
    crowded.do(ALICE, "setName", name="ann")
    crowded.service.disconnect("conn-dave")

    assert crowded.sender.types(BOB) == []
    assert crowded.sender.types(ALICE) == ["hello"]


def test_leaver_of_a_room_over_the_presence_limit_still_hears_it_left(crowded: Chat) -> None:
    crowded.do(ALICE, "leave", room="lobby")  # bob and carol stay: more than 2

    [left] = crowded.sender.received(ALICE)
    assert (left["type"], left["name"], left["members"]) == ("left", "alice", ["bob", "carol"])
    assert crowded.sender.recipients() == {ALICE}


def test_messages_still_reach_every_member_of_a_room_over_the_presence_limit(
    crowded: Chat,
) -> None:
    crowded.do(ALICE, "sendMessage", message="hi all")

    assert crowded.sender.recipients("message") == {ALICE, BOB, CAROL}


# --- a person with two tabs -------------------------------------------------------------------


def test_a_second_tab_of_someone_present_is_no_arrival(trio: Chat) -> None:
    trio.connect("conn-alice-2", name="alice")

    assert trio.sender.received(BOB, "joined") == []
    assert trio.sender.received(CAROL, "joined") == []


def test_a_second_tab_joining_a_room_tells_only_itself(trio: Chat) -> None:
    trio.connect("conn-alice-2", name="alice")
    trio.do(ALICE, "join", room="a")
    trio.do(BOB, "join", room="a")
    trio.sender.clear()

    trio.do("conn-alice-2", "join", room="a")

    assert trio.sender.received(BOB, "joined") == []
    [own] = trio.sender.received("conn-alice-2", "joined")
    assert (own["room"], own["name"], own["members"]) == ("a", "alice", ["alice", "bob"])


def test_closing_one_of_two_tabs_is_no_departure(trio: Chat) -> None:
    trio.connect("conn-alice-2", name="alice")
    trio.sender.clear()

    trio.service.disconnect("conn-alice-2")

    assert trio.sender.received(BOB, "left") == []
    trio.service.disconnect(ALICE)
    [left] = trio.sender.received(BOB, "left")
    assert (left["name"], left["members"]) == ("alice", ["bob", "carol"])

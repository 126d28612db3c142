"""Every error code of docs/protocol.md, caused over the wire by a real client.

Each error goes to the sender only, as one ``error`` event naming the code (and the action, when
it is known); the connection stays open, and the other clients are sent nothing.
``unauthorized`` needs auth on: test_chat_auth.py causes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway
    from tests.support.chat_client import ChatClient

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


# (frame as sent, the error code, the action the error names or None)
BAD_FRAMES: dict[str, tuple[str, str, str | None]] = {
    "not JSON": ("hello there", "invalid_json", None),
    "empty frame": ("", "invalid_json", None),
    "JSON array": ("[1, 2]", "invalid_json", None),
    "JSON string": ('"sendMessage"', "invalid_json", None),
    "truncated JSON": ('{"action": "sendMessage", "message": "hi"', "invalid_json", None),
    "unknown action": ('{"action": "dance"}', "unknown_action", "dance"),
    "route key as action": ('{"action": "$connect"}', "unknown_action", "$connect"),
    "no action": ('{"message": "hi"}', "bad_request", None),
    "action not text": ('{"action": 5, "message": "hi"}', "bad_request", None),
    "message missing": (
        '{"action": "sendMessage", "room": "general"}',
        "bad_request",
        "sendMessage",
    ),
    "message not text": ('{"action": "sendMessage", "message": 42}', "bad_request", "sendMessage"),
    "message blank": ('{"action": "sendMessage", "message": "   "}', "bad_request", "sendMessage"),
    "clientId over 64": (
        json.dumps({"action": "sendMessage", "message": "hi", "clientId": "c" * 65}),
        "bad_request",
        "sendMessage",
    ),
    "room malformed": ('{"action": "join", "room": "Not A Room"}', "bad_request", "join"),
    "room missing": ('{"action": "join"}', "bad_request", "join"),
    "room over 32": (json.dumps({"action": "join", "room": "r" * 33}), "bad_request", "join"),
    "limit 0": ('{"action": "history", "room": "general", "limit": 0}', "bad_request", "history"),
    "limit 101": (
        '{"action": "history", "room": "general", "limit": 101}',
        "bad_request",
        "history",
    ),
    "limit not a number": (
        '{"action": "history", "room": "general", "limit": "10"}',
        "bad_request",
        "history",
    ),
    "after and before": (
        '{"action": "history", "room": "general", "after": "A", "before": "B"}',
        "bad_request",
        "history",
    ),
    "direct without to": ('{"action": "direct", "message": "hi"}', "bad_request", "direct"),
    "nested too deep": (
        json.dumps({"action": "sendMessage", "message": "hi", "extra": _nested(40)}),
        "bad_request",
        None,
    ),
    "message of 4001": (
        json.dumps({"action": "sendMessage", "room": "general", "message": "x" * 4001}),
        "too_long",
        "sendMessage",
    ),
    "direct of 4001": (
        json.dumps({"action": "direct", "to": "bob", "message": "x" * 4001}),
        "too_long",
        "direct",
    ),
    "send to a room not joined": (
        '{"action": "sendMessage", "room": "random", "message": "hi"}',
        "not_in_room",
        "sendMessage",
    ),
    "history of a room not joined": (
        '{"action": "history", "room": "random"}',
        "not_in_room",
        "history",
    ),
    "leave a room not joined": ('{"action": "leave", "room": "random"}', "not_in_room", "leave"),
    "direct to nobody": (
        '{"action": "direct", "to": "nobody", "message": "hi"}',
        "no_such_user",
        "direct",
    ),
}


@pytest.fixture
def alice_and_bob(chat: ChatGateway) -> tuple[ChatClient, ChatClient]:
    """bob, then alice, both in general; bob has read the news of alice's arrival."""
    bob = chat.client("bob", rooms=["general"])
    alice = chat.client("alice", rooms=["general"])
    bob.next("joined", room="general")
    bob.next("joined", room="lobby")
    return alice, bob


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_one_error_to_the_sender_only_and_the_connection_stays_open(
    alice_and_bob: tuple[ChatClient, ChatClient], case: str
) -> None:
    alice, bob = alice_and_bob
    frame, code, action = BAD_FRAMES[case]

    alice.send_raw(frame)

    error = alice.error()
    assert error["code"] == code
    assert error.get("action") == action
    assert error["message"]
    assert alice.sync() == []  # answered a hello after it: open, and nothing else came
    assert bob.sync() == []


def test_lone_surrogate_escape_is_bad_request_not_a_crash(
    alice_and_bob: tuple[ChatClient, ChatClient],
) -> None:
    # Valid JSON, but "\ud800" is half a UTF-16 pair: no UTF-8 text can hold it.
    alice, bob = alice_and_bob

    alice.send_raw('{"action": "sendMessage", "room": "general", "message": "\\ud800"}')

    assert alice.error()["code"] == "bad_request"
    assert alice.sync() == []
    assert bob.sync() == []


def test_message_of_exactly_4000_characters_is_accepted(
    alice_and_bob: tuple[ChatClient, ChatClient],
) -> None:
    alice, bob = alice_and_bob

    alice.send("sendMessage", room="general", message="x" * 4000)

    assert len(bob.next("message")["text"]) == 4000


def test_leaving_a_room_makes_sending_to_it_not_in_room(
    alice_and_bob: tuple[ChatClient, ChatClient],
) -> None:
    alice, bob = alice_and_bob
    alice.request("leave", "left", room="general")

    alice.send("sendMessage", room="general", message="still here?")

    assert alice.error()["code"] == "not_in_room"
    bob.next("left", room="general")
    assert bob.sync() == []


def test_flooding_past_the_burst_is_rate_limited_for_that_connection_only(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    chat = start_chat_gateway(env={"WSCHAT_RATE_BURST": "5", "WSCHAT_RATE_PER_SECOND": "0.01"})
    bob = chat.client("bob")
    alice = chat.client("alice")
    bob.next("joined", name="alice")

    for n in range(10):
        alice.send("sendMessage", message=f"flood {n}", clientId=f"f-{n}")

    acks = alice.collect("ack", 5)
    errors = alice.collect("error", 5)
    accepted = {ack["clientId"] for ack in acks}
    assert len(accepted) == 5
    assert {(e["code"], e["action"]) for e in errors} == {("rate_limited", "sendMessage")}
    alice.send("sendMessage", message="one more")  # answered, not dropped: the socket is open
    assert alice.error()["code"] == "rate_limited"
    assert [e for e in alice.unread() if e["type"] != "message"] == []
    # bob has his own bucket: he got the five accepted messages, no errors, and can still talk.
    assert {m["clientId"] for m in bob.collect("message", 5)} == accepted
    assert bob.sync() == []
    bob.send("sendMessage", message="calm down")
    assert alice.next("message", text="calm down")["from"] == "bob"


def test_store_that_cannot_be_opened_answers_unavailable_and_stores_nothing(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    # $connect and the rooms functions reach the store; sendMessage/direct and history cannot.
    chat = start_chat_gateway(unopenable_store_for=("sendMessage", "history"))
    bob = chat.client("bob")
    alice = chat.client("alice")
    bob.next("joined", name="alice")

    for action, fields in (
        ("sendMessage", {"message": "anyone?", "clientId": "u-1"}),
        ("direct", {"to": "bob", "message": "psst"}),
        ("history", {"room": "lobby"}),
    ):
        alice.send(action, **fields)
        error = alice.error()
        assert (error["code"], error.get("action")) == ("unavailable", action)

    assert alice.sync() == []
    assert bob.sync() == []
    assert alice.request("join", "history", room="lobby")["messages"] == []  # nothing stored


def test_connect_is_refused_with_503_while_the_store_cannot_be_opened(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    chat = start_chat_gateway(unopenable_store_for=("$connect",))

    assert chat.refused_status("alice") == 503

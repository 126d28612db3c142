"""Rooms end to end: real WebSocket clients on the local gateway running wschat's handlers.

Who receives a room's messages, who hears of joins and leaves, what ``who`` and ``hello``
answer, ``?room=a,b`` on connect, a connection in several rooms, and the seed's own frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _of_type(events: list[dict[str, Any]], type: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if event["type"] == type and all(event.get(k) == v for k, v in fields.items())
    ]


def test_message_to_a_room_reaches_its_members_is_acked_to_the_sender_and_skips_others(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])
    bob = chat.client("bob", rooms=["general"])
    carol = chat.client("carol")  # lobby only

    alice.send("sendMessage", room="general", message="hello general", clientId="c-1")

    ack = alice.next("ack")
    assert ack == {
        "type": "ack",
        "id": ack["id"],
        "ts": ack["ts"],
        "clientId": "c-1",
        "room": "general",
    }
    message = {
        "type": "message",
        "id": ack["id"],
        "room": "general",
        "from": "alice",
        "text": "hello general",
        "ts": ack["ts"],
        "clientId": "c-1",
    }
    assert alice.next("message") == message
    assert bob.next("message") == message
    assert _of_type(carol.sync(), "message") == []


def test_connecting_into_a_room_announces_joined_with_the_members_to_each_room(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])
    carol = chat.client("carol")

    chat.client("bob", rooms=["general"])

    joined = alice.next("joined", room="general")
    assert joined == {
        "type": "joined",
        "room": "general",
        "name": "bob",
        "ts": joined["ts"],
        "members": ["alice", "bob"],
    }
    assert alice.next("joined", room="lobby", name="bob")["members"] == ["alice", "bob", "carol"]
    assert carol.next("joined", room="lobby", name="bob")["members"] == ["alice", "bob", "carol"]
    assert _of_type(carol.sync(), "joined", room="general") == []


def test_join_announces_to_the_room_and_gives_the_joiner_presence_and_history(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])
    alice.send("sendMessage", room="general", message="before bob came")
    alice.next("message")  # delivered: the fan-out is over before bob arrives
    bob = chat.client("bob")

    bob.send("join", room="general")

    assert alice.next("joined", room="general")["name"] == "bob"
    presence = bob.next("presence")
    assert presence == {"type": "presence", "room": "general", "members": ["alice", "bob"]}
    history = bob.next("history")
    assert history["room"] == "general"
    assert [m["text"] for m in history["messages"]] == ["before bob came"]
    assert history["more"] is False
    # From now on bob is a member: general's messages reach him.
    alice.send("sendMessage", room="general", message="welcome bob")
    assert bob.next("message", room="general")["text"] == "welcome bob"


def test_joining_a_room_twice_announces_it_once(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    bob = chat.client("bob")

    bob.send("join", room="general")
    bob.next("history")
    bob.send("join", room="general")
    assert bob.next("presence", room="general")["members"] == ["alice", "bob"]
    bob.next("history")

    assert alice.next("joined", room="general")["name"] == "bob"
    assert _of_type(alice.sync(), "joined", room="general") == []


def test_leave_sends_left_to_the_room_and_the_leaver_and_stops_the_rooms_messages(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])
    bob = chat.client("bob", rooms=["general"])

    bob.send("leave", room="general")

    left = bob.next("left")
    assert left == {
        "type": "left",
        "room": "general",
        "name": "bob",
        "ts": left["ts"],
        "members": ["alice"],
    }
    assert alice.next("left", room="general") == left
    alice.request("sendMessage", "ack", room="general", message="bob is gone")
    alice.next("message")
    assert _of_type(bob.sync(), "message") == []
    assert bob.hello()["rooms"] == ["lobby"]


def test_who_lists_a_rooms_members_sorted_each_name_once(chat: ChatGateway) -> None:
    chat.client("zed", rooms=["general"])
    chat.client("bob", rooms=["general"])
    chat.client("bob", rooms=["general"])  # bob's second tab
    chat.client("carol")  # lobby only
    alice = chat.client("alice", rooms=["general"])

    presence = alice.request("who", "presence", room="general")

    assert presence == {"type": "presence", "room": "general", "members": ["alice", "bob", "zed"]}


def test_room_query_joins_every_listed_room_besides_lobby(chat: ChatGateway) -> None:
    bob = chat.client("bob", rooms=["general"])
    carol = chat.client("carol", rooms=["random"])

    alice = chat.client("alice", rooms=["general", "random"])  # ?room=general,random

    assert alice.hello()["rooms"] == ["general", "lobby", "random"]
    assert bob.next("joined", room="general")["name"] == "alice"
    assert carol.next("joined", room="random")["name"] == "alice"
    assert alice.request("who", "presence", room="general")["members"] == ["alice", "bob"]
    assert alice.request("who", "presence", room="random")["members"] == ["alice", "carol"]


@pytest.mark.parametrize("rooms", [["Not A Room"], ["general", "dm:alice:bob"], ["r" * 33]])
def test_connecting_with_a_malformed_room_is_refused_with_400(
    chat: ChatGateway, rooms: list[str]
) -> None:
    assert chat.refused_status("alice", rooms=rooms) == 400


def test_a_connection_in_several_rooms_gets_each_rooms_messages_and_no_others(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general", "random"])
    bob = chat.client("bob", rooms=["general"])
    carol = chat.client("carol", rooms=["random"])

    bob.send("sendMessage", room="general", message="in general")
    carol.send("sendMessage", room="random", message="in random")

    assert alice.next("message", room="general")["text"] == "in general"
    assert alice.next("message", room="random")["text"] == "in random"
    assert bob.next("message")["text"] == "in general"
    assert carol.next("message")["text"] == "in random"
    assert _of_type(bob.sync(), "message") == []
    assert _of_type(carol.sync(), "message") == []

    alice.request("leave", "left", room="random")
    bob.send("sendMessage", room="general", message="still here")
    assert alice.next("message", room="general")["text"] == "still here"


def test_hello_tells_the_connection_its_id_name_rooms_unread_and_protocol_version(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])

    hello = alice.hello()

    assert hello == {
        "type": "hello",
        "connectionId": hello["connectionId"],
        "name": "alice",
        "rooms": ["general", "lobby"],
        "protocol": 1,
        "unread": {"general": 0, "lobby": 0},
    }
    assert chat.stored_connection_ids() == {hello["connectionId"]}


def test_seed_frame_sends_hi_to_everyone_in_lobby(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    others = [chat.client("bob"), chat.client("carol", rooms=["general"]), chat.client()]

    alice.send_raw('{"action":"sendMessage","message":"hi"}')

    ack = alice.next("ack")
    assert ack["room"] == "lobby"
    for client in [alice, *others]:
        assert client.next("message") == {
            "type": "message",
            "id": ack["id"],
            "room": "lobby",
            "from": "alice",
            "text": "hi",
            "ts": ack["ts"],
        }

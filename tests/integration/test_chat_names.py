"""Names end to end: ``?name=``, ``setName`` renaming a connection in every room it is in, names
the protocol refuses, and the guest names of connections that give none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def test_name_query_is_the_name_others_see(chat: ChatGateway) -> None:
    bob = chat.client("bob", rooms=["general"])
    alice = chat.client("alice", rooms=["general"])

    assert bob.next("joined", room="general")["name"] == "alice"
    alice.send("sendMessage", room="general", message="hi bob")
    assert bob.next("message")["from"] == "alice"
    assert alice.hello()["name"] == "alice"


def test_set_name_renames_the_connection_in_every_room_it_is_in(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general", "random"])
    bob = chat.client("bob", rooms=["general"])
    carol = chat.client("carol", rooms=["random"])
    dave = chat.client("dave")  # lobby only

    alice.send("setName", name="alicia")

    members = {
        "general": ["alicia", "bob"],
        "lobby": ["alicia", "bob", "carol", "dave"],
        "random": ["alicia", "carol"],
    }
    for room, names in members.items():
        renamed = alice.next("renamed", room=room)
        assert renamed == {
            "type": "renamed",
            "room": room,
            "from": "alice",
            "to": "alicia",
            "ts": renamed["ts"],
            "members": names,
        }
    assert alice.next("hello")["name"] == "alicia"
    for client, rooms in (
        (bob, ["general", "lobby"]),
        (carol, ["lobby", "random"]),
        (dave, ["lobby"]),
    ):
        for room in rooms:
            assert client.next("renamed", room=room)["members"] == members[room]
        assert [e for e in client.sync() if e["type"] == "renamed"] == []

    alice.send("sendMessage", room="general", message="call me alicia")
    assert bob.next("message")["from"] == "alicia"
    assert bob.request("who", "presence", room="general")["members"] == ["alicia", "bob"]


def test_a_name_of_32_allowed_characters_is_accepted(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    name = "A.b-c_9" + "x" * 25

    alice.send("setName", name=name)

    assert alice.next("hello")["name"] == name


@pytest.mark.parametrize(
    "name",
    ["", "two words", "x" * 33, "émile", "a/b", "system", "Server", "WSCHAT", 42, None, ["bob"]],
    ids=repr,
)
def test_set_name_to_a_bad_name_is_bad_request_and_renames_nothing(
    chat: ChatGateway, name: Any
) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")

    alice.send("setName", name=name)

    error = alice.error()
    assert (error["code"], error["action"]) == ("bad_request", "setName")
    assert error["message"]
    assert alice.hello()["name"] == "alice"  # open, and still alice
    assert bob.sync() == []


@pytest.mark.parametrize("name", ["two words", "x" * 33, "system"])
def test_connecting_with_a_bad_name_is_refused_with_400(chat: ChatGateway, name: str) -> None:
    assert chat.refused_status(name) == 400


def test_connecting_without_a_name_gives_a_guest_name_from_the_connection_id(
    chat: ChatGateway,
) -> None:
    bob = chat.client("bob")

    guest = chat.client()

    hello = guest.hello()
    letters = "".join(ch for ch in hello["connectionId"] if ch.isalnum())[:4].lower()
    assert hello["name"] == f"guest-{letters}"
    assert bob.next("joined", room="lobby")["name"] == hello["name"]
    guest.send("setName", name="grace")
    assert bob.next("renamed", room="lobby")["from"] == hello["name"]

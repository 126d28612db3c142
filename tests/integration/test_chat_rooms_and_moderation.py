"""Read state, the room directory, private rooms and moderation end to end, with several real
clients through the gateway on both stores (SQLite; DynamoDB on moto_server): every action,
and each refusal as one error to the sender only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway
    from tests.support.chat_client import ChatClient

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _types(client: ChatClient, *types: str) -> list[dict[str, Any]]:
    return [event for event in client.sync() if event["type"] in types]


# --- read state ---------------------------------------------------------------------------------


def test_unread_counts_in_hello_and_a_read_mark_shared_by_all_tabs(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"news-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    writer = any_store_chat.client(f"bob{unique}", rooms=[room])
    ids = [writer.say(f"m{n}", room=room)["id"] for n in range(3)]
    alice_tab = any_store_chat.client(f"alice{unique}", rooms=[room])
    assert alice_tab.hello()["unread"][room] == 3

    alice.send("read", room=room, upTo=ids[1])

    for client in (alice, alice_tab):
        assert client.next("read") == {"type": "read", "room": room, "upTo": ids[1]}
    assert _types(writer, "read") == []  # per user: bob's marks are his own
    assert alice_tab.hello()["unread"][room] == 1
    alice.send("read", room=room, upTo=ids[0])  # never back
    assert alice.next("read")["upTo"] == ids[1]


def test_reading_a_room_one_has_not_joined_is_not_in_room(
    any_store_chat: ChatGateway, unique: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}")
    alice.send("read", room=f"elsewhere-{unique}", upTo="01M8")
    assert (alice.error()["code"], alice.error.__name__) == ("not_in_room", "error")


# --- the directory and private rooms ----------------------------------------------------------


def test_created_rooms_have_an_owner_and_public_ones_are_listed_with_topic_and_count(
    any_store_chat: ChatGateway, unique: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}")
    bob = any_store_chat.client(f"bob{unique}")
    public, private = f"a-public-{unique}", f"a-private-{unique}"

    alice.send("createRoom", room=public, topic="open to all")
    created = alice.next("roomCreated")
    assert (created["room"], created["owner"], created["private"]) == (
        public,
        f"alice{unique}",
        False,
    )
    alice.next("presence", room=public)  # in it at once
    alice.send("createRoom", room=private, topic="shh", private=True)
    alice.next("roomCreated", room=private)
    bob.request("join", "presence", room=public)

    listed = _all_rooms(bob)
    assert listed[public] == {
        "room": public,
        "topic": "open to all",
        "owner": f"alice{unique}",
        "private": False,
        "members": 2,
    }
    assert private not in listed
    bob.send("createRoom", room=public)
    assert bob.error()["code"] == "room_exists"


def _all_rooms(client: ChatClient) -> dict[str, dict[str, Any]]:
    """Every room of the directory, page by page (the DynamoDB index may lag: a few tries)."""
    rooms: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = client.request("rooms", "rooms", **({"after": after} if after else {}), limit=100)
        rooms.update({room["room"]: room for room in page["rooms"]})
        if not page["more"]:
            return rooms
        after = page["rooms"][-1]["room"]


def test_a_private_room_lets_in_only_those_invited(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"secret-{unique}"
    owner = any_store_chat.client(f"alice{unique}")
    bob = any_store_chat.client(f"bob{unique}")
    mallory = any_store_chat.client(f"mallory{unique}")
    owner.send("createRoom", room=room, private=True)
    owner.next("presence", room=room)
    owner.say("for members only", room=room)

    mallory.send("join", room=room)
    assert mallory.error()["code"] == "private_room"
    mallory.send("history", room=room)
    assert mallory.error()["code"] == "not_in_room"
    sneaky = any_store_chat.client(f"mallory{unique}", rooms=[room])  # ?room= at $connect
    assert room not in sneaky.hello()["rooms"]
    mallory.send("invite", room=room, user=f"mallory{unique}")  # nobody invites themselves
    assert mallory.error()["code"] in ("forbidden", "not_in_room")

    owner.send("invite", room=room, user=f"bob{unique}")
    assert bob.next("invited") == {
        "type": "invited",
        "room": room,
        "user": f"bob{unique}",
        "by": f"alice{unique}",
    }
    history = bob.request("join", "history", room=room)
    assert [m["text"] for m in history["messages"]] == ["for members only"]
    owner.say("welcome bob", room=room)
    assert bob.next("message", text="welcome bob")["from"] == f"alice{unique}"
    assert "members only" not in str(mallory.sync()) and "welcome" not in str(mallory.sync())


# --- moderation --------------------------------------------------------------------------------


def _moderated_room(
    chat: ChatGateway, unique: str
) -> tuple[str, ChatClient, ChatClient, ChatClient]:
    room = f"mod-{unique}"
    owner = chat.client(f"alice{unique}")
    owner.send("createRoom", room=room)
    owner.next("presence", room=room)
    bob = chat.client(f"bob{unique}", rooms=[room])
    mallory = chat.client(f"mallory{unique}", rooms=[room])
    return room, owner, bob, mallory


def test_the_owner_makes_a_moderator_and_the_room_sees_it(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room, owner, bob, mallory = _moderated_room(any_store_chat, unique)

    owner.send("setRole", room=room, user=f"bob{unique}", role="moderator")

    for client in (owner, bob, mallory):
        changed = client.next("roleChanged")
        assert (changed["user"], changed["role"], changed["by"]) == (
            f"bob{unique}",
            "moderator",
            f"alice{unique}",
        )
    mallory.send("setRole", room=room, user=f"mallory{unique}", role="moderator")
    assert mallory.error()["code"] == "forbidden"
    bob.send("setRole", room=room, user=f"mallory{unique}", role="moderator")  # owner only
    assert bob.error()["code"] == "forbidden"


def test_a_moderator_mutes_and_kicks_and_deletes_others_messages(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room, owner, bob, mallory = _moderated_room(any_store_chat, unique)
    owner.send("setRole", room=room, user=f"bob{unique}", role="moderator")
    bob.next("roleChanged")
    spam = mallory.say("spam", room=room)

    bob.send("delete", room=room, id=spam["id"])
    deleted = owner.next("deleted", id=spam["id"])
    assert (deleted["from"], deleted["by"]) == (f"mallory{unique}", f"bob{unique}")

    bob.send("mute", room=room, user=f"mallory{unique}", seconds=600)
    for client in (owner, mallory):
        assert client.next("muted")["until"] > spam["ts"]
    mallory.send("sendMessage", room=room, message="more spam")
    error = mallory.error()
    assert (error["code"], error["action"]) == ("muted", "sendMessage")
    mallory.send("react", room=room, id=spam["id"], emoji="+1")
    assert mallory.error()["code"] in ("muted", "no_such_message")
    bob.send("mute", room=room, user=f"mallory{unique}", seconds=0)
    assert mallory.next("muted")["until"] is None
    mallory.say("sorry", room=room)

    bob.send("kick", room=room, user=f"mallory{unique}")
    for client in (owner, mallory):
        kicked = client.next("kicked")
        assert (kicked["user"], kicked["by"]) == (f"mallory{unique}", f"bob{unique}")
    mallory.send("sendMessage", room=room, message="still here?")
    assert mallory.error()["code"] == "not_in_room"
    owner.say("after the kick", room=room)
    assert "after the kick" not in str(mallory.sync())


@pytest.mark.parametrize(
    ("action", "fields", "code"),
    [
        ("kick", {"user": "alice"}, "forbidden"),  # nobody moderates the owner
        ("mute", {"user": "alice", "seconds": 60}, "forbidden"),
        ("kick", {"user": "nobody"}, "not_in_room"),
        ("mute", {"user": "bob", "seconds": -1}, "bad_request"),
        ("mute", {"user": "bob", "seconds": 10**9}, "bad_request"),
        ("setRole", {"user": "bob", "role": "owner"}, "bad_request"),
        ("invite", {"user": "not a name"}, "bad_request"),
    ],
)
def test_wrong_moderation_gets_one_error(
    any_store_chat: ChatGateway, unique: str, action: str, fields: dict[str, Any], code: str
) -> None:
    room, owner, bob, mallory = _moderated_room(any_store_chat, unique)
    owner.send("setRole", room=room, user=f"bob{unique}", role="moderator")
    bob.next("roleChanged")
    mallory.next("roleChanged")  # the room saw that: not what this test is about
    user = fields.get("user", "")
    fields = {**fields, "user": f"{user}{unique}" if user in ("alice", "bob", "nobody") else user}

    bob.send(action, room=room, **fields)

    error = bob.error()
    assert (error["code"], error["action"]) == (code, action)
    assert _types(mallory, "kicked", "muted", "roleChanged", "invited", "error") == []

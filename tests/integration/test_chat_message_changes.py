"""Edits, deletes and reactions end to end, with several real clients through the gateway, on
both stores (SQLite; DynamoDB on moto_server): live ``edited`` / ``deleted`` / ``reaction``
events to whoever sees the message, the history's current text, tombstones and reaction
counts, and each refusal (not yours, not there, not in the room, too many emojis) as one
error to the sender only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wschat.storage.base import direct_room

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway
    from tests.support.chat_client import ChatClient

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _history(client: ChatClient, **where: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.request("history", "history", **where)["messages"]
    return messages


def test_an_edit_reaches_the_room_and_history_has_the_new_text(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"edits-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    bob = any_store_chat.client(f"bob{unique}", rooms=[room])
    outsider = any_store_chat.client(f"carol{unique}")
    sent = alice.say("helo", room=room)

    alice.send("edit", room=room, id=sent["id"], message="hello")

    for client in (alice, bob):
        edited = client.next("edited", id=sent["id"])
        assert (edited["room"], edited["from"], edited["text"]) == (room, f"alice{unique}", "hello")
        assert edited["editedAt"] >= sent["ts"]
    [stored] = _history(bob, room=room)
    assert (stored["text"], stored["editedAt"]) == ("hello", edited["editedAt"])
    assert [e for e in outsider.sync() if e["type"] == "edited"] == []


def test_only_the_author_may_edit(any_store_chat: ChatGateway, unique: str) -> None:
    room = f"edits-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    bob = any_store_chat.client(f"bob{unique}", rooms=[room])
    sent = alice.say("mine", room=room)

    bob.send("edit", room=room, id=sent["id"], message="yours now")

    assert (bob.error()["code"], bob.error.__name__) == ("forbidden", "error")
    assert _history(alice, room=room)[0]["text"] == "mine"
    assert [e for e in alice.sync() if e["type"] in ("edited", "error")] == []


def test_a_delete_leaves_a_tombstone_and_reaches_the_room(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"deletes-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    bob = any_store_chat.client(f"bob{unique}", rooms=[room])
    sent = alice.say("oops", room=room)
    kept = alice.say("kept", room=room)

    alice.send("delete", room=room, id=sent["id"])

    deleted = bob.next("deleted", id=sent["id"])
    assert (deleted["by"], deleted["from"]) == (f"alice{unique}", f"alice{unique}")
    tombstone, other = _history(bob, room=room)
    assert (
        tombstone["deleted"] is True and tombstone["text"] == "" and tombstone["id"] == sent["id"]
    )
    assert other["id"] == kept["id"] and other["text"] == "kept"
    # Once deleted, nothing more can be done to it.
    for action, extra in (("edit", {"message": "x"}), ("delete", {}), ("react", {"emoji": "+1"})):
        alice.send(action, room=room, id=sent["id"], **extra)
        assert alice.error()["code"] == "no_such_message"


def test_someone_elses_message_is_not_yours_to_delete_without_a_role(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"deletes-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    bob = any_store_chat.client(f"bob{unique}", rooms=[room])
    sent = alice.say("stays", room=room)

    bob.send("delete", room=room, id=sent["id"])

    error = bob.error()
    assert (error["code"], error["action"]) == ("forbidden", "delete")
    assert _history(alice, room=room)[0]["text"] == "stays"


def test_reactions_are_one_per_user_per_emoji_counted_in_history_and_live(
    any_store_chat: ChatGateway, unique: str
) -> None:
    room = f"reactions-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    bob = any_store_chat.client(f"bob{unique}", rooms=[room])
    sent = alice.say("party?", room=room)

    bob.send("react", room=room, id=sent["id"], emoji="🎉")
    live = alice.next("reaction", id=sent["id"])
    assert (live["emoji"], live["user"], live["on"], live["users"]) == (
        "🎉",
        f"bob{unique}",
        True,
        [f"bob{unique}"],
    )
    bob.send("react", room=room, id=sent["id"], emoji="🎉")  # again: still one
    alice.send("react", room=room, id=sent["id"], emoji="🎉")
    assert alice.next("reaction", user=f"alice{unique}")["users"] == sorted(
        [f"alice{unique}", f"bob{unique}"]
    )
    [stored] = _history(bob, room=room)
    assert stored["reactions"] == {"🎉": sorted([f"alice{unique}", f"bob{unique}"])}

    bob.send("react", room=room, id=sent["id"], emoji="🎉", on=False)
    assert alice.next("reaction", user=f"bob{unique}", on=False)["users"] == [f"alice{unique}"]
    assert _history(bob, room=room)[0]["reactions"] == {"🎉": [f"alice{unique}"]}


def test_a_message_carries_at_most_twenty_emojis(any_store_chat: ChatGateway, unique: str) -> None:
    room = f"reactions-{unique}"
    alice = any_store_chat.client(f"alice{unique}", rooms=[room])
    sent = alice.say("react away", room=room)
    for n in range(20):
        alice.send("react", room=room, id=sent["id"], emoji=f"e{n}")
        alice.next("reaction", emoji=f"e{n}")

    alice.send("react", room=room, id=sent["id"], emoji="one-too-many")

    assert alice.error()["code"] == "too_many_reactions"
    assert len(_history(alice, room=room)[0]["reactions"]) == 20


def test_changes_to_a_direct_message_reach_both_users_only(
    any_store_chat: ChatGateway, unique: str
) -> None:
    alice_name, bob_name = f"alice{unique}", f"bob{unique}"
    alice = any_store_chat.client(alice_name)
    bob = any_store_chat.client(bob_name)
    bob_phone = any_store_chat.client(bob_name)
    carol = any_store_chat.client(f"carol{unique}")
    alice.send("direct", to=bob_name, message="secret", clientId="d")
    sent = alice.next("ack", clientId="d")

    alice.send("edit", **{"with": bob_name}, id=sent["id"], message="secret!")
    bob.send("react", **{"with": alice_name}, id=sent["id"], emoji="👀")

    for client in (alice, bob, bob_phone):
        edited = client.next("edited", id=sent["id"])
        assert (edited["from"], edited["to"], edited["text"]) == (alice_name, bob_name, "secret!")
        assert client.next("reaction", id=sent["id"])["users"] == [bob_name]
    assert [e for e in carol.sync() if e["type"] in ("edited", "reaction")] == []
    # Nobody else can reach it: carol's conversation with alice is another one.
    carol.send("edit", **{"with": alice_name}, id=sent["id"], message="mine")
    assert carol.error()["code"] == "no_such_message"
    assert direct_room(alice_name, bob_name) != direct_room(alice_name, f"carol{unique}")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"room": "elsewhere", "id": "01M8"}, "not_in_room"),
        ({"id": "01M8"}, "bad_request"),
        ({"room": "lobby"}, "bad_request"),
        ({"room": "lobby", "id": "01M8", "emoji": ""}, "bad_request"),
        ({"room": "lobby", "id": "01M8", "emoji": "a b"}, "bad_request"),
        ({"room": "lobby", "id": "01M8", "emoji": "x" * 17}, "bad_request"),
        ({"room": "lobby", "id": "01M8", "emoji": "+1", "on": "yes"}, "bad_request"),
        ({"room": "lobby", "id": "no-such-id", "emoji": "+1"}, "no_such_message"),
    ],
)
def test_wrong_reactions_get_one_error(
    any_store_chat: ChatGateway, unique: str, fields: dict[str, Any], code: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}")
    bob = any_store_chat.client(f"bob{unique}")
    fields = {"emoji": "+1", **fields} if "emoji" not in fields and "id" in fields else fields

    alice.send("react", **fields)

    error = alice.error()
    assert (error["code"], error["action"]) == (code, "react")
    assert [e for e in bob.sync() if e["type"] in ("reaction", "error")] == []

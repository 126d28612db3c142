"""Typing indicators end to end, with several real clients: ``typing`` in a room reaches the
room's other members only (not the typer, not the typer's other tabs, not other rooms), to a
user only that user's connections; nothing is stored; wrong frames get one error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway
    from tests.support.chat_client import ChatClient

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _typing(client: ChatClient) -> list[dict[str, Any]]:
    return [event for event in client.sync() if event["type"] == "typing"]


def test_typing_in_a_room_reaches_its_other_members_only(
    any_store_chat: ChatGateway, unique: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}", rooms=[f"general-{unique}"])
    alice_tab = any_store_chat.client(f"alice{unique}", rooms=[f"general-{unique}"])
    bob = any_store_chat.client(f"bob{unique}", rooms=[f"general-{unique}"])
    carol = any_store_chat.client(f"carol{unique}", rooms=[f"general-{unique}"])
    dave = any_store_chat.client(f"dave{unique}")  # lobby only

    alice.send("typing", room=f"general-{unique}")

    expected = {"type": "typing", "room": f"general-{unique}", "from": f"alice{unique}"}
    assert bob.next("typing") == expected
    assert carol.next("typing") == expected
    for client in (alice, alice_tab, dave):
        assert _typing(client) == []
    assert _typing(bob) == [] and _typing(carol) == []  # once each


def test_typing_to_a_user_reaches_every_connection_of_that_user_only(
    any_store_chat: ChatGateway, unique: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}")
    bob = any_store_chat.client(f"bob{unique}")
    bob_phone = any_store_chat.client(f"bob{unique}")
    carol = any_store_chat.client(f"carol{unique}")

    alice.send("typing", to=f"bob{unique}")

    for client in (bob, bob_phone):
        assert client.next("typing") == {
            "type": "typing",
            "to": f"bob{unique}",
            "from": f"alice{unique}",
        }
    assert _typing(alice) == [] and _typing(carol) == []


def test_typing_is_not_stored(any_store_chat: ChatGateway, unique: str) -> None:
    alice = any_store_chat.client(f"alice{unique}", rooms=[f"general-{unique}"])
    bob = any_store_chat.client(f"bob{unique}", rooms=[f"general-{unique}"])
    alice.send("typing", room=f"general-{unique}")
    bob.next("typing")

    assert bob.request("history", "history", room=f"general-{unique}")["messages"] == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"room": "random"}, "not_in_room"),
        ({"room": "lobby", "to": "bob"}, "bad_request"),
        ({}, "bad_request"),
        ({"room": "NOT A ROOM"}, "bad_request"),
        ({"to": "<b>"}, "bad_request"),
    ],
    ids=["room-not-joined", "room-and-to", "neither", "bad-room", "bad-name"],
)
def test_a_wrong_typing_frame_gets_one_error_and_nobody_hears_of_it(
    any_store_chat: ChatGateway, unique: str, fields: dict[str, str], code: str
) -> None:
    alice = any_store_chat.client(f"alice{unique}", rooms=[f"general-{unique}"])
    bob = any_store_chat.client(f"bob{unique}", rooms=[f"general-{unique}", "random"])

    alice.send("typing", **fields)

    error = alice.error()
    assert (error["code"], error["action"]) == (code, "typing")
    assert _typing(bob) == []

"""Direct messages end to end: delivered to every connection of the recipient and of the sender,
stored, read back with ``history`` ``with`` a user, and refused for names nobody has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _of_type(events: list[dict[str, Any]], type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == type]


def test_direct_reaches_every_tab_of_the_recipient_and_of_the_sender_and_nobody_else(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice")
    alice_other_tab = chat.client("alice")
    bob = chat.client("bob")
    bob_other_tab = chat.client("bob")
    carol = chat.client("carol")

    alice.send("direct", to="bob", message="psst", clientId="d-1")

    ack = alice.next("ack", clientId="d-1")
    assert ack == {"type": "ack", "id": ack["id"], "ts": ack["ts"], "clientId": "d-1", "to": "bob"}
    direct = {
        "type": "direct",
        "id": ack["id"],
        "from": "alice",
        "to": "bob",
        "text": "psst",
        "ts": ack["ts"],
        "clientId": "d-1",
    }
    for client in (bob, bob_other_tab, alice_other_tab, alice):
        assert client.next("direct") == direct
        assert _of_type(client.sync(), "direct") == []  # once per connection
    assert _of_type(carol.sync(), "direct") == []


def test_direct_messages_are_stored_and_read_back_by_both_sides_only(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")
    carol = chat.client("carol")
    alice.send("direct", to="bob", message="hi bob", clientId="a-1")
    first = alice.next("ack", clientId="a-1")["id"]
    bob.send("direct", to="alice", message="hi alice", clientId="b-1")
    second = bob.next("ack", clientId="b-1")["id"]

    alices = alice.request("history", "history", with_="bob")
    bobs = bob.request("history", "history", with_="alice")

    assert alices["with"] == "bob"
    assert [(m["type"], m["id"], m["from"], m["to"], m["text"]) for m in alices["messages"]] == [
        ("direct", first, "alice", "bob", "hi bob"),
        ("direct", second, "bob", "alice", "hi alice"),
    ]
    assert alices["more"] is False
    assert bobs["messages"] == alices["messages"]
    # A third user asking for either side's conversation gets only her own (empty) one.
    assert carol.request("history", "history", with_="bob")["messages"] == []
    assert carol.request("history", "history", with_="alice")["messages"] == []


def test_direct_to_a_name_nobody_has_is_no_such_user_and_stores_nothing(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")

    alice.send("direct", to="nobody", message="anyone?")

    error = alice.error()
    assert (error["code"], error["action"]) == ("no_such_user", "direct")
    assert "nobody" in error["message"]
    assert alice.request("history", "history", with_="nobody")["messages"] == []
    assert bob.sync() == []


def test_direct_to_a_user_whose_last_tab_closed_is_no_such_user(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")
    bob_id = bob.hello()["connectionId"]
    bob.close()
    wait_for(lambda: bob_id not in chat.stored_connection_ids(), what="bob's $disconnect")

    alice.send("direct", to="bob", message="still there?")

    assert alice.error()["code"] == "no_such_user"


def test_direct_follows_a_rename(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")
    bob.request("setName", "hello", name="robert")

    alice.send("direct", to="bob", message="bob?")
    assert alice.error()["code"] == "no_such_user"
    alice.send("direct", to="robert", message="robert!")
    assert bob.next("direct")["text"] == "robert!"

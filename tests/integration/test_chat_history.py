"""History end to end: the page ``join`` sends, scrolling back with ``before``, and catching up
with ``after`` the last id a client saw, also across a restart of the gateway on the same data
directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.support.chat_client import ChatClient

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _send_all(client: ChatClient, room: str, texts: list[str]) -> list[str]:
    """Send each text to ``room`` in turn, each acked (stored) before the next; the ids."""
    return [client.say(text, room)["id"] for text in texts]


def _ids(page: dict[str, Any]) -> list[str]:
    return [message["id"] for message in page["messages"]]


def test_join_sends_the_rooms_history_oldest_first(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    ids = _send_all(alice, "general", ["one", "two", "three"])
    bob = chat.client("bob")

    bob.send("join", room="general")

    page = bob.next("history")
    assert page["room"] == "general"
    assert page["more"] is False
    assert [m["text"] for m in page["messages"]] == ["one", "two", "three"]
    first = page["messages"][0]
    assert first == {
        "type": "message",
        "id": ids[0],
        "room": "general",
        "from": "alice",
        "text": "one",
        "ts": first["ts"],
        "clientId": first["clientId"],
    }
    assert first["clientId"]  # stored with the message


def test_join_page_is_the_newest_fifty_with_more_when_older_ones_exist(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    ids = _send_all(alice, "general", [f"m{n}" for n in range(60)])
    bob = chat.client("bob")

    bob.send("join", room="general")

    page = bob.next("history")
    assert _ids(page) == ids[10:]
    assert page["more"] is True


def test_scrolling_back_with_before_pages_through_every_message_once(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    ids = _send_all(alice, "general", [f"m{n}" for n in range(25)])
    bob = chat.client("bob", rooms=["general"])

    newest = bob.request("history", "history", room="general", limit=10)
    older = bob.request(
        "history", "history", room="general", limit=10, before=newest["messages"][0]["id"]
    )
    oldest = bob.request(
        "history", "history", room="general", limit=10, before=older["messages"][0]["id"]
    )

    assert (_ids(newest), newest["more"]) == (ids[15:], True)
    assert (_ids(older), older["more"]) == (ids[5:15], True)
    assert (_ids(oldest), oldest["more"]) == (ids[:5], False)


def test_catch_up_after_a_disconnect_returns_exactly_the_missed_messages_in_order(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["general"])
    bob = chat.client("bob", rooms=["general"])
    alice.send("sendMessage", room="general", message="seen by bob")
    last_seen = bob.next("message")["id"]
    bob.close()

    missed = _send_all(alice, "general", [f"missed {n}" for n in range(50)])
    bob = chat.client("bob", rooms=["general"])
    page = bob.request("history", "history", room="general", after=last_seen, limit=100)

    assert _ids(page) == missed
    assert [m["text"] for m in page["messages"]] == [f"missed {n}" for n in range(50)]
    assert page["more"] is False


def test_catch_up_pages_forward_with_after_until_more_is_false(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    first = _send_all(alice, "general", ["seen"])[0]
    missed = _send_all(alice, "general", [f"missed {n}" for n in range(50)])
    bob = chat.client("bob", rooms=["general"])

    pages = []
    after = first
    for _ in range(4):  # 3 pages expected; a 4th would mean "more" never turned false
        page = bob.request("history", "history", room="general", after=after, limit=20)
        pages.append(page)
        if not page["more"]:
            break
        after = page["messages"][-1]["id"]

    assert [len(page["messages"]) for page in pages] == [20, 20, 10]
    assert [page["more"] for page in pages] == [True, True, False]
    assert [i for page in pages for i in _ids(page)] == missed


def test_catch_up_after_the_newest_message_is_an_empty_page(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["general"])
    newest = _send_all(alice, "general", ["one", "two"])[-1]

    page = alice.request("history", "history", room="general", after=newest)

    assert (page["room"], page["messages"], page["more"]) == ("general", [], False)


def test_messages_survive_a_gateway_restart_and_catch_up_spans_it(
    start_chat_gateway: Callable[..., ChatGateway], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before_restart = start_chat_gateway(data_dir)
    alice = before_restart.client("alice", rooms=["general"])
    bob = before_restart.client("bob", rooms=["general"])
    alice.send("sendMessage", room="general", message="seen by bob")
    last_seen = bob.next("message")["id"]
    bob.close()
    missed = _send_all(alice, "general", [f"before restart {n}" for n in range(25)])
    before_restart.stop()  # alice is still connected: the gateway closes her connection

    after_restart = start_chat_gateway(data_dir)
    alice = after_restart.client("alice", rooms=["general"])
    missed += _send_all(alice, "general", [f"after restart {n}" for n in range(25)])
    bob = after_restart.client("bob", rooms=["general"])
    page = bob.request("history", "history", room="general", after=last_seen, limit=100)

    assert _ids(page) == missed
    assert len(set(_ids(page))) == 50
    assert page["more"] is False
    carol = after_restart.client("carol")
    carol.send("join", room="general")
    assert _ids(carol.next("history")) == missed  # the join page: the newest 50
    # Nobody from before the restart lingers in the room.
    assert carol.next("presence")["members"] == ["alice", "bob", "carol"]

"""Presence end to end: a connection that goes away, however it goes, leaves its rooms (``left``
to each, ``who`` no longer lists it), and every connection that opened is one the chat knows."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from tests.integration.conftest import raw_upgrade
from tests.support.chat_client import chat_url

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _close_tab(chat: ChatGateway) -> Callable[[], None]:
    return chat.client("dave", rooms=["general", "random"]).close


def _drop_connection(chat: ChatGateway) -> Callable[[], None]:
    return chat.client("dave", rooms=["general", "random"]).drop


def _close_socket_without_close_frame(chat: ChatGateway) -> Callable[[], None]:
    sock = raw_upgrade(chat_url(chat.url, name="dave", rooms=["general", "random"]))
    return sock.close


@pytest.mark.parametrize(
    "goes_away",
    [_close_tab, _drop_connection, _close_socket_without_close_frame],
    ids=["close frame", "TCP reset", "TCP close without close frame"],
)
def test_a_connection_that_goes_away_leaves_every_room_it_was_in(
    chat: ChatGateway, goes_away: Callable[[ChatGateway], Callable[[], None]]
) -> None:
    alice = chat.client("alice", rooms=["general"])
    carol = chat.client("carol", rooms=["random"])
    leave = goes_away(chat)
    assert alice.next("joined", room="general")["name"] == "dave"
    assert carol.next("joined", room="random")["name"] == "dave"

    leave()

    left = alice.next("left", room="general")
    assert (left["name"], left["members"]) == ("dave", ["alice"])
    assert alice.next("left", room="lobby", name="dave")["members"] == ["alice", "carol"]
    assert carol.next("left", room="random", name="dave")["members"] == ["carol"]
    assert alice.request("who", "presence", room="general")["members"] == ["alice"]
    assert carol.request("who", "presence", room="lobby")["members"] == ["alice", "carol"]
    assert len(chat.stored_connection_ids()) == 2


def test_clients_connecting_at_the_same_time_are_all_registered(chat: ChatGateway) -> None:
    # Ten users open the chat at once, four times over. Each $connect announces "joined" to the
    # lobby while others are still in theirs, whom the gateway cannot post to yet (gone, as API
    # Gateway's 410): that must not cost them their record (it did before c5c4bcf).
    for wave in range(4):
        names = [f"user{wave}-{n}" for n in range(10)]
        with ThreadPoolExecutor(len(names)) as pool:
            clients = list(pool.map(chat.client, names))
        # Every $connect has returned: the gateway opens a connection only after it did.
        opened = chat.open_connection_ids()
        assert len(opened) == 10 * (wave + 1)
        assert chat.stored_connection_ids() == opened, f"wave {wave}: open but not registered"
    for client in clients:
        assert client.hello()["name"] == client.label

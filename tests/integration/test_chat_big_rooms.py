"""Big rooms end to end: real WebSocket clients on the local gateway running the project's
template, with the inline limit lowered to 2 so a room of six is "big".

A message to it is stored and acknowledged by sendMessage, handed to the template's fan-out
queue as a plan job, and delivered by the DeliveryFunction the gateway runs from the queue's
SQS event source; the counters show that path was taken, the clients that each got it once.
With the queue unreachable the same message is delivered inline: never acked and then lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from tests.integration.conftest import wait_for
from tests.support.moto_server import free_port
from tests.support.sqs import depth, sqs_client

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)

BIG = {"WSCHAT_FANOUT_INLINE_LIMIT": "2", "WSCHAT_FANOUT_PAGE_SIZE": "2"}


def delivery_counters(gateway: ChatGateway) -> Any:
    [counters] = gateway.running.gateway.event_source_counters.values()
    return counters


def settled(gateway: ChatGateway) -> Any:
    """The delivery counters once the fan-out queue is empty and every job it gave is done."""
    sqs = sqs_client(gateway.running.gateway.sqs_endpoint)
    url = sqs.get_queue_url(QueueName="local-fanout")["QueueUrl"]

    def empty() -> bool:
        counters = delivery_counters(gateway)
        return depth(sqs, url) == 0 and counters.records == counters.deleted

    wait_for(empty, what="the fan-out queue to empty")
    return delivery_counters(gateway)


def test_a_room_over_the_limit_goes_through_the_queue_and_each_member_gets_it_once(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    chat = start_chat_gateway(env=BIG)
    names = [f"member{n}" for n in range(6)]
    clients = [chat.client(name, rooms=["big"]) for name in names]
    for client in clients:
        client.hello()
    jobs_before = settled(chat).records  # the `joined` events went through the queue too
    sqs_before = chat.running.gateway.sqs_requests

    clients[0].send("sendMessage", room="big", message="to everyone", clientId="c-1")

    ack = clients[0].next("ack")
    for client in clients:
        message = client.next("message", room="big", text="to everyone")
        assert message["id"] == ack["id"]
    # Nothing more: no second copy reached anyone.
    for client in clients:
        repeated = [e for e in client.sync() if e["type"] == "message" and e["id"] == ack["id"]]
        assert repeated == [], client

    # The queued path: sendMessage's plan job, then 1 plan job's 3 deliver jobs of 2 ids.
    counters = settled(chat)
    assert counters.records - jobs_before == 1 + 3
    assert counters.failed == 0 and counters.errors == 0
    assert chat.running.gateway.sqs_requests > sqs_before


def test_presence_in_a_big_room_also_goes_through_the_queue(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    chat = start_chat_gateway(env=BIG)
    clients = [chat.client(f"early{n}", rooms=["big"]) for n in range(4)]
    for client in clients:
        client.hello()
    before = settled(chat).records

    late = chat.client("latecomer", rooms=["big"])
    late.hello()

    for client in clients:
        client.next("joined", room="big", name="latecomer")
    # Lobby and big: a plan job each, and their deliver jobs.
    assert settled(chat).records - before >= 4


def test_with_the_queue_unreachable_a_big_room_is_delivered_inline(
    start_chat_gateway: Callable[..., ChatGateway],
) -> None:
    # Nothing listens there: SendMessageBatch fails at connect, the message is stored already.
    unreachable = f"http://127.0.0.1:{free_port()}/123456789012/fanout"
    chat = start_chat_gateway(env={**BIG, "WSCHAT_FANOUT_QUEUE_URL": unreachable})
    clients = [chat.client(f"member{n}", rooms=["big"]) for n in range(5)]
    for client in clients:
        client.hello()

    clients[0].send("sendMessage", room="big", message="queue is down")

    ack = clients[0].next("ack", timeout=15)
    received: Counter[str] = Counter()
    for client in clients:
        message = client.next("message", room="big", text="queue is down", timeout=15)
        received[message["id"]] += 1
    assert received == {ack["id"]: 5}
    # And it is in the history, as the ack said.
    history = clients[1].request("history", "history", room="big")
    assert [m["id"] for m in history["messages"]] == [ack["id"]]

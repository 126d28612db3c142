"""Two ways a function posts to connections, both delivering to every client.

wschat's own handlers (the project's template.yaml, SQLite store) post through the worker's
pipe to the gateway: no HTTP request reaches @connections. A third-party app's boto3 client
knows nothing of that and posts over HTTP, one request per recipient, as on AWS.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from tests.integration.conftest import (
    APPS,
    PROJECT_TEMPLATE,
    TIMEOUT,
    RunningGateway,
    drain,
    recv_until,
    running_gateway,
    wait_for,
)

from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import load_api

pytestmark = pytest.mark.integration


def _stats(gateway: RunningGateway) -> tuple[int, int]:
    """(@connections HTTP requests, fast-path calls) so far."""
    return gateway.call(
        lambda: (gateway.gateway.management_http_requests, gateway.gateway.fast_path_calls)
    )


@pytest.fixture
def own_handlers(tmp_path: Path) -> Iterator[tuple[RunningGateway, Path]]:
    """The project's template.yaml with ``--store sqlite`` in a temporary data directory."""
    database = tmp_path / "wschat.sqlite3"
    config = GatewayConfig(
        api=load_api(PROJECT_TEMPLATE),
        function_env={"WSCHAT_STORE": "sqlite", "WSCHAT_SQLITE_PATH": str(database)},
        shutdown_timeout=5.0,
    )
    with running_gateway(config) as running:
        yield running, database


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[tuple[RunningGateway, Path]]:
    connections = tmp_path / "connections.json"
    api = load_api(
        APPS / "chat_json" / "template.yaml", parameters={"ConnectionsFile": str(connections)}
    )
    with running_gateway(GatewayConfig(api=api, shutdown_timeout=5.0)) as running:
        yield running, connections


def _stored_ids(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute('SELECT connectionId FROM "websocket-connections"')}


def test_own_handlers_deliver_through_the_fast_path_with_no_http(
    own_handlers: tuple[RunningGateway, Path],
) -> None:
    gateway, database = own_handlers
    with ExitStack() as stack:
        clients = [stack.enter_context(gateway.connect()) for _ in range(3)]
        wait_for(lambda: len(_stored_ids(database)) == 3, what="three stored connections")
        clients[0].send(json.dumps({"action": "sendMessage", "message": "hi"}))
        received = [recv_until(ws, lambda event: event.get("type") == "message") for ws in clients]
    for event in received:
        assert event["text"] == "hi"
    assert len({event["id"] for event in received}) == 1  # one message, three deliveries
    http_requests, fast_path_calls = _stats(gateway)
    assert http_requests == 0
    assert fast_path_calls >= 1


def test_own_handlers_reply_errors_through_the_fast_path(
    own_handlers: tuple[RunningGateway, Path],
) -> None:
    gateway, _ = own_handlers
    with gateway.connect() as ws, gateway.connect() as other:
        ws.send(json.dumps({"action": "shout", "message": "hi"}))
        reply = recv_until(ws, lambda event: event.get("type") == "error")
        others = drain(other)
    assert "shout" in reply["message"]
    assert [event for event in others if event.get("type") == "error"] == []
    assert _stats(gateway)[0] == 0


def test_own_handlers_forget_connections_on_disconnect(
    own_handlers: tuple[RunningGateway, Path],
) -> None:
    gateway, database = own_handlers
    with gateway.connect():
        wait_for(lambda: len(_stored_ids(database)) == 1, what="the stored connection")
    wait_for(lambda: not _stored_ids(database), what="the record to be deleted")


def test_third_party_boto3_posts_arrive_over_http(
    third_party: tuple[RunningGateway, Path],
) -> None:
    gateway, connections = third_party
    with ExitStack() as stack:
        clients = [stack.enter_context(gateway.connect()) for _ in range(3)]
        wait_for(
            lambda: connections.exists() and len(json.loads(connections.read_text())) == 3,
            what="three stored connections",
        )
        clients[1].send(json.dumps({"action": "sendmessage", "data": "hello"}))
        received = [ws.recv(timeout=TIMEOUT) for ws in clients]
    assert received == ["hello", "hello", "hello"]
    http_requests, fast_path_calls = _stats(gateway)
    assert http_requests == 3  # one post_to_connection per recipient
    assert fast_path_calls == 0
    wait_for(lambda: json.loads(connections.read_text()) == [], what="every $disconnect")

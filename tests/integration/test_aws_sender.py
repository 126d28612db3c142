"""The boto3 delivery path over real HTTP: ApiGatewaySender and the sendMessage handler against
an @connections endpoint on 127.0.0.1 that answers the way API Gateway's Management API does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from tests.support.connections_endpoint import ConnectionsEndpoint
from tests.support.events import lambda_context, websocket_event

import wschat.delivery
from wschat.delivery.aws import ApiGatewaySender
from wschat.delivery.base import DeliveryError, GoneConnection
from wschat.handlers import _runtime, connect, send_message
from wschat.storage.sqlite import SqliteStore

pytestmark = pytest.mark.integration

# API Gateway's connection ids are base64 with "=" padding; botocore percent-encodes them.
LIVE = ["L0SM9cOFvHcCIhw=", "L0SNFdxPvHcCFlQ=", "L0SNGeB+vHcCIhw="]
GONE = "L0SNbN2OvHcAcGg="
FAILING = "L0SNkd7zvHcCF0g="


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # SigV4 needs credentials to sign with; the endpoint only checks a signature is present.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")


@pytest.fixture
def endpoint() -> Iterator[ConnectionsEndpoint]:
    with ConnectionsEndpoint(connections=LIVE, gone={GONE}, failing={FAILING}) as server:
        yield server


@pytest.fixture
def sender(endpoint: ConnectionsEndpoint) -> Iterator[ApiGatewaySender]:
    sender = ApiGatewaySender.for_endpoint(endpoint.url)
    yield sender
    sender.close()


def test_endpoint_speaks_the_error_shape_boto3_reads_as_gone_exception(
    endpoint: ConnectionsEndpoint,
) -> None:
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint.url)
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId=GONE, Data=b"hi")
    assert caught.value.response["Error"]["Code"] == "GoneException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert isinstance(caught.value, client.exceptions.GoneException)


def test_post_delivers_the_exact_bytes(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    data = b'\x00\xff{"text":"\xec\x95\x88\xeb\x85\x95"}\r\n'
    sender.post(LIVE[2], data)  # the id with "+" and "=" arrives intact
    assert endpoint.received() == [(LIVE[2], data)]


@pytest.mark.parametrize("connection_id", [GONE, "never-connected="])
def test_post_to_a_gone_connection_raises_gone_connection(
    sender: ApiGatewaySender, connection_id: str
) -> None:
    with pytest.raises(GoneConnection) as caught:
        sender.post(connection_id, b"hi")
    assert caught.value.connection_id == connection_id


def test_server_error_raises_delivery_error_not_gone(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    with pytest.raises(DeliveryError) as caught:
        sender.post(FAILING, b"hi")
    assert not isinstance(caught.value, GoneConnection)
    assert "InternalServerErrorException" in str(caught.value)
    # botocore's retry mode tried again (a 500 is transient to it) before giving up.
    assert endpoint.attempts().count(("POST", FAILING)) >= 2
    assert endpoint.received() == []


def test_post_many_delivers_to_live_and_reports_gone_and_failed(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    recipients = [LIVE[0], GONE, LIVE[1], FAILING, "never-connected=", LIVE[2]]
    result = sender.post_many(recipients, b"broadcast")

    assert result.delivered == 3
    assert sorted(result.gone) == sorted([GONE, "never-connected="])
    assert list(result.failed) == [FAILING]
    assert sorted(endpoint.received()) == sorted((cid, b"broadcast") for cid in LIVE)


def test_post_many_to_nobody_sends_nothing(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    result = sender.post_many([], b"x")
    assert (result.delivered, result.gone, result.failed) == (0, [], {})
    assert endpoint.attempts() == []


def test_get_describes_a_live_connection(sender: ApiGatewaySender) -> None:
    before = time.time()
    sender.post(LIVE[0], b"activity")
    info = sender.get(LIVE[0])

    assert info.source_ip == "203.0.113.10"
    assert info.user_agent == "wscat/6.0"
    # ISO 8601 in UTC, as API Gateway writes it.
    assert info.connected_at.endswith("Z") and "T" in info.connected_at
    connected = datetime.fromisoformat(info.connected_at.replace("Z", "+00:00"))
    last_active = datetime.fromisoformat(info.last_active_at.replace("Z", "+00:00"))
    assert connected <= last_active
    assert last_active.timestamp() >= before - 0.001


def test_get_on_a_gone_connection_raises_gone_connection(sender: ApiGatewaySender) -> None:
    with pytest.raises(GoneConnection):
        sender.get(GONE)


def test_delete_closes_the_connection_and_a_second_delete_is_gone(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    sender.delete(LIVE[1])
    assert not endpoint.is_live(LIVE[1])
    with pytest.raises(GoneConnection):
        sender.delete(LIVE[1])
    with pytest.raises(GoneConnection):
        sender.post(LIVE[1], b"too late")


def test_post_many_posts_concurrently() -> None:
    recipients = [f"fan{i:04d}=" for i in range(200)]
    delay = 0.02
    with ConnectionsEndpoint(connections=recipients, delay=delay) as endpoint:
        sender = ApiGatewaySender.for_endpoint(endpoint.url)
        try:
            started = time.perf_counter()
            result = sender.post_many(recipients, b"x")
            elapsed = time.perf_counter() - started
        finally:
            sender.close()
        assert result.delivered == 200
        assert len(endpoint.received()) == 200
        assert endpoint.max_in_flight > 1
    # Sequential would take 200 x 20 ms = 4 s; a quarter of that is a generous bound.
    assert elapsed < len(recipients) * delay / 4


# -- the sendMessage Lambda handler, end to end -------------------------------------------------


@pytest.fixture
def handler_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: ConnectionsEndpoint
) -> Iterator[Path]:
    """Handlers on the SQLite store, posting through boto3 to ``endpoint`` over HTTP."""
    db = tmp_path / "wschat.sqlite3"
    monkeypatch.setenv("WSCHAT_STORE", "sqlite")
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(db))
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", endpoint.url)
    _forget_cold_start()
    yield db
    _forget_cold_start()


def _forget_cold_start() -> None:
    # What handlers build once per execution environment: the store, the config and one sender
    # per endpoint. Dropping them makes the next invocation a cold start against this test.
    if _runtime.store.cache_info().currsize:
        _runtime.store().close()
    _runtime.store.cache_clear()
    _runtime.config.cache_clear()
    for sender in wschat.delivery._senders.values():
        close = getattr(sender, "close", None)
        if close is not None:
            close()
    wschat.delivery._senders.clear()


def _connect_all(connection_ids: list[str]) -> None:
    for index, connection_id in enumerate(connection_ids):
        event = websocket_event("$connect", connection_id=connection_id)
        event["queryStringParameters"] = {"name": f"user{index}"}
        event["multiValueQueryStringParameters"] = {"name": [f"user{index}"]}
        reply = connect.lambda_handler(event, lambda_context())
        assert reply["statusCode"] == 200


def _stored_ids(db: Path) -> set[str]:
    store = SqliteStore(db)
    try:
        return set(store.scan_connection_ids())
    finally:
        store.close()


def _send(sender_id: str, text: str) -> dict[str, object]:
    event = websocket_event(
        "sendMessage", {"action": "sendMessage", "message": text}, connection_id=sender_id
    )
    return send_message.lambda_handler(event, lambda_context())


def _messages(endpoint: ConnectionsEndpoint) -> list[tuple[str, bytes]]:
    """The ``message`` events the endpoint delivered (presence events and acks left out)."""
    return [
        (cid, data) for cid, data in endpoint.received() if json.loads(data)["type"] == "message"
    ]


def test_send_message_handler_posts_the_message_event_to_every_connection(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all(LIVE)

    reply = _send(LIVE[1], "안녕하세요 hi")

    assert reply["statusCode"] == 200
    messages = _messages(endpoint)
    assert sorted(cid for cid, _ in messages) == sorted(LIVE)
    assert len({data for _, data in messages}) == 1  # encoded once, the same bytes to everyone
    event = json.loads(messages[0][1])
    assert event["from"] == "user1"
    assert event["text"] == "안녕하세요 hi"
    assert isinstance(event["id"], str) and isinstance(event["ts"], int)


def test_send_message_handler_forgets_connections_that_answer_gone(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all([*LIVE, GONE])

    _send(LIVE[0], "hi")

    assert sorted(cid for cid, _ in _messages(endpoint)) == sorted(LIVE)
    assert ("POST", GONE) in endpoint.attempts()
    assert _stored_ids(handler_env) == set(LIVE)


def test_send_message_handler_keeps_going_past_a_failing_connection(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all([FAILING, *LIVE])

    reply = _send(LIVE[1], "still here")

    assert reply["statusCode"] == 200
    assert sorted(cid for cid, _ in _messages(endpoint)) == sorted(LIVE)
    assert ("POST", FAILING) in endpoint.attempts()
    # A 500 is not a 410: the connection may still be open, so its record stays.
    assert _stored_ids(handler_env) == {FAILING, *LIVE}

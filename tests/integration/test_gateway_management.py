"""The @connections management API through boto3's ``apigatewaymanagementapi`` client, pointed
at the gateway's printed URL as a handler (or an operator) would point it at API Gateway."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from tests.integration.conftest import RunningGateway, recv_json
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.integration


def test_post_to_connection_delivers_text(inspector: RunningGateway) -> None:
    client = inspector.management_client()
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        client.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": "world"}')
        assert ws.recv(timeout=5) == '{"hello": "world"}'  # UTF-8 arrives as a text frame


def test_post_to_connection_delivers_binary(inspector: RunningGateway) -> None:
    client = inspector.management_client()
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        client.post_to_connection(ConnectionId=connection_id, Data=b"\xff\x00\xfe")
        assert ws.recv(timeout=5) == b"\xff\x00\xfe"


def test_get_connection_returns_connected_at_identity_and_last_active_at(
    inspector: RunningGateway,
) -> None:
    client = inspector.management_client()
    before = datetime.now(UTC) - timedelta(seconds=1)
    with inspector.connect(user_agent="inspector-agent/2.0") as ws:
        connection_id = inspector.connection_id(ws)
        first = client.get_connection(ConnectionId=connection_id)
        time.sleep(0.05)
        ws.send(json.dumps({"action": "echo"}))
        recv_json(ws)
        second = client.get_connection(ConnectionId=connection_id)
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(first["ConnectedAt"], datetime)
    assert before <= first["ConnectedAt"] <= after
    assert first["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "inspector-agent/2.0"}
    assert first["ConnectedAt"] <= first["LastActiveAt"] <= after
    assert second["LastActiveAt"] > first["LastActiveAt"]  # a message is activity
    assert second["ConnectedAt"] == first["ConnectedAt"]


def test_delete_connection_closes_the_socket_and_runs_disconnect(
    inspector: RunningGateway,
) -> None:
    client = inspector.management_client()
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        reply = client.delete_connection(ConnectionId=connection_id)
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert inspector.events is not None
    (record,) = inspector.events.wait("disconnect", connection_id)
    assert record["event"]["requestContext"]["connectionId"] == connection_id


@pytest.mark.parametrize("operation", ["post_to_connection", "get_connection", "delete_connection"])
def test_unknown_connection_raises_gone(inspector: RunningGateway, operation: str) -> None:
    client = inspector.management_client()
    kwargs = {"Data": b"x"} if operation == "post_to_connection" else {}
    with pytest.raises(client.exceptions.GoneException) as gone:
        getattr(client, operation)(ConnectionId="AAAAAAAAAAAAAAA=", **kwargs)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


@pytest.mark.parametrize("operation", ["post_to_connection", "get_connection", "delete_connection"])
def test_closed_connection_raises_gone(inspector: RunningGateway, operation: str) -> None:
    client = inspector.management_client()
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
    assert inspector.events is not None
    inspector.events.wait("disconnect", connection_id)
    kwargs = {"Data": b"x"} if operation == "post_to_connection" else {}
    with pytest.raises(client.exceptions.GoneException):
        getattr(client, operation)(ConnectionId=connection_id, **kwargs)


def test_post_larger_than_128_kb_is_payload_too_large(inspector: RunningGateway) -> None:
    client = inspector.management_client()
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        client.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024))
        assert len(ws.recv(timeout=5)) == 128 * 1024  # exactly the limit is fine
        for size in (128 * 1024 + 1, 512 * 1024, 4 * 1024 * 1024):
            with pytest.raises(client.exceptions.PayloadTooLargeException) as too_large:
                client.post_to_connection(ConnectionId=connection_id, Data=b"x" * size)
            assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        # The connection is still fine afterwards.
        client.post_to_connection(ConnectionId=connection_id, Data=b"still here")
        assert ws.recv(timeout=5) == "still here"


def test_management_api_error_codes_are_what_boto3_expects(inspector: RunningGateway) -> None:
    client = inspector.management_client()
    with pytest.raises(ClientError) as error:
        client.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    assert error.value.response["Error"]["Code"] == "GoneException"

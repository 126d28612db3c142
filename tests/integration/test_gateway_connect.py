"""``$connect`` decides the handshake, as on API Gateway: a non-2xx status refuses it with that
status, a raising handler refuses it with 500, and a refused connection never runs $disconnect."""

from __future__ import annotations

import http.client
import json

import pytest
from tests.integration.conftest import RunningGateway, recv_json, wait_for
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.integration


def _refused_status(gateway: RunningGateway, query: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        gateway.connect(query)
    return refused.value.response.status_code


@pytest.mark.parametrize("status", [401, 403, 429, 500])
def test_connect_returning_non_2xx_refuses_the_handshake(
    inspector: RunningGateway, status: int
) -> None:
    assert _refused_status(inspector, f"?status={status}&case=refuse{status}") == status


def test_connect_returning_2xx_other_than_200_accepts(inspector: RunningGateway) -> None:
    with inspector.connect("?status=204") as ws:
        ws.send(json.dumps({"action": "echo"}))
        assert recv_json(ws)["event"]["requestContext"]["routeKey"] == "echo"


def test_connect_that_raises_refuses_with_500(inspector: RunningGateway) -> None:
    assert _refused_status(inspector, "?raise=1&case=raising-connect") == 500
    assert "connect refused by raising" in inspector.logs.text


def test_refused_connection_never_runs_disconnect(inspector: RunningGateway) -> None:
    assert inspector.events is not None
    _refused_status(inspector, "?status=403&case=no-disconnect")
    (record,) = wait_for(
        lambda: [
            r
            for r in inspector.events.records("connect")  # type: ignore[union-attr]
            if (r["event"].get("queryStringParameters") or {}).get("case") == "no-disconnect"
        ],
        what="the refused $connect record",
    )
    connection_id = record["event"]["requestContext"]["connectionId"]
    # Give a wrongly scheduled $disconnect time to show up, then check it did not.
    with inspector.connect() as ws:
        inspector.connection_id(ws)
    assert inspector.events.records("disconnect", connection_id) == []
    # And the id is unknown to @connections: it never was a connection.
    gone = inspector.management_client().exceptions.GoneException
    with pytest.raises(gone):
        inspector.management_client().get_connection(ConnectionId=connection_id)


def test_connection_ids_are_unique_and_shaped_like_api_gateways(inspector: RunningGateway) -> None:
    ids = set()
    for _ in range(5):
        with inspector.connect() as ws:
            ids.add(inspector.connection_id(ws))
    assert len(ids) == 5
    for connection_id in ids:
        assert len(connection_id) == 16 and connection_id.endswith("=")
        assert connection_id[:-1].isalnum()


def test_plain_get_on_the_stage_is_not_a_websocket(inspector: RunningGateway) -> None:
    # A request without the upgrade headers is not a handshake; it must not run $connect.
    port = inspector.gateway.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/local")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status in (400, 404, 426)


def test_connect_picks_a_subprotocol_with_its_response_headers(inspector: RunningGateway) -> None:
    with inspector.connect("?protocol=chat.v2", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send(json.dumps({"action": "echo"}))
        assert recv_json(ws)["event"]["requestContext"]["routeKey"] == "echo"


def test_offered_subprotocols_reach_connect_as_a_header(inspector: RunningGateway) -> None:
    with inspector.connect(subprotocols=["token.abc123"]) as ws:
        connection_id = inspector.connection_id(ws)
        assert ws.subprotocol is None  # $connect chose none
    assert inspector.events is not None
    (record,) = inspector.events.wait("connect", connection_id)
    assert record["event"]["headers"]["Sec-WebSocket-Protocol"] == "token.abc123"

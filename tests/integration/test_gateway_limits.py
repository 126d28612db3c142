"""API Gateway's WebSocket limits and every way a connection ends, each followed by $disconnect.

Frame and message sizes use API Gateway's own limits (32 KB frame, 128 KB message); the idle
timeout and maximum duration are lowered to under a second on gateways of their own.
"""

from __future__ import annotations

import base64
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import (
    TIMEOUT,
    EventsLog,
    RunningGateway,
    inspector_gateway,
    raw_upgrade,
    recv_json,
    wait_for,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

pytestmark = pytest.mark.integration

KB = 1024


def _closed_by_server(ws: ClientConnection, timeout: float = TIMEOUT) -> ConnectionClosed:
    """The close the server started: recv until the connection ends, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed


def _disconnect_of(events: EventsLog, connection_id: str) -> dict[str, Any]:
    (record,) = events.wait("disconnect", connection_id)
    return dict(record["event"]["requestContext"])


def _events(gateway: RunningGateway) -> EventsLog:
    assert gateway.events is not None
    return gateway.events


# --- frame and message sizes ---------------------------------------------------------------------


def test_frame_of_exactly_32_kb_is_accepted(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send("x" * (32 * KB))
        assert recv_json(ws)["size"] == 32 * KB


def test_single_frame_over_32_kb_closes_with_1009(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        ws.send("x" * (33 * KB))
        closed = _closed_by_server(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    assert _disconnect_of(_events(inspector), connection_id)["disconnectStatusCode"] == 1009


def test_100_kb_message_in_four_25_kb_fragments_is_accepted(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(["y" * (25 * KB)] * 4)  # an iterable sends one fragmented message
        reply = recv_json(ws)
    assert reply["routeKey"] == "$default"
    assert reply["size"] == 100 * KB


def test_fragmented_binary_message_is_reassembled(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send([b"\x01" * (20 * KB), b"\x02" * (20 * KB)])
        reply = recv_json(ws)
    assert reply["isBase64Encoded"] is True
    assert reply["size"] == len(base64.b64encode(b"\x01" * (40 * KB)))


def test_130_kb_message_in_fragments_closes_with_1009(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        ws.send(["z" * (26 * KB)] * 5)
        closed = _closed_by_server(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    assert _disconnect_of(_events(inspector), connection_id)["disconnectStatusCode"] == 1009


def test_text_frame_of_invalid_utf8_closes_with_1007(inspector: RunningGateway) -> None:
    events = _events(inspector)
    sock = raw_upgrade(inspector.url + "?who=bad-utf8")
    (record,) = wait_for(
        lambda: [
            r
            for r in events.records("connect")
            if (r["event"].get("queryStringParameters") or {}).get("who") == "bad-utf8"
        ],
        what="the raw connection's $connect",
    )
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe"))
    sock.sendall(b"\x81\x82" + mask + payload)  # FIN + text, masked, 2 bytes
    reply = sock.recv(64)
    sock.close()
    assert reply[:1] == b"\x88"  # a close frame
    assert int.from_bytes(reply[2:4], "big") == 1007
    connection_id = record["event"]["requestContext"]["connectionId"]
    assert _disconnect_of(events, connection_id)["disconnectStatusCode"] == 1007


# --- idle timeout and maximum duration ----------------------------------------------------------


def test_idle_connection_closes_with_1001_and_runs_disconnect(tmp_path: Path) -> None:
    with inspector_gateway(tmp_path, idle_timeout=0.6) as gateway, gateway.connect() as ws:
        connection_id = gateway.connection_id(ws)
        started = time.monotonic()
        closed = _closed_by_server(ws, timeout=3)
        waited = time.monotonic() - started
        context = _disconnect_of(_events(gateway), connection_id)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    assert waited >= 0.5
    assert context["disconnectStatusCode"] == 1001
    assert context["disconnectReason"] == "Going away"


def test_messages_keep_a_connection_from_idling_out(tmp_path: Path) -> None:
    with inspector_gateway(tmp_path, idle_timeout=0.6) as gateway, gateway.connect() as ws:
        for _ in range(6):  # 1.5 s in all, well past the idle timeout
            ws.send(json.dumps({"action": "echo"}))
            recv_json(ws)
            time.sleep(0.25)
        ws.send(json.dumps({"action": "echo"}))
        assert recv_json(ws)["event"]["requestContext"]["routeKey"] == "echo"


def test_connection_older_than_max_duration_closes_with_1001(tmp_path: Path) -> None:
    with (
        inspector_gateway(tmp_path, max_connection_duration=1.0) as gateway,
        gateway.connect() as ws,
    ):
        connection_id = gateway.connection_id(ws)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(40):  # active all along: only the duration can end it
                ws.send(json.dumps({"action": "echo"}))
                recv_json(ws)
                time.sleep(0.1)
        waited = time.monotonic() - started
        context = _disconnect_of(_events(gateway), connection_id)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert waited < 3.0
    assert context["disconnectStatusCode"] == 1001


# --- every way a connection ends runs $disconnect once -------------------------------------------


def test_disconnect_runs_once_for_each_way_a_connection_ends(tmp_path: Path) -> None:
    """Client close, abrupt drop, idle timeout, DELETE and gateway shutdown: five connections,
    five $disconnect invocations, each with the status code of how it ended."""
    with inspector_gateway(tmp_path, idle_timeout=1.0) as gateway, ExitStack() as clients:
        events = _events(gateway)
        client = clients.enter_context(gateway.connect("?who=client"))
        idle = clients.enter_context(gateway.connect("?who=idle"))
        clients.enter_context(gateway.connect("?who=deleted"))
        survivor = clients.enter_context(gateway.connect("?who=survivor"))
        dropped = raw_upgrade(gateway.url + "?who=dropped")
        ids = {
            (r["event"].get("queryStringParameters") or {})["who"]: r["event"]["requestContext"][
                "connectionId"
            ]
            for r in events.wait("connect", count=5)
        }

        client.close(4000, "client bye")
        dropped.close()  # TCP FIN with no close frame
        gateway.management_client().delete_connection(ConnectionId=ids["deleted"])
        # Keep the survivor active while the idle one times out.
        deadline = time.monotonic() + 3
        while idle.state.name != "CLOSED":
            assert time.monotonic() < deadline, "the idle connection was never closed"
            survivor.send(json.dumps({"action": "echo"}))
            recv_json(survivor)
            time.sleep(0.2)
            assert len(events.records("disconnect")) <= 4
        events.wait("disconnect", count=4)
        gateway.stop()  # the survivor goes with the gateway
        codes = {
            who: _disconnect_of(events, connection_id)["disconnectStatusCode"]
            for who, connection_id in ids.items()
        }
    assert len(events.records("disconnect")) == 5
    assert codes["client"] == 4000
    assert codes["dropped"] == 1006
    assert codes["idle"] == 1001
    assert codes["survivor"] == 1001
    assert isinstance(codes["deleted"], int)
    client_context = _disconnect_of(events, ids["client"])
    assert client_context["disconnectReason"] == "client bye"


def test_abrupt_drop_reports_1006(inspector: RunningGateway) -> None:
    events = _events(inspector)
    sock = raw_upgrade(inspector.url + "?who=abrupt-drop")
    (record,) = wait_for(
        lambda: [
            r
            for r in events.records("connect")
            if (r["event"].get("queryStringParameters") or {}).get("who") == "abrupt-drop"
        ],
        what="the raw connection's $connect",
    )
    connection_id = record["event"]["requestContext"]["connectionId"]
    wait_for(
        lambda: inspector.call(lambda: connection_id in inspector.gateway.connections),
        what="the gateway to register the connection",
    )
    sock.close()
    context = _disconnect_of(events, connection_id)
    assert context["disconnectStatusCode"] == 1006
    assert context["disconnectReason"] == ""

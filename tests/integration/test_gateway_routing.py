"""Route selection and the events each route's function gets, with real WebSocket clients.

The inspector app (tests/fixtures/apps/inspector) answers two-way routes with the event it was
handed, so these tests pin the event shapes API Gateway documents.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator

import pytest
from tests.integration.conftest import (
    INSPECTOR,
    RunningGateway,
    recv_json,
    running_gateway,
)

from wschat.gateway import core
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import api_from_routes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """An API with one custom route and no $default (what --route gives)."""
    api = api_from_routes(
        ["echo=app.on_message"],
        environment={"EVENTS_LOG": str(tmp_path_factory.mktemp("no-default") / "events.jsonl")},
        code_dir=INSPECTOR,
        timeout=3.0,
    )
    with running_gateway(GatewayConfig(api=api, limits=core.Limits())) as running:
        yield running


# --- route selection ---------------------------------------------------------------------------


def test_action_field_selects_the_route(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "echo", "payload": 1}))
        reply = recv_json(ws)
    assert reply["event"]["requestContext"]["routeKey"] == "echo"
    assert json.loads(reply["event"]["body"]) == {"action": "echo", "payload": 1}


def test_non_json_frame_goes_to_default(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send("hello, not JSON")
        reply = recv_json(ws)
    assert reply == {
        "routeKey": "$default",
        "size": len("hello, not JSON"),
        "isBase64Encoded": False,
        "body": "hello, not JSON",
    }


def test_unknown_action_and_missing_action_go_to_default(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "nope"}))
        unknown = recv_json(ws)
        ws.send(json.dumps({"message": "no action"}))
        missing = recv_json(ws)
    assert unknown["routeKey"] == "$default"
    assert missing["routeKey"] == "$default"


def test_no_matching_route_and_no_default_replies_forbidden(no_default: RunningGateway) -> None:
    with no_default.connect() as ws:
        ws.send(json.dumps({"action": "missing"}))
        reply = recv_json(ws)
        ws.send("not JSON either")
        second = recv_json(ws)
    assert set(reply) == {"message", "connectionId", "requestId"}
    assert reply["message"] == "Forbidden"
    assert reply["connectionId"].endswith("=")
    assert second["message"] == "Forbidden"
    assert second["connectionId"] == reply["connectionId"]
    assert second["requestId"] != reply["requestId"]


# --- events --------------------------------------------------------------------------------------


def test_connect_event_has_headers_query_and_request_context(inspector: RunningGateway) -> None:
    before_ms = int(time.time() * 1000)
    headers = [("X-Trace", "one"), ("X-Trace", "two"), ("Authorization", "Bearer t0ken")]
    with inspector.connect("?room=lobby&tag=a&tag=b", headers=headers) as ws:
        connection_id = inspector.connection_id(ws)
    assert inspector.events is not None
    (record,) = inspector.events.wait("connect", connection_id)
    event = record["event"]

    assert event["headers"]["Authorization"] == "Bearer t0ken"
    assert event["headers"]["X-Trace"] == "two"  # the last value, as API Gateway's single map
    assert event["multiValueHeaders"]["X-Trace"] == ["one", "two"]
    assert event["headers"]["Host"] == inspector.gateway.domain_name
    assert "Sec-WebSocket-Key" in event["headers"]
    # What API Gateway adds: where the client came from and what it reached, and a trace id.
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Port"] == str(inspector.gateway.port)
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", event["headers"]["X-Amzn-Trace-Id"])
    assert event["queryStringParameters"] == {"room": "lobby", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"room": ["lobby"], "tag": ["a", "b"]}
    assert event["isBase64Encoded"] is False

    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"] == connection_id
    assert context["domainName"] == inspector.gateway.domain_name
    assert context["stage"] == "local"
    assert context["apiId"] == "local"
    assert context["messageDirection"] == "IN"
    assert context["requestId"] and context["extendedRequestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "wschat-tests/1.0"
    assert before_ms <= context["connectedAt"] <= context["requestTimeEpoch"]
    assert context["requestTimeEpoch"] <= int(time.time() * 1000)
    # CLF time, e.g. "09/Feb/2024:18:11:43 +0000"
    assert time.strptime(context["requestTime"], "%d/%b/%Y:%H:%M:%S +0000")
    assert "messageId" not in context


def test_connect_without_query_has_no_query_maps(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
    assert inspector.events is not None
    (record,) = inspector.events.wait("connect", connection_id)
    # API Gateway omits the query maps when the URL has no query string.
    assert "queryStringParameters" not in record["event"]
    assert "multiValueQueryStringParameters" not in record["event"]


def test_message_event_has_message_id_body_and_context(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "echo", "n": 1}))
        first = recv_json(ws)
        ws.send(json.dumps({"action": "echo", "n": 2}))
        second = recv_json(ws)
    event = first["event"]
    context = event["requestContext"]
    assert event["body"] == json.dumps({"action": "echo", "n": 1})
    assert event["isBase64Encoded"] is False
    assert context["eventType"] == "MESSAGE"
    assert context["routeKey"] == "echo"
    assert context["messageDirection"] == "IN"
    assert context["messageId"]
    assert context["requestId"] != context["messageId"]
    assert "headers" not in event  # only $connect (and $disconnect) carry headers
    second_context = second["event"]["requestContext"]
    assert second_context["messageId"] != context["messageId"]
    assert second_context["requestId"] != context["requestId"]
    assert second_context["connectedAt"] == context["connectedAt"]
    assert second_context["connectionId"] == context["connectionId"]


def test_binary_frame_arrives_base64_encoded(inspector: RunningGateway) -> None:
    payload = bytes(range(256))
    with inspector.connect() as ws:
        ws.send(payload)
        reply = recv_json(ws)
    assert reply["routeKey"] == "$default"
    assert reply["isBase64Encoded"] is True
    assert reply["size"] == len(base64.b64encode(payload))
    assert base64.b64encode(payload).decode().startswith(reply["body"])


def test_lambda_context_has_request_id_name_memory_and_time_left(
    inspector: RunningGateway,
) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "echo"}))
        first = recv_json(ws)
        ws.send(json.dumps({"action": "echo"}))
        second = recv_json(ws)
    context = first["context"]
    assert context["function_name"] == "MessageFunction"
    # The template's MemorySize, a string as Lambda's Python runtime gives it.
    assert context["memory_limit_in_mb"] == "256"
    assert 0 < context["remaining_ms"] <= 5000  # the template's Timeout: 5
    assert len(context["aws_request_id"]) == 36  # a UUID, as Lambda's
    assert second["context"]["aws_request_id"] != context["aws_request_id"]
    # Lambda's request id is its own, not API Gateway's.
    assert context["aws_request_id"] != first["event"]["requestContext"]["requestId"]


def test_disconnect_event_has_status_code_and_reason(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        ws.close(4001, "bye now")
    assert inspector.events is not None
    (record,) = inspector.events.wait("disconnect", connection_id)
    event = record["event"]
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 4001
    assert context["disconnectReason"] == "bye now"
    assert context["connectionId"] == connection_id
    assert "headers" in event and "multiValueHeaders" in event
    assert record["context"]["function_name"] == "DisconnectFunction"


# --- two-way and one-way routes ------------------------------------------------------------------


def test_two_way_route_sends_the_handler_body_back(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "count"}))
        reply = recv_json(ws)
    assert set(reply) == {"count", "pid"}


def test_one_way_route_sends_nothing_back(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        ws.send(json.dumps({"action": "whisper"}))
        ws.send(json.dumps({"action": "echo", "after": "whisper"}))
        # Frames from one connection run in order: the first reply is the echo's.
        reply = recv_json(ws)
        assert json.loads(reply["event"]["body"])["after"] == "whisper"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
    assert inspector.events is not None
    whispers = [
        r
        for r in inspector.events.records("message", connection_id)
        if r["event"]["requestContext"]["routeKey"] == "whisper"
    ]
    assert len(whispers) == 1  # it ran; its body just was not sent


# --- function state and environment --------------------------------------------------------------


def test_each_function_gets_its_own_environment(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "envA"}))
        a = recv_json(ws)
        ws.send(json.dumps({"action": "envB"}))
        b = recv_json(ws)
    assert a["greeting"] == "hello from A"
    assert a["function"] == "EnvAFunction"
    assert b["greeting"] == "hello from B"
    assert b["function"] == "EnvBFunction"
    # The worker's own plumbing is not in the handler's environment.
    assert a["workerVariables"] == [] and b["workerVariables"] == []


def test_module_state_survives_between_invocations(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        replies = []
        for _ in range(3):
            ws.send(json.dumps({"action": "count"}))
            replies.append(recv_json(ws))
    assert len({reply["pid"] for reply in replies}) == 1  # one warm execution environment
    counts = [reply["count"] for reply in replies]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]


def test_frames_from_one_connection_run_in_order(inspector: RunningGateway) -> None:
    # API Gateway promises no order between one connection's invocations; the local gateway
    # runs them one at a time, in order, so a test or a chat never sees them reordered.
    with inspector.connect() as ws:
        for n in range(10):
            ws.send(json.dumps({"action": "echo", "n": n}))
        seen = [json.loads(recv_json(ws)["event"]["body"])["n"] for _ in range(10)]
    assert seen == list(range(10))

"""WebSocketEvent, the typed view of API Gateway's events (powertools' APIGatewayWebSocketEvent
with the chat's short names and readings), read over the sample events; and the samples
themselves, which must look like what API Gateway sends."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from tests.support.events import (
    MISSING,
    load_event,
    management_endpoint_of,
    sample_names,
    websocket_event,
)

from wschat.events import WebSocketEvent

REQUIRED_CONTEXT_KEYS = ["connectionId", "routeKey", "eventType", "domainName", "stage"]
DOMAIN = "k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com"


# --- reading the samples ----------------------------------------------------------------------


def test_connect_event_reads_every_property() -> None:
    ws = WebSocketEvent(load_event("connect"))

    assert ws.connection_id == "Cq3vTfXwoE0CIeQ="
    assert ws.route_key == "$connect"
    assert ws.context.event_type == "CONNECT"
    assert ws.context.request_id == "Cq3vTGbdoE0FgAw="
    assert ws.domain_name == DOMAIN
    assert ws.stage == "prod"
    assert ws.connected_at == 1732498512345
    assert ws.context.request_time_epoch == 1732498512351
    assert ws.context.identity.source_ip == "203.0.113.25"
    assert ws.text is None
    assert ws.query == {"name": "minji"}
    assert ws.headers["Sec-WebSocket-Version"] == "13"
    assert ws.headers["host"] == DOMAIN  # headers are case-insensitive, as HTTP's are
    assert ws.disconnect_status_code is None
    assert ws.context.disconnect_reason is None


def test_message_event_reads_the_seed_frame() -> None:
    ws = WebSocketEvent(load_event("send_message"))

    assert ws.route_key == "sendMessage"
    assert ws.context.event_type == "MESSAGE"
    assert ws.context.request_id == "Cq3xKE2hoE0FrDg="
    assert ws.connected_at == 1732498512345
    assert ws.context.request_time_epoch == 1732498525120
    assert json.loads(ws.text or "") == {"action": "sendMessage", "message": "hi"}
    assert ws.json_body == {"action": "sendMessage", "message": "hi"}  # powertools' own
    assert ws.query == {}
    assert ws.headers == {}


def test_default_event_reads_its_route() -> None:
    ws = WebSocketEvent(load_event("default"))

    assert ws.route_key == "$default"
    assert ws.context.event_type == "MESSAGE"
    assert json.loads(ws.text or "")["action"] == "shout"


def test_disconnect_event_reads_close_code_and_reason() -> None:
    ws = WebSocketEvent(load_event("disconnect"))

    assert ws.route_key == "$disconnect"
    assert ws.context.event_type == "DISCONNECT"
    assert ws.disconnect_status_code == 1005
    assert ws.context.disconnect_reason == "Client-side close frame status not set"
    assert ws.text is None


def test_disconnect_code_given_as_text_reads_as_int() -> None:
    ws = WebSocketEvent(load_event("disconnect", requestContext={"disconnectStatusCode": "1001"}))

    assert ws.disconnect_status_code == 1001


def test_binary_message_body_is_decoded_from_base64() -> None:
    event = websocket_event("sendMessage", '{"message":"바이너리"}'.encode())
    assert event["isBase64Encoded"] is True

    assert WebSocketEvent(event).text == '{"message":"바이너리"}'


def test_binary_message_that_is_not_utf8_decodes_with_replacement_characters() -> None:
    body = WebSocketEvent(load_event("send_message_binary")).text

    assert body is not None
    assert "\ufffd" in body


def test_raw_event_stays_available() -> None:
    event = load_event("send_message")

    assert WebSocketEvent(event).raw_event is event


def test_query_names_are_case_sensitive_as_on_api_gateway() -> None:
    event = load_event("connect")
    event["queryStringParameters"] = {"Name": "x"}
    ws = WebSocketEvent(event)

    assert "name" not in ws.query and ws.query["Name"] == "x"


def test_null_query_and_headers_read_as_empty() -> None:
    ws = WebSocketEvent(load_event("connect", queryStringParameters=None, headers=None))

    assert ws.query == {}
    assert ws.headers == {}


# --- required keys ----------------------------------------------------------------------------


def test_event_without_request_context_raises_key_error() -> None:
    with pytest.raises(KeyError, match="requestContext"):
        WebSocketEvent(load_event("send_message", requestContext=MISSING))


@pytest.mark.parametrize(
    ("key", "read"),
    [
        ("connectionId", lambda ws: ws.connection_id),
        ("routeKey", lambda ws: ws.route_key),
        ("eventType", lambda ws: ws.context.event_type),
        ("domainName", lambda ws: ws.domain_name),
        ("stage", lambda ws: ws.stage),
        ("connectedAt", lambda ws: ws.connected_at),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_missing_required_key_raises_key_error(key: str, read: Any) -> None:
    ws = WebSocketEvent(load_event("send_message", requestContext={key: MISSING}))

    with pytest.raises(KeyError, match=key):
        read(ws)


# --- the samples look like API Gateway's events ---------------------------------------------


@pytest.mark.parametrize("name", sample_names())
def test_sample_has_api_gateways_request_context(name: str) -> None:
    context = load_event(name)["requestContext"]

    for key in [
        *REQUIRED_CONTEXT_KEYS,
        "apiId",
        "requestId",
        "extendedRequestId",
        "requestTime",
        "requestTimeEpoch",
        "connectedAt",
        "messageDirection",
    ]:
        assert key in context, key
    assert context["messageDirection"] == "IN"
    assert context["domainName"] == f"{context['apiId']}.execute-api.ap-northeast-2.amazonaws.com"
    assert context["requestTimeEpoch"] >= context["connectedAt"]
    assert ("messageId" in context) == (context["eventType"] == "MESSAGE")


def test_samples_belong_to_one_connection_on_one_stage() -> None:
    contexts = [load_event(name)["requestContext"] for name in sample_names()]

    assert {c["connectionId"] for c in contexts} == {"Cq3vTfXwoE0CIeQ="}
    assert {c["connectedAt"] for c in contexts} == {1732498512345}
    assert {management_endpoint_of(load_event(name)) for name in sample_names()} == {
        f"https://{DOMAIN}/prod"
    }


def test_connect_sample_has_handshake_headers_and_query() -> None:
    event = load_event("connect")

    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    assert event["multiValueQueryStringParameters"] == {"name": ["minji"]}
    assert event["requestContext"]["identity"]["userAgent"] == event["headers"]["User-Agent"]
    assert "body" not in event


@pytest.mark.parametrize("name", ["send_message", "send_message_binary", "default"])
def test_message_samples_carry_body_and_base64_flag(name: str) -> None:
    event = load_event(name)

    assert isinstance(event["body"], str)
    assert isinstance(event["isBase64Encoded"], bool)
    if event["isBase64Encoded"]:
        base64.b64decode(event["body"], validate=True)


# --- the factories ----------------------------------------------------------------------------


def test_load_event_returns_a_fresh_copy() -> None:
    load_event("connect")["requestContext"]["connectionId"] = "changed"

    assert load_event("connect")["requestContext"]["connectionId"] == "Cq3vTfXwoE0CIeQ="


def test_load_event_merges_request_context_overrides() -> None:
    event = load_event("connect", requestContext={"connectionId": "other="})

    assert event["requestContext"]["connectionId"] == "other="
    assert event["requestContext"]["routeKey"] == "$connect"


@pytest.mark.parametrize(
    ("route_key", "event_type"),
    [
        ("$connect", "CONNECT"),
        ("$disconnect", "DISCONNECT"),
        ("sendMessage", "MESSAGE"),
        ("$default", "MESSAGE"),
    ],
)
def test_websocket_event_matches_its_route(route_key: str, event_type: str) -> None:
    ws = WebSocketEvent(websocket_event(route_key, connection_id="abc="))

    assert (ws.route_key, ws.context.event_type, ws.connection_id) == (
        route_key,
        event_type,
        "abc=",
    )


def test_websocket_events_get_fresh_request_and_message_ids() -> None:
    first = websocket_event("sendMessage", {"action": "sendMessage", "message": "1"})
    second = websocket_event("sendMessage", {"action": "sendMessage", "message": "2"})

    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]
    assert first["requestContext"]["messageId"] != second["requestContext"]["messageId"]
    assert json.loads(first["body"])["message"] == "1"


def test_the_authorizer_of_a_connection_is_on_its_events() -> None:
    event = load_event("send_message")
    assert WebSocketEvent(event).authorizer is None
    context = {"principalId": "user-1", "user": "minji", "admin": False}
    event["requestContext"]["authorizer"] = context
    assert WebSocketEvent(event).authorizer == context

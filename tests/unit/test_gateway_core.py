"""The local gateway's API Gateway emulation, with no sockets: route selection, the events handed
to Lambda, error replies, the reading of a handler's result, ids and limits.

Each expectation is what API Gateway's WebSocket API does; the sample events in ``tests/events/``
have the shape API Gateway gives Lambda and serve as the reference for the events we build.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.events import load_event

from wschat.gateway import core
from wschat.gateway.spec import ApiSpec, FunctionSpec, RouteSpec

# --- helpers ---------------------------------------------------------------------------------


def make_api(*route_keys: str, expression: str = "$request.body.action") -> ApiSpec:
    """An API whose every route has its own function, named after the route key."""
    routes = {
        key: RouteSpec(key, FunctionSpec(name=f"fn{key}", handler="app.handler", code_dir=Path()))
        for key in route_keys
    }
    return ApiSpec(name="chat", routes=routes, route_selection_expression=expression)


def selected(api: ApiSpec, body: str | bytes | None) -> str | None:
    route = core.select_route(api, body)
    return None if route is None else route.route_key


CHAT = make_api("$connect", "$disconnect", "$default", "sendMessage", "join")
CHAT_WITHOUT_DEFAULT = make_api("$connect", "$disconnect", "sendMessage")

STAGE = core.StageInfo(
    api_id="k7x2m9q4ab",
    stage="prod",
    domain_name="k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com",
)
NOW_MS = 1_707_502_303_123  # 09/Feb/2024:18:11:43.123 UTC
CONNECTED_AT_MS = NOW_MS - 5_000


def make_conn(
    headers: list[tuple[str, str]] | None = None,
    query: list[tuple[str, str]] | None = None,
    user_agent: str | None = "wscat/6.0",
) -> core.ConnectionInfo:
    return core.ConnectionInfo(
        connection_id="Cq3vTfXwoE0CIeQ=",
        source_ip="203.0.113.25",
        connected_at_ms=CONNECTED_AT_MS,
        headers=headers if headers is not None else [("Host", STAGE.domain_name)],
        query=query or [],
        user_agent=user_agent,
    )


# --- route selection: $request.body.action -----------------------------------------------------


def test_action_selects_the_route_it_names() -> None:
    assert selected(CHAT, '{"action": "sendMessage", "message": "hi"}') == "sendMessage"
    assert selected(CHAT, '{"action": "join", "room": "lobby"}') == "join"


def test_message_without_action_goes_to_default() -> None:
    assert selected(CHAT, '{"message": "hi"}') == "$default"


def test_action_naming_no_route_goes_to_default() -> None:
    assert selected(CHAT, '{"action": "sendmessage"}') == "$default"  # keys are case-sensitive


@pytest.mark.parametrize(
    "body",
    ["hello", "", "{", "{'action': 'sendMessage'}", '{"action": "sendMessage"', "action=join"],
)
def test_non_json_message_goes_to_default(body: str) -> None:
    assert selected(CHAT, body) == "$default"


@pytest.mark.parametrize(
    "body", ['["sendMessage"]', '[{"action": "sendMessage"}]', "42", '"sendMessage"', "null"]
)
def test_json_that_is_not_an_object_goes_to_default(body: str) -> None:
    assert selected(CHAT, body) == "$default"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"meta": {"kind": "join"}}', "join"),
        ('{"meta": {"kind": "sendMessage", "other": 1}, "kind": "join"}', "sendMessage"),
        ('{"kind": "join"}', "$default"),  # the path starts at meta
        ('{"meta": "join"}', "$default"),  # meta is no object
        ('{"meta": {}}', "$default"),
        ('{"meta": [{"kind": "join"}]}', "$default"),
    ],
)
def test_nested_selection_expression_follows_the_path(body: str, expected: str) -> None:
    api = make_api("$default", "join", "sendMessage", expression="$request.body.meta.kind")
    assert selected(api, body) == expected


@pytest.mark.parametrize(("value", "route_key"), [("7", "7"), ("-3", "-3"), ("0", "0")])
def test_number_selects_the_route_named_by_its_string_form(value: str, route_key: str) -> None:
    api = make_api("$default", route_key)
    assert selected(api, f'{{"action": {value}}}') == route_key


@pytest.mark.parametrize("value", ['{"x": 1}', "{}", "[]", '["join"]', "null", "true", "false"])
def test_object_array_null_and_bool_values_select_no_route(value: str) -> None:
    # Routes named like the values' Python or JSON spelling must not be reached either.
    api = make_api("$default", "join", "True", "true", "False", "false", "None", "null", "{}", "[]")
    assert selected(api, f'{{"action": {value}}}') == "$default"


@pytest.mark.parametrize("key", ["$connect", "$disconnect"])
def test_message_never_selects_connect_or_disconnect(key: str) -> None:
    assert selected(CHAT, json.dumps({"action": key})) == "$default"
    assert selected(CHAT_WITHOUT_DEFAULT, json.dumps({"action": key})) is None


def test_action_default_selects_default() -> None:
    assert selected(CHAT, '{"action": "$default"}') == "$default"


@pytest.mark.parametrize(
    "body", ['{"action": "join"}', '{"message": "hi"}', "not json", '{"action": "$connect"}']
)
def test_unmatched_message_without_default_route_is_forbidden(body: str) -> None:
    assert core.select_route(CHAT_WITHOUT_DEFAULT, body) is None


def test_matched_message_without_default_route_is_routed() -> None:
    assert selected(CHAT_WITHOUT_DEFAULT, '{"action": "sendMessage"}') == "sendMessage"


def test_static_selection_expression_selects_that_route_for_every_message() -> None:
    api = make_api("$default", "sendMessage", expression="$default")
    assert selected(api, '{"action": "sendMessage"}') == "$default"
    assert selected(api, "not json") == "$default"


def test_utf8_bytes_are_routed_like_text() -> None:
    assert selected(CHAT, b'{"action": "sendMessage", "message": "\xec\x95\x88\xeb\x85\x95"}') == (
        "sendMessage"
    )


@pytest.mark.parametrize("body", [b"\xff\xfe\x00\x01", b"\x89PNG\r\n\x1a\n", b""])
def test_bytes_that_are_not_json_go_to_default(body: bytes) -> None:
    assert selected(CHAT, body) == "$default"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        '{"action":' * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        b"[" * 100_000,
        '{"action": ' + "9" * 10_000 + "}",  # beyond Python's int-from-str digit limit
    ],
    ids=["deep-array", "deep-unclosed-object", "deep-closed-object", "deep-bytes", "huge-number"],
)
def test_pathological_json_goes_to_default_without_raising(body: str | bytes) -> None:
    assert selected(CHAT, body) == "$default"


def test_huge_message_is_still_routed_by_its_action() -> None:
    body = json.dumps({"action": "join", "padding": "x" * 2_000_000})
    assert selected(CHAT, body) == "join"


_ACTIONS = st.sampled_from(["sendMessage", "join", "$connect", "$disconnect", "$default", "x"])
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | _ACTIONS,
    lambda inner: st.lists(inner) | st.dictionaries(st.sampled_from(["action", "message"]), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_frames_never_raise_and_never_reach_connect_or_disconnect(
    body: str | bytes,
) -> None:
    route = core.select_route(CHAT, body)
    assert route is not None
    assert route.route_key in {"$default", "sendMessage", "join"}


@settings(max_examples=200, deadline=None)
@given(_JSON_VALUES, st.booleans())
def test_json_frames_go_to_their_action_or_default(value: Any, as_bytes: bool) -> None:
    text = json.dumps(value)
    action = value.get("action") if isinstance(value, dict) else None
    expected = action if action in ("sendMessage", "join") else "$default"
    assert selected(CHAT, text.encode() if as_bytes else text) == expected
    without_default = selected(CHAT_WITHOUT_DEFAULT, text)
    assert without_default == ("sendMessage" if action == "sendMessage" else None)


# --- events -----------------------------------------------------------------------------------


def test_connect_event_has_the_keys_of_api_gateways_connect_event() -> None:
    sample = load_event("connect")
    event = core.connect_event(STAGE, make_conn(query=[("name", "minji")]), NOW_MS)
    assert set(event) == set(sample)
    assert set(event["requestContext"]) == set(sample["requestContext"])
    assert set(event["requestContext"]["identity"]) == set(sample["requestContext"]["identity"])


def test_connect_event_request_context_describes_the_connection_and_stage() -> None:
    context = core.connect_event(STAGE, make_conn(), NOW_MS)["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["connectionId"] == "Cq3vTfXwoE0CIeQ="
    assert context["apiId"] == "k7x2m9q4ab"
    assert context["stage"] == "prod"
    assert context["domainName"] == "k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com"
    assert context["identity"] == {"sourceIp": "203.0.113.25", "userAgent": "wscat/6.0"}
    assert isinstance(context["requestId"], str) and context["requestId"]
    assert isinstance(context["extendedRequestId"], str) and context["extendedRequestId"]
    assert "messageId" not in context


def test_request_context_times_are_epoch_milliseconds_and_clf_request_time() -> None:
    context = core.connect_event(STAGE, make_conn(), NOW_MS)["requestContext"]
    assert type(context["connectedAt"]) is int
    assert type(context["requestTimeEpoch"]) is int
    assert context["connectedAt"] == CONNECTED_AT_MS
    assert context["requestTimeEpoch"] == NOW_MS
    assert context["requestTime"] == "09/Feb/2024:18:11:43 +0000"


def test_request_time_has_api_gateways_format_like_the_samples() -> None:
    pattern = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")
    assert pattern.match(load_event("connect")["requestContext"]["requestTime"])
    for now_ms in (0, 946_684_800_000, NOW_MS, 4_102_444_799_999):
        assert pattern.match(
            core.connect_event(STAGE, make_conn(), now_ms)["requestContext"]["requestTime"]
        )


def test_identity_has_no_user_agent_when_the_client_sent_none() -> None:
    context = core.connect_event(STAGE, make_conn(user_agent=None), NOW_MS)["requestContext"]
    assert context["identity"] == {"sourceIp": "203.0.113.25"}


def test_connect_event_carries_headers_in_single_and_multi_value_maps() -> None:
    headers = [
        ("Host", "chat.local:8080"),
        ("Sec-WebSocket-Protocol", "chat"),
        ("X-Tag", "first"),
        ("X-Tag", "second"),
    ]
    event = core.connect_event(STAGE, make_conn(headers=headers), NOW_MS)
    assert event["headers"] == {
        "Host": "chat.local:8080",
        "Sec-WebSocket-Protocol": "chat",
        "X-Tag": "second",  # the single-value map keeps the last value
    }
    assert event["multiValueHeaders"] == {
        "Host": ["chat.local:8080"],
        "Sec-WebSocket-Protocol": ["chat"],
        "X-Tag": ["first", "second"],
    }


def test_connect_event_carries_query_string_in_single_and_multi_value_maps() -> None:
    query = [("name", "minji"), ("room", "lobby"), ("room", "general"), ("flag", "")]
    event = core.connect_event(STAGE, make_conn(query=query), NOW_MS)
    assert event["queryStringParameters"] == {"name": "minji", "room": "general", "flag": ""}
    assert event["multiValueQueryStringParameters"] == {
        "name": ["minji"],
        "room": ["lobby", "general"],
        "flag": [""],
    }


def test_connect_event_without_query_string_has_no_query_keys() -> None:
    event = core.connect_event(STAGE, make_conn(query=[]), NOW_MS)
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


def test_connect_event_is_json_serialisable_and_not_base64() -> None:
    event = core.connect_event(STAGE, make_conn(query=[("a", "1")]), NOW_MS)
    assert json.loads(json.dumps(event)) == event
    assert event["isBase64Encoded"] is False


def test_text_message_event_carries_the_body_as_is() -> None:
    body = '{"action":"sendMessage","message":"안녕"}'
    event = core.message_event(STAGE, make_conn(), "sendMessage", body, NOW_MS)
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["routeKey"] == "sendMessage"
    assert context["eventType"] == "MESSAGE"
    assert context["messageDirection"] == "IN"
    assert context["connectedAt"] == CONNECTED_AT_MS
    assert context["requestTimeEpoch"] == NOW_MS
    assert isinstance(context["messageId"], str) and context["messageId"]


def test_message_event_has_the_keys_of_api_gateways_message_event() -> None:
    sample = load_event("send_message")
    event = core.message_event(STAGE, make_conn(user_agent=None), "sendMessage", "{}", NOW_MS)
    assert set(event) == set(sample)
    assert set(event["requestContext"]) == set(sample["requestContext"])


def test_binary_message_event_carries_the_body_base64_encoded() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\xff"
    event = core.message_event(STAGE, make_conn(), "$default", data, NOW_MS)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data
    assert set(event) == set(load_event("send_message_binary"))


def test_every_event_gets_its_own_request_and_message_id() -> None:
    conn = make_conn()
    first = core.message_event(STAGE, conn, "sendMessage", "a", NOW_MS)["requestContext"]
    second = core.message_event(STAGE, conn, "sendMessage", "a", NOW_MS)["requestContext"]
    assert first["requestId"] != second["requestId"]
    assert first["messageId"] != second["messageId"]


def test_disconnect_event_carries_the_close_status_and_reason() -> None:
    event = core.disconnect_event(STAGE, make_conn(), 1001, "Going away", NOW_MS)
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1001
    assert context["disconnectReason"] == "Going away"
    assert context["connectionId"] == "Cq3vTfXwoE0CIeQ="
    assert "messageId" not in context
    assert "body" not in event


def test_disconnect_event_has_the_keys_and_headers_of_api_gateways_disconnect_event() -> None:
    sample = load_event("disconnect")
    event = core.disconnect_event(STAGE, make_conn(), 1005, "", NOW_MS)
    assert set(event) == set(sample)
    assert set(event["requestContext"]) == set(sample["requestContext"])
    assert event["headers"] == sample["headers"]
    assert event["multiValueHeaders"] == sample["multiValueHeaders"]


# --- ids --------------------------------------------------------------------------------------

ID_SHAPE = re.compile(r"^[A-Za-z0-9]{15}=$")


@pytest.mark.parametrize("new_id", [core.new_connection_id, core.new_request_id])
def test_ids_are_shaped_like_api_gateways_and_url_safe(new_id: Any) -> None:
    for _ in range(1_000):
        value = new_id()
        assert len(value) == 16
        assert ID_SHAPE.match(value), value
        assert "/" not in value and "+" not in value


@pytest.mark.parametrize("new_id", [core.new_connection_id, core.new_request_id])
def test_ids_are_unique_across_ten_thousand_draws(new_id: Any) -> None:
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_sample_connection_ids_have_the_same_shape_as_ours() -> None:
    assert ID_SHAPE.match(load_event("connect")["requestContext"]["connectionId"])


# --- replies and results ----------------------------------------------------------------------


@pytest.mark.parametrize("message", [core.FORBIDDEN, core.INTERNAL_SERVER_ERROR, core.TIMED_OUT])
def test_error_reply_is_api_gateways_json(message: str) -> None:
    reply = core.error_reply(message, "Cq3vTfXwoE0CIeQ=", "Cq3yAGz9oE0Fh7Q=")
    assert isinstance(reply, bytes)
    assert json.loads(reply) == {
        "message": message,
        "connectionId": "Cq3vTfXwoE0CIeQ=",
        "requestId": "Cq3yAGz9oE0Fh7Q=",
    }


def test_error_messages_are_api_gateways_wording() -> None:
    assert core.FORBIDDEN == "Forbidden"
    assert core.INTERNAL_SERVER_ERROR == "Internal server error"
    assert core.TIMED_OUT == "Endpoint request timed out"


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ({"statusCode": 200}, 200),
        ({"statusCode": 403, "body": "no"}, 403),
        ({"statusCode": "403"}, 403),
        ({"body": "hello"}, 200),  # missing statusCode
        ({}, 200),
        ({"statusCode": "forbidden"}, 502),
        ({"statusCode": None}, 502),
        ({"statusCode": [200]}, 502),
        ({"statusCode": {"code": 200}}, 502),
        ({"statusCode": float("nan")}, 502),
        (None, 200),
        ("ok", 200),
        (42, 200),
        (["statusCode", 500], 200),
    ],
)
def test_status_of_a_lambda_result(result: Any, status: int) -> None:
    assert core.status_of(result) == status


def test_status_of_infinite_status_code_is_a_bad_gateway() -> None:
    # A handler returning 1e400 reaches the gateway as float('inf') once through JSON.
    result = json.loads('{"statusCode": 1e400}')
    assert core.status_of(result) == 502


@pytest.mark.parametrize("code", [0, 99, 600, 99999, -1, True])
def test_status_code_that_is_no_http_status_is_a_bad_gateway(code: Any) -> None:
    assert core.status_of({"statusCode": code}) == 502


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"statusCode": 200, "body": "pong"}, "pong"),
        ({"body": ""}, ""),
        ({"body": {"type": "pong", "n": 1}}, '{"type": "pong", "n": 1}'),
        ({"body": [1, 2]}, "[1, 2]"),
        ({"statusCode": 200}, None),
        ({"body": None}, None),
        ("plain text", "plain text"),
        (None, None),
        (42, None),
    ],
)
def test_route_response_body(result: Any, body: str | None) -> None:
    assert core.route_response_body(result) == body


def test_route_response_dict_body_is_valid_json() -> None:
    body = core.route_response_body({"body": {"message": "안녕", "ok": True}})
    assert body is not None
    assert json.loads(body) == {"message": "안녕", "ok": True}


@pytest.mark.parametrize(
    ("result", "headers"),
    [
        (
            {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat"}},
            {"Sec-WebSocket-Protocol": "chat"},
        ),
        ({"headers": {"X-Count": 3}}, {"X-Count": "3"}),
        ({"statusCode": 200}, {}),
        ({"headers": None}, {}),
        ({"headers": ["Sec-WebSocket-Protocol", "chat"]}, {}),
        ("ok", {}),
        (None, {}),
    ],
)
def test_connect_response_headers(result: Any, headers: dict[str, str]) -> None:
    assert core.connect_response_headers(result) == headers


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (204, True), (299, True), (199, False), (300, False), (403, False), (500, False)],
)
def test_only_2xx_is_success(status: int, ok: bool) -> None:
    assert core.is_success(status) is ok


# --- limits -----------------------------------------------------------------------------------


def test_default_limits_are_api_gateways_quotas() -> None:
    limits = core.Limits()
    assert limits.max_message_bytes == 128 * 1024
    assert limits.max_frame_bytes == 32 * 1024
    assert limits.idle_timeout == 600
    assert limits.max_connection_duration == 7200
    assert limits.integration_timeout == 29


def test_limits_can_be_lowered_and_are_immutable() -> None:
    limits = core.Limits(max_message_bytes=1024, idle_timeout=0.5)
    assert limits.max_message_bytes == 1024
    assert limits.max_frame_bytes == 32 * 1024
    with pytest.raises(AttributeError):
        limits.idle_timeout = 10  # type: ignore[misc]


# --- the headers API Gateway adds to $connect ---------------------------------------------------


def test_forwarded_headers_say_where_the_client_came_from_and_what_it_reached() -> None:
    headers = core.forwarded_headers([("Host", "h")], "203.0.113.7", 8443, True, 1_700_000_000_000)
    found = dict(headers)
    assert found["X-Forwarded-For"] == "203.0.113.7"
    assert (found["X-Forwarded-Port"], found["X-Forwarded-Proto"]) == ("8443", "https")
    assert found["X-Amzn-Trace-Id"].startswith(f"Root=1-{1_700_000_000:08x}-")
    assert found["Host"] == "h"


def test_forwarded_headers_append_to_the_clients_for_and_keep_its_trace_but_not_its_port() -> None:
    client = [
        ("X-Forwarded-For", "10.0.0.1"),
        ("x-forwarded-port", "1"),
        ("X-Forwarded-Proto", "gopher"),
        ("X-Amzn-Trace-Id", "Root=1-00000000-000000000000000000000000"),
    ]
    found = dict(core.forwarded_headers(client, "203.0.113.7", 80, False, 0))
    assert found["X-Forwarded-For"] == "10.0.0.1, 203.0.113.7"
    assert (found["X-Forwarded-Port"], found["X-Forwarded-Proto"]) == ("80", "http")
    assert found["X-Amzn-Trace-Id"] == "Root=1-00000000-000000000000000000000000"
    assert "x-forwarded-port" not in found

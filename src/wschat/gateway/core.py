"""API Gateway WebSocket emulation without I/O: route selection, events, limits, error replies.

Everything here is a plain function or value object so the behaviour it copies from API Gateway
can be tested with no sockets at all. The server feeds it what arrived and does what it returns.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wschat.gateway.spec import ApiSpec, RouteSpec

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas; every one can be lowered so tests run fast."""

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 10 * 60
    max_connection_duration: float = 2 * 60 * 60
    integration_timeout: float = 29.0


# Base64's two signs become letters: an id needs no escaping in an @connections URL path.
_LETTERS_FOR_SIGNS = bytes.maketrans(b"+/", b"Az")


def new_connection_id() -> str:
    """An id shaped like API Gateway's: 15 letters and digits and a ``=`` (``L0SM9cOFvHcCIhw=``),
    the base64 of 11 random bytes. No ``/`` or ``+``."""
    return base64.b64encode(os.urandom(11)).translate(_LETTERS_FOR_SIGNS).decode("ascii")


def new_request_id() -> str:
    return new_connection_id()


# --- route selection -------------------------------------------------------------------------


def select_route(api: ApiSpec, body: str | bytes | None) -> RouteSpec | None:
    """The route a message frame goes to, or None when API Gateway would answer Forbidden.

    API Gateway evaluates the route selection expression (``$request.body.<path>``) against the
    frame's JSON; a frame that is not JSON, lacks the field, or names no route goes to
    ``$default`` when there is one.
    """
    key = _evaluate_selection(api.route_selection_expression, body)
    if key is not None and key in api.routes and key not in (CONNECT, DISCONNECT):
        return api.routes[key]
    return api.routes.get(DEFAULT)


def _evaluate_selection(expression: str, body: str | bytes | None) -> str | None:
    prefix = "$request.body."
    if not expression.startswith(prefix) or body is None:
        # A static expression (e.g. "$default") selects that key directly.
        return None if expression.startswith("$request.") else expression
    try:
        value: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    for part in expression[len(prefix) :].split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


# --- events ----------------------------------------------------------------------------------


@dataclass
class ConnectionInfo:
    """What the gateway knows of one connection, for building its events."""

    connection_id: str
    source_ip: str
    connected_at_ms: int
    headers: Sequence[tuple[str, str]] = ()
    query: Sequence[tuple[str, str]] = ()
    last_active_ms: int = 0
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # What the $connect authorizer allowed: principalId and its context, on every later event.
    authorizer: dict[str, Any] | None = None


@dataclass(frozen=True)
class StageInfo:
    api_id: str
    stage: str
    domain_name: str  # host[:port] as clients reach it


@functools.lru_cache(maxsize=4)
def _request_time_of_second(second: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))


def _request_time(now_ms: int) -> str:
    # API Gateway's CLF-style requestTime, e.g. "09/Feb/2024:18:11:43 +0000": formatted
    # once a second, not once an event.
    return _request_time_of_second(now_ms // 1000)


def _request_context(
    stage: StageInfo, conn: ConnectionInfo, route_key: str, event_type: str, now_ms: int
) -> dict[str, Any]:
    request_id = new_request_id()
    identity: dict[str, Any] = {"sourceIp": conn.source_ip}
    if conn.user_agent is not None:
        identity["userAgent"] = conn.user_agent
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now_ms),
        "messageDirection": "IN",
        "stage": stage.stage,
        "connectedAt": conn.connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": stage.domain_name,
        "connectionId": conn.connection_id,
        "apiId": stage.api_id,
        **({"authorizer": dict(conn.authorizer)} if conn.authorizer is not None else {}),
    }


def _single_and_multi(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # the last value wins, as in API Gateway's single-value maps
        multi.setdefault(name, []).append(value)
    return single, multi


def forwarded_headers(
    headers: Sequence[tuple[str, str]], source_ip: str, port: int, https: bool, now_ms: int
) -> list[tuple[str, str]]:
    """The handshake's headers as API Gateway hands them to ``$connect``: with
    ``X-Forwarded-For`` (the client's address appended to any the client sent),
    ``X-Forwarded-Port`` and ``X-Forwarded-Proto`` (what the client reached; set by the
    gateway, whatever the client said) and an ``X-Amzn-Trace-Id`` (the client's, or a new
    ``Root=1-{epoch seconds, hex}-{96 random bits, hex}``)."""
    replaced = {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}
    kept = [(name, value) for name, value in headers if name.lower() not in replaced]
    before = [value for name, value in headers if name.lower() == "x-forwarded-for"]
    trace = next((v for n, v in headers if n.lower() == "x-amzn-trace-id"), None)
    if trace is None:
        trace = f"Root=1-{now_ms // 1000:08x}-{secrets.token_hex(12)}"
        kept.append(("X-Amzn-Trace-Id", trace))
    return [
        *kept,
        ("X-Forwarded-For", ", ".join([*before, source_ip])),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", "https" if https else "http"),
    ]


def connect_event(stage: StageInfo, conn: ConnectionInfo, now_ms: int) -> dict[str, Any]:
    headers, multi_headers = _single_and_multi(conn.headers)
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "requestContext": _request_context(stage, conn, CONNECT, "CONNECT", now_ms),
        "isBase64Encoded": False,
    }
    if conn.query:
        query, multi_query = _single_and_multi(conn.query)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    return event


def message_event(
    stage: StageInfo, conn: ConnectionInfo, route_key: str, body: str | bytes, now_ms: int
) -> dict[str, Any]:
    context = _request_context(stage, conn, route_key, "MESSAGE", now_ms)
    context["messageId"] = new_request_id()
    if isinstance(body, bytes):
        # Binary frames reach Lambda base64-encoded with isBase64Encoded set.
        return {
            "requestContext": context,
            "body": base64.b64encode(body).decode("ascii"),
            "isBase64Encoded": True,
        }
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    stage: StageInfo, conn: ConnectionInfo, status_code: int, reason: str, now_ms: int
) -> dict[str, Any]:
    context = _request_context(stage, conn, DISCONNECT, "DISCONNECT", now_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    host = stage.domain_name
    headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


# --- replies ---------------------------------------------------------------------------------

FORBIDDEN = "Forbidden"
INTERNAL_SERVER_ERROR = "Internal server error"
TIMED_OUT = "Endpoint request timed out"


def error_reply(message: str, connection_id: str, request_id: str) -> bytes:
    """The JSON API Gateway sends the caller when it cannot route or the integration failed."""
    return json.dumps(
        {"message": message, "connectionId": connection_id, "requestId": request_id}
    ).encode()


def status_of(result: Any) -> int:
    """The status a Lambda proxy result stands for: ``statusCode``, or 200 when absent."""
    if isinstance(result, Mapping):
        code = result.get("statusCode", 200)
        if isinstance(code, bool):
            return 502
        try:
            status = int(code)
        except (TypeError, ValueError, OverflowError):
            return 502
        return status if 100 <= status <= 599 else 502
    return 200


def route_response_body(result: Any) -> str | None:
    """What a two-way route sends back to the caller: the result's ``body``."""
    if isinstance(result, Mapping):
        body = result.get("body")
        if body is None:
            return None
        return body if isinstance(body, str) else json.dumps(body)
    if isinstance(result, str):
        return result
    return None


def connect_response_headers(result: Any) -> dict[str, str]:
    """Headers a ``$connect`` result may set on the handshake (e.g. Sec-WebSocket-Protocol)."""
    if isinstance(result, Mapping) and isinstance(result.get("headers"), Mapping):
        return {str(k): str(v) for k, v in result["headers"].items()}
    return {}


def is_success(status: int) -> bool:
    return 200 <= status < 300

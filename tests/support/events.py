"""API Gateway WebSocket events for tests, built on the samples in ``tests/events/``.

The samples have the shape API Gateway gives a Lambda proxy integration (``requestContext``
with routeKey, eventType, connectionId, domainName, stage, apiId, requestId, connectedAt, ...;
headers and query string on ``$connect``; disconnectStatusCode and disconnectReason on
``$disconnect``; body and isBase64Encoded on messages). All of them belong to one API stage and
one connection, so a test can replay a connection's life: connect, send, disconnect.

Two factories, in the spirit of chalice's ``create_websocket_event``:

* ``load_event(name, **overrides)``: a sample as is, with keys replaced or removed.
* ``websocket_event(route_key, body, connection_id=..., query=...)``: the event API Gateway
  would send for that route, with a fresh requestId (and messageId for messages) so log lines
  tell invocations apart; ``query`` is a ``$connect``'s query string (``?name=...&room=...``).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from wschat.testing import LambdaContext, lambda_context

__all__ = ["LambdaContext", "lambda_context"]  # the harness's, for the handlers' tests

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

# A key set to MISSING in an override is removed from the event: how a test builds an event
# that lacks something API Gateway always sends.
MISSING: Any = object()

_ROUTE_SAMPLES = {"$connect": "connect", "$disconnect": "disconnect"}
_counter = itertools.count(1)


@cache
def _sample_text(name: str) -> str:
    return (EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8")


def sample_names() -> list[str]:
    """Every sample in ``tests/events/``, by name without ``.json``."""
    return sorted(path.stem for path in EVENTS_DIR.glob("*.json"))


def _apply(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if value is MISSING:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            # Dicts merge, so requestContext={"connectionId": "x"} keeps the rest of the context.
            _apply(target[key], value)
        else:
            target[key] = value


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A fresh copy of ``tests/events/{name}.json`` with ``overrides`` applied.

    Top-level keys are replaced (``body=...``, ``isBase64Encoded=True``); dict values merge
    into the sample's dict (``requestContext={"connectionId": "abc"}``); ``MISSING`` removes a
    key at any depth (``requestContext={"stage": MISSING}``).
    """
    event: dict[str, Any] = json.loads(_sample_text(name))
    _apply(event, overrides)
    return event


def _fresh_request_id() -> str:
    # API Gateway's ids are 12 base64 characters and "="; ours stay unique within the session.
    return f"T{next(_counter):011d}="


def websocket_event(
    route_key: str,
    body: str | bytes | dict[str, Any] | None = None,
    *,
    connection_id: str | None = None,
    connected_at: int | None = None,
    request_id: str | None = None,
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends for ``route_key`` on a connection.

    ``$connect`` and ``$disconnect`` come from their samples; any other route key is a message
    (``sendMessage``, ``$default``, ...). ``body`` may be text, a dict (sent as JSON) or bytes
    (a binary frame: base64 with ``isBase64Encoded`` true, as API Gateway delivers it).
    ``query`` replaces the ``$connect`` sample's query string (``{}``: none at all, and then
    API Gateway leaves both query keys out).
    """
    name = _ROUTE_SAMPLES.get(route_key, "send_message")
    request_id = request_id or _fresh_request_id()
    context: dict[str, Any] = {
        "routeKey": route_key,
        "requestId": request_id,
        "extendedRequestId": request_id,
    }
    if connection_id is not None:
        context["connectionId"] = connection_id
    if connected_at is not None:
        context["connectedAt"] = connected_at
        context["requestTimeEpoch"] = connected_at + 6
    overrides: dict[str, Any] = {"requestContext": context}
    if name == "send_message":
        context["messageId"] = f"M{request_id[1:]}"
        context["eventType"] = "MESSAGE"
        if isinstance(body, bytes):
            overrides["body"] = base64.b64encode(body).decode("ascii")
            overrides["isBase64Encoded"] = True
        else:
            overrides["body"] = json.dumps(body) if isinstance(body, dict) else body
            overrides["isBase64Encoded"] = False
            if body is None:
                overrides["body"] = MISSING
    elif body is not None:
        raise ValueError(f"{route_key} events carry no body")
    event = load_event(name, **overrides)
    if query is not None:
        if name != "connect":
            raise ValueError("only $connect events carry a query string")
        # Replaced whole, not merged into the sample's ?name=.
        event.pop("queryStringParameters", None)
        event.pop("multiValueQueryStringParameters", None)
        if query:
            event["queryStringParameters"] = dict(query)
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def management_endpoint_of(event: dict[str, Any]) -> str:
    """The @connections endpoint API Gateway's docs derive from an event: ``https://{domainName}/{stage}``."""
    context = event["requestContext"]
    return f"https://{context['domainName']}/{context['stage']}"

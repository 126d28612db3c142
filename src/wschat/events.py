"""The typed view of API Gateway WebSocket events the handlers read: powertools' own
(``APIGatewayWebSocketEvent``: ``request_context.*``, ``headers``, ``decoded_body``, ...) with
the few things every chat handler reads in short names, and where the chat reads an event
differently from powertools:

- ``text``: a binary frame's body decoded leniently (bad base64 or UTF-8 reaches the protocol
  as a frame that is not JSON, answered with an error, rather than an exception);
- ``query``: the query string as sent (names are case-sensitive on API Gateway, where
  powertools' ``query_string_parameters`` matches them case-insensitively);
- ``disconnect_status_code`` as an int, whatever type it arrives as;
- ``authorizer``: what the ``$connect`` authorizer allowed, on every event of the connection.

Required keys raise ``KeyError`` when missing (API Gateway always sends them); ``raw_event``
is the event as Lambda passed it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent


class WebSocketEvent(APIGatewayWebSocketEvent):
    """One ``$connect``, ``$disconnect`` or message event."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw)
        self.context = self.request_context  # read once; KeyError without requestContext

    @property
    def connection_id(self) -> str:
        return str(self.context.connection_id)

    @property
    def route_key(self) -> str:
        return str(self.context.route_key)

    @property
    def domain_name(self) -> str:
        return str(self.context.domain_name)

    @property
    def stage(self) -> str:
        return str(self.context.stage)

    @property
    def connected_at(self) -> int:
        """Epoch milliseconds."""
        return int(self.context.connected_at)

    @property
    def text(self) -> str | None:
        """The message text; binary frames arrive base64-encoded and are decoded leniently."""
        body = self.get("body")
        if body is None:
            return None
        if self.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                return "\ufffd"  # not base64: reaches the protocol as a frame that is not JSON
        return str(body)

    @property
    def query(self) -> Mapping[str, str]:
        return self.get("queryStringParameters") or {}

    @property
    def disconnect_status_code(self) -> int | None:
        value = self.context.disconnect_status_code
        return None if value is None else int(value)

    @property
    def authorizer(self) -> Mapping[str, Any] | None:
        """``principalId`` and the authorizer's ``context`` values; None without one."""
        value = self.context.get("authorizer")
        return value if isinstance(value, Mapping) else None

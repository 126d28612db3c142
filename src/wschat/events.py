"""Read-only typed views of API Gateway WebSocket events, as Lambda receives them.

Required keys raise ``KeyError`` when missing (API Gateway always sends them); optional ones
return None. The raw dict stays available as ``.raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class WebSocketEvent:
    """One ``$connect``, ``$disconnect`` or message event."""

    __slots__ = ("_context", "raw")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self._context: Mapping[str, Any] = raw["requestContext"]

    @property
    def connection_id(self) -> str:
        return str(self._context["connectionId"])

    @property
    def route_key(self) -> str:
        return str(self._context["routeKey"])

    @property
    def event_type(self) -> str:
        return str(self._context["eventType"])

    @property
    def request_id(self) -> str:
        return str(self._context.get("requestId", ""))

    @property
    def domain_name(self) -> str:
        return str(self._context["domainName"])

    @property
    def stage(self) -> str:
        return str(self._context["stage"])

    @property
    def connected_at(self) -> int:
        """Epoch milliseconds."""
        return int(self._context["connectedAt"])

    @property
    def request_time_epoch(self) -> int:
        return int(self._context.get("requestTimeEpoch", self.connected_at))

    @property
    def source_ip(self) -> str | None:
        identity = self._context.get("identity") or {}
        value = identity.get("sourceIp")
        return None if value is None else str(value)

    @property
    def body(self) -> str | None:
        """The message text; binary frames arrive base64-encoded and are decoded leniently."""
        body = self.raw.get("body")
        if body is None:
            return None
        if self.raw.get("isBase64Encoded"):
            import base64
            import binascii

            try:
                return base64.b64decode(body, validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                return "\ufffd"  # not base64: reaches the protocol as a frame that is not JSON
        return str(body)

    @property
    def query(self) -> Mapping[str, str]:
        return self.raw.get("queryStringParameters") or {}

    @property
    def headers(self) -> Mapping[str, str]:
        return self.raw.get("headers") or {}

    @property
    def disconnect_status_code(self) -> int | None:
        value = self._context.get("disconnectStatusCode")
        return None if value is None else int(value)

    @property
    def disconnect_reason(self) -> str | None:
        value = self._context.get("disconnectReason")
        return None if value is None else str(value)

    @property
    def authorizer(self) -> Mapping[str, Any] | None:
        """What the ``$connect`` authorizer allowed: ``principalId`` and its ``context``
        values, on every event of the connection; None without an authorizer."""
        value = self._context.get("authorizer")
        return value if isinstance(value, Mapping) else None

"""The open WebSocket connections by id: what ``@connections`` and the workers' fast path reach.

A connection is registered once its ``$connect`` allowed it and forgotten when its socket
closes; posting to, describing or closing an id that is not here is API Gateway's 410 Gone.
The registry also applies API Gateway's idle and maximum-duration limits to what it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from wschat.gateway import core
from wschat.gateway.connection import WebSocketConnection

GOING_AWAY = (1001, "Going away")


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ConnectionRegistry:
    def __init__(self) -> None:
        self._open: dict[str, WebSocketConnection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[WebSocketConnection]:
        return iter(list(self._open.values()))

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._open

    def add(self, ws: WebSocketConnection) -> None:
        self._open[ws.connection_id] = ws

    def remove(self, ws: WebSocketConnection) -> None:
        self._open.pop(ws.connection_id, None)

    def get(self, connection_id: str) -> WebSocketConnection | None:
        return self._open.get(connection_id)

    def post(self, connection_id: str, frame: bytes) -> bool:
        """Write an already serialized frame; False when the id is gone (410)."""
        ws = self._open.get(connection_id)
        return ws is not None and ws.write_frame(frame)

    def post_many(self, connection_ids: list[str], frame: bytes) -> list[str]:
        """Write one frame to many connections; the ids that are gone."""
        lookup = self._open.get  # this loop runs once per recipient of every message
        gone = []
        for connection_id in connection_ids:
            ws = lookup(connection_id)
            if ws is None or not ws.write_frame(frame):
                gone.append(connection_id)
        return gone

    def describe(self, connection_id: str) -> dict[str, Any] | None:
        """``GET @connections/{id}``'s answer, in API Gateway's wire names (boto3 maps them to
        ConnectedAt, Identity.SourceIp, ...); None when the id is gone."""
        ws = self._open.get(connection_id)
        if ws is None:
            return None
        last_active = time.time() - (time.monotonic() - ws.last_active)
        identity: dict[str, Any] = {"sourceIp": ws.info.source_ip}
        if ws.info.user_agent:
            identity["userAgent"] = ws.info.user_agent
        return {
            "connectedAt": _iso(ws.info.connected_at_ms / 1000),
            "identity": identity,
            "lastActiveAt": _iso(last_active),
        }

    def close(self, connection_id: str) -> bool:
        """``DELETE @connections/{id}``: start closing it; False when it is gone."""
        ws = self._open.get(connection_id)
        if ws is None:
            return False
        ws.close(1000, "")
        return True

    def close_all(self) -> None:
        for ws in self:
            ws.close(*GOING_AWAY)

    def close_expired(self, limits: core.Limits) -> None:
        """Close what has been idle, or open, longer than API Gateway allows."""
        now = time.monotonic()
        for ws in self:
            if (
                now - ws.opened_at >= limits.max_connection_duration
                or now - ws.last_active >= limits.idle_timeout
            ):
                ws.close(*GOING_AWAY)

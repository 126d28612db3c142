"""The open WebSocket connections by id: what ``@connections`` and the workers' fast path reach.

A connection is registered once its ``$connect`` allowed it and forgotten when its socket
closes; posting to, describing or closing an id that is not here is API Gateway's 410 Gone.
The registry also applies API Gateway's idle and maximum-duration limits to what it holds, and
keeps a short log of what opened and closed, from which each Python worker is told, with each
invocation, which connections are open (``changes_since``): its fast-path posts then need no
reply (see ``worker_main.PipeChannel``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from wschat.gateway import core
from wschat.gateway.connection import WebSocketConnection

GOING_AWAY = (1001, "Going away")
# Changes kept for workers to catch up from; one further behind gets the whole open set.
LOG_LENGTH = 4096


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ConnectionRegistry:
    def __init__(self) -> None:
        self._open: dict[str, WebSocketConnection] = {}
        self.version = 0  # one more for every connection opened or closed
        self._log: list[tuple[bool, str]] = []  # (opened, id) of versions after _log_start
        self._log_start = 0

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[str]:
        """The open connections' ids (a snapshot: closing one while iterating is safe)."""
        return iter(list(self._open))

    def snapshot(self) -> list[WebSocketConnection]:
        return list(self._open.values())

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._open

    def add(self, ws: WebSocketConnection) -> None:
        self._open[ws.connection_id] = ws
        self._record(True, ws.connection_id)

    def remove(self, ws: WebSocketConnection) -> None:
        if self._open.pop(ws.connection_id, None) is not None:
            self._record(False, ws.connection_id)

    def _record(self, opened: bool, connection_id: str) -> None:
        self.version += 1
        self._log.append((opened, connection_id))
        if len(self._log) > 2 * LOG_LENGTH:
            drop = len(self._log) - LOG_LENGTH
            del self._log[:drop]
            self._log_start += drop

    def changes_since(self, version: int) -> tuple[int, dict[str, list[str]]]:
        """The current version, and what opened and closed after ``version``
        (``{"opened": [...], "closed": [...]}``), or ``{"open": [...]}``, every open id, for
        a ``version`` the log no longer reaches back to (-1: never told)."""
        if version < self._log_start:
            return self.version, {"open": list(self._open)}
        latest: dict[str, bool] = {}
        for opened, connection_id in self._log[version - self._log_start :]:
            latest[connection_id] = opened
        return self.version, {
            "opened": [cid for cid, opened in latest.items() if opened],
            "closed": [cid for cid, opened in latest.items() if not opened],
        }

    def get(self, connection_id: str) -> WebSocketConnection | None:
        return self._open.get(connection_id)

    def post(self, connection_id: str, frame: bytes) -> bool:
        """Write an already serialized frame; False when the id is gone (410)."""
        ws = self._open.get(connection_id)
        return ws is not None and ws.write_frame(frame)

    def post_many(self, connection_ids: list[str], frame: bytes) -> None:
        """Write one frame to every one of ``connection_ids`` still open; the rest are gone."""
        lookup = self._open.get  # this loop runs once per recipient of every message
        for connection_id in connection_ids:
            ws = lookup(connection_id)
            if ws is not None:
                ws.write_frame(frame)

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
        for ws in self.snapshot():
            ws.close(*GOING_AWAY)

    def close_expired(self, limits: core.Limits) -> None:
        """Close what has been idle, or open, longer than API Gateway allows."""
        now = time.monotonic()
        for ws in self.snapshot():
            if (
                now - ws.opened_at >= limits.max_connection_duration
                or now - ws.last_active >= limits.idle_timeout
            ):
                ws.close(*GOING_AWAY)

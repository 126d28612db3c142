"""``$connect``: remember the connection (the seed's ``put_item`` of the connectionId)."""

from __future__ import annotations

from typing import Any

from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation
from wschat.storage import StoreError


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    try:
        _runtime.service_for(ws).connect(ws.connection_id, ws.connected_at)
    except StoreError as exc:
        # A non-2xx from $connect makes API Gateway refuse the handshake: better than a
        # connection nobody can reach.
        log.error("connect failed: store unavailable", extra={"reason": str(exc)})
        return {"statusCode": 503}
    log.info("connected")
    return _runtime.ok()

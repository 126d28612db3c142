"""``$disconnect``: forget the connection (the seed's ``DeleteItem``) and its memberships, and
tell its rooms it left."""

from __future__ import annotations

from typing import Any

from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation, publish_counts
from wschat.storage import StoreError


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    try:
        outcome = _runtime.service_for(ws).disconnect(ws.connection_id)
    except StoreError as exc:
        # $disconnect is best effort on API Gateway too; the records' TTL cleans up later.
        log.error("disconnect failed: store error", extra={"reason": str(exc)})
        return {"statusCode": 503}
    log.info(
        "disconnected",
        extra={"status_code": ws.disconnect_status_code, "reason": ws.context.disconnect_reason},
    )
    publish_counts({"ConnectionsClosed": 1, "MessagesDelivered": outcome.delivered})
    return _runtime.ok()

"""``sendMessage``: post ``message`` from the JSON body to every connection (the seed's route)."""

from __future__ import annotations

from typing import Any

from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation
from wschat.protocol import UNAVAILABLE, ProtocolError
from wschat.storage import StoreError, StoreUnavailable


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    service = _runtime.service_for(ws)
    try:
        delivery = service.send_message(ws.connection_id, ws.body)
    except ProtocolError as error:
        log.info("message rejected", extra={"code": error.code, "detail": error.message})
        service.reply_error(ws.connection_id, error)
        return _runtime.rejected(400, error)
    except StoreError as exc:
        # Unavailable: worth retrying. Any other store error is ours to fix, not the sender's.
        status = 503 if isinstance(exc, StoreUnavailable) else 500
        log.error("message not sent: store error", extra={"reason": str(exc)})
        unavailable = ProtocolError(
            UNAVAILABLE, "the chat store is unavailable; try again", "sendMessage"
        )
        service.reply_error(ws.connection_id, unavailable)
        return _runtime.rejected(status, unavailable)
    result = delivery.result
    log.info(
        "message sent",
        extra={
            "message_id": delivery.message_id,
            "delivered": result.delivered,
            "gone": len(result.gone),
            "failed": len(result.failed),
        },
    )
    return _runtime.ok()

"""``sendMessage``: post ``message`` from the JSON body to every connection (the seed's route)."""

from __future__ import annotations

from typing import Any

from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation
from wschat.protocol import UNAVAILABLE, ProtocolError
from wschat.storage import StoreError


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
        error = ProtocolError(UNAVAILABLE, "the chat store is unavailable; try again", "sendMessage")
        log.error("message not sent: store unavailable", extra={"reason": str(exc)})
        service.reply_error(ws.connection_id, error)
        return _runtime.rejected(503, error)
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

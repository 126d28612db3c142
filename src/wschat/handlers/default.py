"""``$default``: a frame whose ``action`` matches no route gets an error naming the problem."""

from __future__ import annotations

from typing import Any

from wschat import protocol
from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation
from wschat.protocol import ProtocolError

KNOWN_ACTIONS = ("sendMessage",)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    try:
        action = protocol.action_of(protocol.parse_frame(ws.body))
        if action is None:
            raise ProtocolError(
                protocol.BAD_REQUEST,
                'the frame needs an "action" field, one of: ' + ", ".join(KNOWN_ACTIONS),
            )
        raise ProtocolError(
            protocol.UNKNOWN_ACTION,
            f"unknown action {action[:64]!r}; expected one of: {', '.join(KNOWN_ACTIONS)}",
            action[:64],
        )
    except ProtocolError as error:
        log.info("frame rejected", extra={"code": error.code})
        _runtime.service_for(ws).reply_error(ws.connection_id, error)
        return _runtime.rejected(400, error)

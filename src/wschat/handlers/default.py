"""``$default``: a frame whose ``action`` matches no route (or that is not JSON) gets an error
naming the problem. Uses no store: it only replies to the sender."""

from __future__ import annotations

from typing import Any

from wschat import protocol
from wschat.chat import registry
from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation
from wschat.protocol import ProtocolError


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    try:
        # Every known action has its own route, so reaching here means the action is unknown
        # (or the frame is not a JSON object with one).
        payload = protocol.parse_frame(ws.text)
        action = protocol.action_of(payload)
        expected = ", ".join(registry.NAMES)
        if action is None:
            raise ProtocolError(
                protocol.BAD_REQUEST, f'the frame needs an "action" field, one of: {expected}'
            )
        shown = action[:64]
        raise ProtocolError(
            protocol.UNKNOWN_ACTION, f"unknown action {shown!r}; expected one of: {expected}", shown
        )
    except ProtocolError as error:
        log.info("frame rejected", extra={"code": error.code})
        _runtime.reply_error(ws, error)
        return _runtime.rejected(400, error)

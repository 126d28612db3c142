"""The chat wire protocol: actions in, events out, validation and limits.

Clients send JSON text frames routed by ``action`` (API Gateway's ``$request.body.action``).
The seed's frame ``{"action": "sendMessage", "message": "hi"}`` is the first action. The server
answers with JSON objects carrying ``type``: ``message`` to every recipient and ``error`` to a
sender whose frame could not be accepted. docs/protocol.md is the reader's version of this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
MAX_MESSAGE_CHARS = 4000

# Error codes a client may see; each one names what was wrong with its own frame.
INVALID_JSON = "invalid_json"
UNKNOWN_ACTION = "unknown_action"
BAD_REQUEST = "bad_request"
TOO_LONG = "too_long"
UNAVAILABLE = "unavailable"


class ProtocolError(Exception):
    """A client frame that cannot be accepted; becomes an ``error`` event to its sender only."""

    def __init__(self, code: str, message: str, action: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action = action

    def to_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.action:
            event["action"] = self.action
        return event


def parse_frame(body: str | None) -> dict[str, Any]:
    """Decode a client frame into a JSON object, or raise ProtocolError naming the problem."""
    if body is None or body == "":
        raise ProtocolError(
            INVALID_JSON,
            'empty frame: send a JSON object such as {"action": "sendMessage", "message": "hi"}',
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise ProtocolError(INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError(INVALID_JSON, 'frame must be a JSON object with an "action" field')
    return payload


def action_of(payload: dict[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``{"action": "sendMessage", "message": "hi"}``."""

    text: str

    @classmethod
    def parse(cls, payload: dict[str, Any], *, max_chars: int = MAX_MESSAGE_CHARS) -> SendMessage:
        action = "sendMessage"
        if "message" not in payload:
            raise ProtocolError(BAD_REQUEST, '"message" is required', action)
        text = payload["message"]
        if not isinstance(text, str):
            raise ProtocolError(BAD_REQUEST, '"message" must be a string', action)
        if not text.strip():
            raise ProtocolError(BAD_REQUEST, '"message" must not be empty', action)
        if len(text) > max_chars:
            raise ProtocolError(
                TOO_LONG, f'"message" is {len(text)} characters; the limit is {max_chars}', action
            )
        return cls(text=text)


def encode(event: dict[str, Any]) -> bytes:
    """Serialize a server event once; the same bytes go to every recipient."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_event(message_id: str, sender: str, text: str, ts: int) -> dict[str, Any]:
    return {"type": "message", "id": message_id, "from": sender, "text": text, "ts": ts}

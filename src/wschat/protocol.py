"""The chat wire protocol (docs/protocol.md): actions in, events out, validation and limits.

Clients send JSON text frames routed by ``action`` (API Gateway's ``$request.body.action``);
each action parses into a small frozen command object that has checked every field. The server
answers with JSON objects carrying ``type``. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from wschat.storage.base import LOBBY, StoredMessage

PROTOCOL_VERSION = 1
MAX_MESSAGE_CHARS = 4000
MAX_HISTORY_LIMIT = 100
DEFAULT_HISTORY_LIMIT = 50
MAX_CLIENT_ID_CHARS = 64

# Error codes a client may see; each names what was wrong with its own frame.
INVALID_JSON = "invalid_json"
UNKNOWN_ACTION = "unknown_action"
BAD_REQUEST = "bad_request"
TOO_LONG = "too_long"
NOT_IN_ROOM = "not_in_room"
NO_SUCH_USER = "no_such_user"
RATE_LIMITED = "rate_limited"
UNAUTHORIZED = "unauthorized"
UNAVAILABLE = "unavailable"
NO_SUCH_MESSAGE = "no_such_message"
FORBIDDEN = "forbidden"
TOO_MANY_REACTIONS = "too_many_reactions"

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
ROOM_PATTERN = re.compile(r"[a-z0-9][a-z0-9_\-]{0,31}")
# Names that would read like the service speaking.
RESERVED_NAMES = frozenset({"system", "server", "wschat", "admin"})
# Frames are at most API Gateway's 128 KB; a deeper structure than this is no chat frame.
MAX_JSON_DEPTH = 32
# JSON may escape half a UTF-16 pair ("\ud800"); such a string has no UTF-8 form, so it could be
# neither stored nor sent back (json.loads lets it through, encode() would raise).
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


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


# --- frames ------------------------------------------------------------------------------------


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_frame(body: str | None) -> dict[str, Any]:
    """Decode a client frame into a JSON object, or raise ProtocolError naming the problem."""
    if body is None or not body.strip():
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
    if _depth(payload, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ProtocolError(BAD_REQUEST, "frame is nested too deeply")
    if _has_lone_surrogate(payload):
        raise ProtocolError(
            BAD_REQUEST, "frame holds a lone surrogate escape (\\ud800-\\udfff): not Unicode text"
        )
    return payload


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def action_of(payload: dict[str, Any]) -> str | None:
    action = payload.get("action")
    return action if isinstance(action, str) else None


# --- field checks ------------------------------------------------------------------------------


def string_field(
    payload: dict[str, Any], key: str, action: str, *, required: bool = True
) -> str | None:
    if key not in payload or payload[key] is None:
        if required:
            raise ProtocolError(BAD_REQUEST, f'"{key}" is required', action)
        return None
    value = payload[key]
    if not isinstance(value, str):
        raise ProtocolError(BAD_REQUEST, f'"{key}" must be a string', action)
    return value


def check_name(value: str, action: str | None, key: str = "name") -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ProtocolError(
            BAD_REQUEST,
            f'"{key}" must be 1-32 letters, digits, "_", "-" or "."',
            action,
        )
    if value.lower() in RESERVED_NAMES:
        raise ProtocolError(BAD_REQUEST, f'"{key}" {value!r} is reserved', action)
    return value


def check_room(value: str, action: str | None) -> str:
    if not ROOM_PATTERN.fullmatch(value):
        raise ProtocolError(
            BAD_REQUEST,
            '"room" must be 1-32 lowercase letters, digits, "_" or "-", '
            "starting with a letter or digit",
            action,
        )
    return value


def text_field(payload: dict[str, Any], action: str, max_chars: int) -> str:
    text = string_field(payload, "message", action)
    assert text is not None
    if not text.strip():
        raise ProtocolError(BAD_REQUEST, '"message" must not be empty', action)
    if len(text) > max_chars:
        raise ProtocolError(
            TOO_LONG, f'"message" is {len(text)} characters; the limit is {max_chars}', action
        )
    return text


def _client_id(payload: dict[str, Any], action: str) -> str | None:
    value = string_field(payload, "clientId", action, required=False)
    if value is not None and len(value) > MAX_CLIENT_ID_CHARS:
        raise ProtocolError(
            BAD_REQUEST, f'"clientId" must be at most {MAX_CLIENT_ID_CHARS} characters', action
        )
    return value


def room_field(payload: dict[str, Any], action: str, default: str | None = None) -> str:
    value = string_field(payload, "room", action, required=default is None)
    return check_room(value if value is not None else str(default), action)


def place_field(payload: dict[str, Any], action: str) -> tuple[str | None, str | None]:
    """Where a frame is about: ``(room, None)``, or ``(None, user)`` for the direct
    conversation ``with`` a user; not both."""
    with_user = string_field(payload, "with", action, required=False)
    if with_user is None:
        return room_field(payload, action), None
    if "room" in payload:
        raise ProtocolError(BAD_REQUEST, 'give "room" or "with", not both', action)
    return None, check_name(with_user, action, "with")


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``{"action": "sendMessage", "message": "hi", "room": "general", "clientId": "c-1"}``."""

    ACTION: ClassVar[str] = "sendMessage"
    text: str
    room: str = LOBBY
    client_id: str | None = None

    @classmethod
    def parse(cls, payload: dict[str, Any], *, max_chars: int = MAX_MESSAGE_CHARS) -> SendMessage:
        text = text_field(payload, cls.ACTION, max_chars)
        return cls(text, room_field(payload, cls.ACTION, LOBBY), _client_id(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class Join:
    ACTION: ClassVar[str] = "join"
    room: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Join:
        return cls(room_field(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class Leave:
    ACTION: ClassVar[str] = "leave"
    room: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Leave:
        return cls(room_field(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class SetName:
    ACTION: ClassVar[str] = "setName"
    name: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> SetName:
        name = string_field(payload, "name", cls.ACTION)
        assert name is not None
        return cls(check_name(name, cls.ACTION))


@dataclass(frozen=True, slots=True)
class History:
    """A page of a room's messages, or of the direct messages ``with`` one user."""

    ACTION: ClassVar[str] = "history"
    room: str | None
    with_user: str | None = None
    after: str | None = None
    before: str | None = None
    limit: int = DEFAULT_HISTORY_LIMIT

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> History:
        action = cls.ACTION
        with_user = string_field(payload, "with", action, required=False)
        room = None
        if with_user is not None:
            check_name(with_user, action, "with")
        else:
            room = room_field(payload, action)
        after = string_field(payload, "after", action, required=False)
        before = string_field(payload, "before", action, required=False)
        if after is not None and before is not None:
            raise ProtocolError(BAD_REQUEST, 'give "after" or "before", not both', action)
        for key, value in (("after", after), ("before", before)):
            if value is not None and not (0 < len(value) <= 64):
                raise ProtocolError(BAD_REQUEST, f'"{key}" must be a message id', action)
        limit = payload.get("limit", DEFAULT_HISTORY_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ProtocolError(BAD_REQUEST, '"limit" must be a whole number', action)
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ProtocolError(
                BAD_REQUEST, f'"limit" must be between 1 and {MAX_HISTORY_LIMIT}', action
            )
        return cls(room, with_user, after, before, limit)


@dataclass(frozen=True, slots=True)
class Who:
    ACTION: ClassVar[str] = "who"
    room: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Who:
        return cls(room_field(payload, cls.ACTION, LOBBY))


@dataclass(frozen=True, slots=True)
class Direct:
    ACTION: ClassVar[str] = "direct"
    to: str
    text: str
    client_id: str | None = None

    @classmethod
    def parse(cls, payload: dict[str, Any], *, max_chars: int = MAX_MESSAGE_CHARS) -> Direct:
        to = string_field(payload, "to", cls.ACTION)
        assert to is not None
        check_name(to, cls.ACTION, "to")
        return cls(to, text_field(payload, cls.ACTION, max_chars), _client_id(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class Hello:
    ACTION: ClassVar[str] = "hello"

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Hello:
        return cls()


Command = SendMessage | Join | Leave | SetName | History | Who | Direct | Hello


class CommandParser(Protocol):
    """A command: its ``ACTION`` and a ``parse`` of the frame's JSON object into one. The
    chat's live in its registry (wschat/chat/registry.py), next to their use cases."""

    ACTION: ClassVar[str]

    @classmethod
    def parse(cls, payload: dict[str, Any], *, max_chars: int) -> Any: ...


def parse_command(
    body: str | None,
    *,
    commands: Mapping[str, type[CommandParser]] | None = None,
    max_chars: int = MAX_MESSAGE_CHARS,
) -> Any:
    """A checked command from a client frame, or ProtocolError naming what is wrong.
    ``commands``: action -> its command; by default the chat's (wschat.chat.registry, the one
    list of actions)."""
    if commands is None:
        from wschat.chat.registry import COMMANDS  # the registry imports this module

        commands = COMMANDS
    expected = ", ".join(commands)
    payload = parse_frame(body)
    action = action_of(payload)
    if action is None:
        raise ProtocolError(BAD_REQUEST, f'the frame needs an "action" field, one of: {expected}')
    command = commands.get(action)
    if command is None:
        shown = action[:64]
        raise ProtocolError(
            UNKNOWN_ACTION,
            f"unknown action {shown!r}; expected one of: {expected}",
            shown,
        )
    return command.parse(payload, max_chars=max_chars)


# --- server events -----------------------------------------------------------------------------


def encode(event: dict[str, Any]) -> bytes:
    """Serialize a server event once; the same bytes go to every recipient."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_event(message: StoredMessage) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "id": message.id,
        "room": message.room,
        "from": message.sender,
        "text": message.text,
        "ts": message.ts,
    }
    if message.client_id is not None:
        event["clientId"] = message.client_id
    return event


def direct_event(message: StoredMessage) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "direct",
        "id": message.id,
        "from": message.sender,
        "to": message.to,
        "text": message.text,
        "ts": message.ts,
    }
    if message.client_id is not None:
        event["clientId"] = message.client_id
    return event


def stored_event(message: StoredMessage) -> dict[str, Any]:
    """A stored message as ``history`` lists it: direct or room message, with its edit time,
    its reactions (emoji -> who), or, deleted, as a tombstone without its text."""
    event = direct_event(message) if message.to is not None else message_event(message)
    if message.deleted:
        event["deleted"] = True
        event["text"] = ""
    elif message.edited_at is not None:
        event["editedAt"] = message.edited_at
    if message.reactions and not message.deleted:
        event["reactions"] = {emoji: list(users) for emoji, users in message.reactions.items()}
    return event


def ack_event(message: StoredMessage) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "ack", "id": message.id, "ts": message.ts}
    event["clientId"] = message.client_id
    if message.to is not None:
        event["to"] = message.to
    else:
        event["room"] = message.room
    return event


def history_event(
    messages: list[StoredMessage],
    more: bool,
    *,
    room: str | None,
    with_user: str | None,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A page of messages; ``after``/``before`` echo the request, so a client knows whether
    ``more`` means newer messages (catching up) or older ones (scrolling back)."""
    event: dict[str, Any] = {"type": "history"}
    if with_user is not None:
        event["with"] = with_user
    else:
        event["room"] = room
    if after is not None:
        event["after"] = after
    if before is not None:
        event["before"] = before
    event["messages"] = [stored_event(m) for m in messages]
    event["more"] = more
    return event


def presence_event(room: str, members: list[str]) -> dict[str, Any]:
    return {"type": "presence", "room": room, "members": members}


def membership_event(
    kind: str, room: str, name: str, ts: int, members: list[str]
) -> dict[str, Any]:
    """``joined`` or ``left``."""
    return {"type": kind, "room": room, "name": name, "ts": ts, "members": members}


def renamed_event(room: str, old: str, new: str, ts: int, members: list[str]) -> dict[str, Any]:
    return {"type": "renamed", "room": room, "from": old, "to": new, "ts": ts, "members": members}


def hello_event(
    connection_id: str, name: str, rooms: list[str], unread: dict[str, int] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "hello",
        "connectionId": connection_id,
        "name": name,
        "rooms": rooms,
        "protocol": PROTOCOL_VERSION,
    }
    if unread is not None:
        event["unread"] = unread
    return event

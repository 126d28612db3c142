"""Moderation: the owner gives and takes the moderator role (``setRole``); the owner and
moderators ``kick`` someone out of a room and ``mute`` them there for a time. Every act is an
event to the room (``roleChanged``, ``kicked``, ``muted``) and to the one it is about, so the
room sees what its moderators do. Roles bind to user names: with sign-in on, the identities
the authorizer vouched for; with it off, names are claims (docs/protocol.md says what holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wschat import protocol
from wschat.chat import rooms
from wschat.chat.context import Context
from wschat.chat.intents import Intent, ToConnections, ToRoom
from wschat.protocol import ProtocolError

MAX_MUTE_SECONDS = 7 * 24 * 3600
ROLES = ("moderator", "member")


def _room_and_user(payload: dict[str, Any], action: str) -> tuple[str, str]:
    room = protocol.room_field(payload, action)
    user = protocol.string_field(payload, "user", action)
    assert user is not None
    return room, protocol.check_name(user, action, "user")


@dataclass(frozen=True, slots=True)
class SetRole:
    """``{"action": "setRole", "room": "design", "user": "bob", "role": "moderator"}``."""

    ACTION: ClassVar[str] = "setRole"
    room: str
    user: str
    role: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> SetRole:
        room, user = _room_and_user(payload, cls.ACTION)
        role = payload.get("role")
        if role not in ROLES:
            raise ProtocolError(
                protocol.BAD_REQUEST, f'"role" must be one of: {", ".join(ROLES)}', cls.ACTION
            )
        return cls(room, user, str(role))


@dataclass(frozen=True, slots=True)
class Kick:
    """``{"action": "kick", "room": "design", "user": "mallory"}``."""

    ACTION: ClassVar[str] = "kick"
    room: str
    user: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Kick:
        return cls(*_room_and_user(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class Mute:
    """``{"action": "mute", "room": "design", "user": "mallory", "seconds": 600}`` (0 unmutes)."""

    ACTION: ClassVar[str] = "mute"
    room: str
    user: str
    seconds: int

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Mute:
        room, user = _room_and_user(payload, cls.ACTION)
        seconds = payload.get("seconds")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not (0 <= seconds <= MAX_MUTE_SECONDS)
        ):
            raise ProtocolError(
                protocol.BAD_REQUEST,
                f'"seconds" must be a whole number 0-{MAX_MUTE_SECONDS}',
                cls.ACTION,
            )
        return cls(room, user, seconds)


def _require_moderator(ctx: Context, room: str, action: str, *, owner_only: bool = False) -> None:
    rooms.require_room(ctx.caller, room, action)
    state = ctx.store.get_room_user(room, ctx.caller.name)
    allowed = ("owner",) if owner_only else rooms.MODERATORS
    if state is None or state.role not in allowed:
        who = "owner" if owner_only else "owner or its moderators"
        raise ProtocolError(protocol.FORBIDDEN, f"only the room's {who} may do that", action)


def _not_the_owner(ctx: Context, room: str, user: str, action: str) -> None:
    state = ctx.store.get_room_user(room, user)
    if state is not None and state.role == "owner":
        raise ProtocolError(protocol.FORBIDDEN, "nobody moderates the room's owner", action)


def _to_room_and_user(ctx: Context, room: str, user: str, event: dict[str, Any]) -> list[Intent]:
    """The room sees the act; so does its subject, on every connection, in the room or not."""
    subject = tuple(ctx.store.connection_ids_named(user))
    room_event = ToRoom(room, event, exclude=subject)  # once each, not twice for the subject
    return [room_event, ToConnections(subject, event)] if subject else [room_event]


def set_role(ctx: Context, command: SetRole) -> list[Intent]:
    _require_moderator(ctx, command.room, command.ACTION, owner_only=True)
    if command.user == ctx.caller.name:
        raise ProtocolError(protocol.FORBIDDEN, "the owner stays the owner", command.ACTION)
    ctx.store.set_role(
        command.room, command.user, None if command.role == "member" else "moderator"
    )
    event = {
        "type": "roleChanged",
        "room": command.room,
        "user": command.user,
        "role": command.role,
        "by": ctx.caller.name,
    }
    return _to_room_and_user(ctx, command.room, command.user, event)


def kick(ctx: Context, command: Kick) -> list[Intent]:
    _require_moderator(ctx, command.room, command.ACTION)
    _not_the_owner(ctx, command.room, command.user, command.ACTION)
    subject = ctx.store.connection_ids_named(command.user)
    left = [cid for cid in subject if ctx.store.leave_room(command.room, cid)]
    if not left:
        raise ProtocolError(
            protocol.NOT_IN_ROOM, f"{command.user!r} is not in {command.room!r}", command.ACTION
        )
    ts = ctx.now_ms()
    event = {
        "type": "kicked",
        "room": command.room,
        "user": command.user,
        "by": ctx.caller.name,
        "ts": ts,
    }
    return [ToRoom(command.room, event), ToConnections(tuple(subject), event)]


def mute(ctx: Context, command: Mute) -> list[Intent]:
    _require_moderator(ctx, command.room, command.ACTION)
    _not_the_owner(ctx, command.room, command.user, command.ACTION)
    until = ctx.now_ms() + command.seconds * 1000 if command.seconds else None
    ctx.store.set_muted(command.room, command.user, until)
    event = {
        "type": "muted",
        "room": command.room,
        "user": command.user,
        "until": until,
        "by": ctx.caller.name,
    }
    return _to_room_and_user(ctx, command.room, command.user, event)

"""``edit``, ``delete`` and ``react``: changes to a stored message, in a room or a direct
conversation, each stored first and then sent live to whoever sees the message (the room, or
both users' connections) as ``edited``, ``deleted`` or ``reaction``.

Only the author edits; the author deletes, and so may a room's owner or moderators (the
``deleted`` event then names who, ``by``). A deleted message stays in the history as a
tombstone without its text. Reactions: one per user per emoji, at most ``MAX_EMOJIS``
different emojis on a message, an emoji at most ``MAX_EMOJI_CHARS`` characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wschat import protocol
from wschat.chat import rooms
from wschat.chat.context import Context
from wschat.chat.intents import Intent, Reply, ToConnections, ToRoom
from wschat.chat.rooms import require_room
from wschat.protocol import ProtocolError
from wschat.storage.base import StoredMessage, direct_room

MAX_EMOJIS = 20
MAX_EMOJI_CHARS = 16


@dataclass(frozen=True, slots=True)
class Target:
    """The message a change is about: ``id`` in ``room``, or in the conversation ``with``."""

    room: str | None
    with_user: str | None
    id: str

    @classmethod
    def parse(cls, payload: dict[str, Any], action: str) -> Target:
        room, with_user = protocol.place_field(payload, action)
        message_id = protocol.string_field(payload, "id", action)
        assert message_id is not None
        if not 0 < len(message_id) <= 64:
            raise ProtocolError(protocol.BAD_REQUEST, '"id" must be a message id', action)
        return cls(room, with_user, message_id)


@dataclass(frozen=True, slots=True)
class Edit:
    """``{"action": "edit", "room": "general", "id": "01...", "message": "new text"}``."""

    ACTION: ClassVar[str] = "edit"
    target: Target
    text: str

    @classmethod
    def parse(cls, payload: dict[str, Any], *, max_chars: int = protocol.MAX_MESSAGE_CHARS) -> Edit:
        target = Target.parse(payload, cls.ACTION)
        return cls(target, protocol.text_field(payload, cls.ACTION, max_chars))


@dataclass(frozen=True, slots=True)
class Delete:
    """``{"action": "delete", "room": "general", "id": "01..."}``."""

    ACTION: ClassVar[str] = "delete"
    target: Target

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Delete:
        return cls(Target.parse(payload, cls.ACTION))


@dataclass(frozen=True, slots=True)
class React:
    """``{"action": "react", "room": "general", "id": "01...", "emoji": "👍", "on": true}``."""

    ACTION: ClassVar[str] = "react"
    target: Target
    emoji: str
    on: bool = True

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> React:
        target = Target.parse(payload, cls.ACTION)
        emoji = protocol.string_field(payload, "emoji", cls.ACTION)
        assert emoji is not None
        if not 0 < len(emoji) <= MAX_EMOJI_CHARS or any(
            ch.isspace() or not ch.isprintable() for ch in emoji
        ):
            raise ProtocolError(
                protocol.BAD_REQUEST,
                f'"emoji" must be 1-{MAX_EMOJI_CHARS} printable characters without spaces',
                cls.ACTION,
            )
        on = payload.get("on", True)
        if not isinstance(on, bool):
            raise ProtocolError(protocol.BAD_REQUEST, '"on" must be true or false', cls.ACTION)
        return cls(target, emoji, on)


# --- events ------------------------------------------------------------------------------------


def _about(message: StoredMessage) -> dict[str, Any]:
    """Where a changed message lives, as its events name it: its room, or its two users."""
    if message.to is not None:
        return {"id": message.id, "from": message.sender, "to": message.to}
    return {"id": message.id, "room": message.room, "from": message.sender}


def edited_event(message: StoredMessage) -> dict[str, Any]:
    return {
        "type": "edited",
        **_about(message),
        "text": message.text,
        "editedAt": message.edited_at,
    }


def deleted_event(message: StoredMessage, by: str) -> dict[str, Any]:
    return {"type": "deleted", **_about(message), "by": by}


def reaction_event(message: StoredMessage, emoji: str, user: str, on: bool) -> dict[str, Any]:
    users = list(message.reactions.get(emoji, ()))
    return {
        "type": "reaction",
        **_about(message),
        "emoji": emoji,
        "user": user,
        "on": on,
        "users": users,
    }


# --- use cases ---------------------------------------------------------------------------------


def _key(ctx: Context, target: Target, action: str, *, speaks: bool = False) -> str:
    """The stored room of the target; ``speaks``: refused while the caller is muted there."""
    if target.with_user is not None:
        return direct_room(ctx.caller.name, target.with_user)
    assert target.room is not None
    require_room(ctx.caller, target.room, action)
    if speaks:
        rooms.require_voice(ctx, target.room, action)
    return target.room


def _found(ctx: Context, key: str, target: Target, action: str) -> StoredMessage:
    message = ctx.store.get_message(key, target.id)
    if message is None or message.deleted:
        raise ProtocolError(protocol.NO_SUCH_MESSAGE, f"no message {target.id!r} here", action)
    return message


def _to_readers(ctx: Context, message: StoredMessage, event: dict[str, Any]) -> list[Intent]:
    """The event to whoever sees ``message``: its room, or every connection of both users."""
    if message.to is None:
        return [ToRoom(message.room, event)]
    me = ctx.caller
    other = message.to if message.sender == me.name else message.sender
    ids = (*ctx.store.connection_ids_named(other), *ctx.store.connection_ids_named(me.name))
    return [ToConnections((*ids, me.connection_id), event)]


def edit(ctx: Context, command: Edit) -> list[Intent]:
    key = _key(ctx, command.target, command.ACTION, speaks=True)
    message = _found(ctx, key, command.target, command.ACTION)
    if message.sender != ctx.caller.name:
        raise ProtocolError(
            protocol.FORBIDDEN, "only its author may edit a message", command.ACTION
        )
    edited = ctx.store.edit_message(
        key, message.id, author=ctx.caller.name, text=command.text, edited_at=ctx.now_ms()
    )
    if edited is None:  # deleted meanwhile
        raise ProtocolError(
            protocol.NO_SUCH_MESSAGE, f"no message {message.id!r} here", command.ACTION
        )
    ctx.outcome.message_id = edited.id
    return _to_readers(ctx, edited, edited_event(edited))


def delete(ctx: Context, command: Delete) -> list[Intent]:
    me = ctx.caller
    key = _key(ctx, command.target, command.ACTION)
    message = _found(ctx, key, command.target, command.ACTION)
    author: str | None = me.name
    if message.sender != me.name:
        # In a room its owner and moderators may delete anyone's message; in a direct
        # conversation nobody but the author.
        if message.to is not None or not rooms.moderates(ctx, message.room):
            raise ProtocolError(
                protocol.FORBIDDEN,
                "only its author or the room's moderators may delete a message",
                command.ACTION,
            )
        author = None
    deleted = ctx.store.delete_message(key, message.id, deleted_at=ctx.now_ms(), author=author)
    if deleted is None:  # deleted meanwhile
        raise ProtocolError(
            protocol.NO_SUCH_MESSAGE, f"no message {message.id!r} here", command.ACTION
        )
    ctx.outcome.message_id = deleted.id
    return _to_readers(ctx, deleted, deleted_event(deleted, by=me.name))


def react(ctx: Context, command: React) -> list[Intent]:
    me = ctx.caller
    key = _key(ctx, command.target, command.ACTION, speaks=True)
    message = _found(ctx, key, command.target, command.ACTION)
    after = ctx.store.react(
        key, message.id, user=me.name, emoji=command.emoji, on=command.on, max_emojis=MAX_EMOJIS
    )
    if after is None:
        now = ctx.store.get_message(key, message.id)
        if now is None or now.deleted:
            raise ProtocolError(
                protocol.NO_SUCH_MESSAGE, f"no message {message.id!r} here", command.ACTION
            )
        raise ProtocolError(
            protocol.TOO_MANY_REACTIONS,
            f"a message carries at most {MAX_EMOJIS} different emojis",
            command.ACTION,
        )
    if after.reactions == message.reactions:
        # Nothing changed (already there, or not there to remove): the caller learns so.
        return [Reply(me.connection_id, reaction_event(after, command.emoji, me.name, command.on))]
    return _to_readers(ctx, after, reaction_event(after, command.emoji, me.name, command.on))

"""``read``: a user's read mark in a room or conversation, per user (not per connection): it
only moves forward, and every connection of the user learns the new mark (``read``), so
opening a room on one tab clears its badge on the others. ``unread_counts`` is what ``hello``
reports: how many messages each of the connection's rooms holds past the user's mark."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from wschat import protocol
from wschat.chat.context import Context
from wschat.chat.intents import Intent, Reply, ToConnections
from wschat.chat.rooms import require_room
from wschat.protocol import ProtocolError
from wschat.storage.base import ChatStore, direct_room

# Unread counts stop here: a badge says 99+, not the size of a year's history.
MAX_UNREAD = 100


@dataclass(frozen=True, slots=True)
class Read:
    """``{"action": "read", "room": "general", "upTo": "01..."}`` (or ``"with": "bob"``)."""

    ACTION: ClassVar[str] = "read"
    room: str | None
    with_user: str | None
    up_to: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Read:
        room, with_user = protocol.place_field(payload, cls.ACTION)
        up_to = protocol.string_field(payload, "upTo", cls.ACTION)
        assert up_to is not None
        if not 0 < len(up_to) <= 64:
            raise ProtocolError(protocol.BAD_REQUEST, '"upTo" must be a message id', cls.ACTION)
        return cls(room, with_user, up_to)


def read(ctx: Context, command: Read) -> list[Intent]:
    me = ctx.caller
    if command.with_user is not None:
        key = direct_room(me.name, command.with_user)
        where: dict[str, Any] = {"with": command.with_user}
    else:
        assert command.room is not None
        require_room(me, command.room, command.ACTION)
        key = command.room
        where = {"room": command.room}
    mark = ctx.store.mark_read(key, me.name, command.up_to)
    event = {"type": "read", **where, "upTo": mark}
    own = ctx.store.connection_ids_named(me.name)
    return [ToConnections((*own, me.connection_id), event)]


def unread_counts(store: ChatStore, user: str, rooms: Iterable[str]) -> dict[str, int]:
    """Messages past the user's read mark in each room (at most MAX_UNREAD each)."""
    rooms = sorted(rooms)
    marks = store.read_marks(user, rooms)
    return {
        room: store.unread_count(room, after=marks.get(room), limit=MAX_UNREAD) for room in rooms
    }


def hello(ctx: Context, command: protocol.Hello) -> list[Intent]:
    """Who the connection is, its rooms, and what is unread in each."""
    me = ctx.caller
    unread = unread_counts(ctx.store, me.name, me.rooms)
    event = protocol.hello_event(me.connection_id, me.name, sorted(me.rooms), unread)
    return [Reply(me.connection_id, event)]

"""``typing``: someone is writing in a room or to one user. Not stored; sent to the room's other
members (or the other user's connections) only, never to the typer's own tabs, and only in
rooms small enough for presence events (a typing burst in a room of 100,000 would cost 100,000
posts). Rate-limited as every frame is, and clients send it at most every few seconds while
someone types (the page: every 3 s); a ``typing`` event means "for the next few seconds"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wschat import protocol
from wschat.chat.context import Context
from wschat.chat.intents import Intent, ToConnections
from wschat.chat.rooms import require_room
from wschat.protocol import ProtocolError
from wschat.storage.base import members_within


@dataclass(frozen=True, slots=True)
class Typing:
    """``{"action": "typing", "room": "general"}`` or ``{"action": "typing", "to": "bob"}``."""

    ACTION: ClassVar[str] = "typing"
    room: str | None
    to: str | None = None

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Typing:
        to = protocol.string_field(payload, "to", cls.ACTION, required=False)
        if to is not None:
            if "room" in payload:
                raise ProtocolError(
                    protocol.BAD_REQUEST, 'give "room" or "to", not both', cls.ACTION
                )
            return cls(None, protocol.check_name(to, cls.ACTION, "to"))
        return cls(protocol.room_field(payload, cls.ACTION))


def typing_event(name: str, *, room: str | None, to: str | None) -> dict[str, Any]:
    where = {"room": room} if room is not None else {"to": to}
    return {"type": "typing", **where, "from": name}


def typing(ctx: Context, command: Typing) -> list[Intent]:
    me = ctx.caller
    event = typing_event(me.name, room=command.room, to=command.to)
    if command.to is not None:
        others = tuple(ctx.store.connection_ids_named(command.to)) if command.to != me.name else ()
        return [ToConnections(others, event)] if others else []
    assert command.room is not None
    require_room(me, command.room, command.ACTION)
    members = members_within(ctx.store, command.room, ctx.config.presence_event_limit)
    if members is None:
        return []
    others = tuple(m.connection_id for m in members if m.name != me.name)
    return [ToConnections(others, event)] if others else []

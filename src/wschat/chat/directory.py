"""Rooms as things people find and own: ``rooms`` pages through the directory of public rooms
(topic, owner, member count), ``createRoom`` makes a room with a topic whose creator is its
owner, ``invite`` lets someone into a private room. A private room is invite-only: nobody else
can join it, so nobody else reads its history, hears its live events or finds it listed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wschat import protocol
from wschat.chat import rooms
from wschat.chat.context import Context
from wschat.chat.intents import Intent, Reply, ToConnections
from wschat.protocol import ProtocolError
from wschat.storage.base import LOBBY, RoomInfo

MAX_TOPIC_CHARS = 200
DEFAULT_PAGE = 50
MAX_PAGE = 100
ROOM_EXISTS = "room_exists"


def room_info(info: RoomInfo, members: int) -> dict[str, Any]:
    return {
        "room": info.room,
        "topic": info.topic,
        "owner": info.owner,
        "private": info.private,
        "members": members,
    }


@dataclass(frozen=True, slots=True)
class ListRooms:
    """``{"action": "rooms", "after": "general", "limit": 50}``: a page of public rooms."""

    ACTION: ClassVar[str] = "rooms"
    after: str | None = None
    limit: int = DEFAULT_PAGE

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> ListRooms:
        after = protocol.string_field(payload, "after", cls.ACTION, required=False)
        if after is not None:
            protocol.check_room(after, cls.ACTION)
        limit = payload.get("limit")
        if limit is None:  # null is as good as leaving it out
            limit = DEFAULT_PAGE
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ProtocolError(
                protocol.BAD_REQUEST, f'"limit" must be a whole number 1-{MAX_PAGE}', cls.ACTION
            )
        return cls(after, limit)


@dataclass(frozen=True, slots=True)
class CreateRoom:
    """``{"action": "createRoom", "room": "design", "topic": "...", "private": false}``."""

    ACTION: ClassVar[str] = "createRoom"
    room: str
    topic: str = ""
    private: bool = False

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> CreateRoom:
        room = protocol.room_field(payload, cls.ACTION)
        topic = protocol.string_field(payload, "topic", cls.ACTION, required=False) or ""
        if len(topic) > MAX_TOPIC_CHARS:
            raise ProtocolError(
                protocol.TOO_LONG, f'"topic" is over {MAX_TOPIC_CHARS} characters', cls.ACTION
            )
        private = payload.get("private", False)
        if not isinstance(private, bool):
            raise ProtocolError(protocol.BAD_REQUEST, '"private" must be true or false', cls.ACTION)
        if room == LOBBY:
            raise ProtocolError(ROOM_EXISTS, "lobby is everyone's", cls.ACTION)
        return cls(room, topic, private)


@dataclass(frozen=True, slots=True)
class Invite:
    """``{"action": "invite", "room": "design", "user": "bob"}``: the owner or a moderator."""

    ACTION: ClassVar[str] = "invite"
    room: str
    user: str

    @classmethod
    def parse(cls, payload: dict[str, Any], **_: Any) -> Invite:
        room = protocol.room_field(payload, cls.ACTION)
        user = protocol.string_field(payload, "user", cls.ACTION)
        assert user is not None
        return cls(room, protocol.check_name(user, cls.ACTION, "user"))


def list_rooms(ctx: Context, command: ListRooms) -> list[Intent]:
    page = ctx.store.public_rooms(after=command.after, limit=command.limit + 1)
    more = len(page) > command.limit
    listed = [
        room_info(info, ctx.store.room_member_count(info.room)) for info in page[: command.limit]
    ]
    event = {"type": "rooms", "rooms": listed, "more": more}
    return [Reply(ctx.caller.connection_id, event)]


def create_room(ctx: Context, command: CreateRoom) -> list[Intent]:
    me = ctx.caller
    created = ctx.store.create_room(
        command.room,
        owner=me.name,
        topic=command.topic,
        private=command.private,
        created_at=ctx.now_ms(),
    )
    if not created:
        raise ProtocolError(ROOM_EXISTS, f"{command.room!r} already has an owner", command.ACTION)
    ctx.store.set_role(command.room, me.name, "owner")
    info = RoomInfo(command.room, me.name, command.topic, command.private, ctx.now_ms())
    created_event = {"type": "roomCreated", **room_info(info, 0)}
    # The owner is in at once, as if they had joined.
    return [Reply(me.connection_id, created_event), *rooms.join(ctx, protocol.Join(command.room))]


def invite(ctx: Context, command: Invite) -> list[Intent]:
    me = ctx.caller
    info = ctx.store.get_room(command.room)
    if info is None:
        raise ProtocolError(
            protocol.NOT_IN_ROOM, f"nobody created {command.room!r}", command.ACTION
        )
    if not rooms.moderates(ctx, command.room):
        raise ProtocolError(
            protocol.FORBIDDEN, "only the room's owner or moderators may invite", command.ACTION
        )
    ctx.store.invite(command.room, command.user)
    event = {"type": "invited", "room": command.room, "user": command.user, "by": me.name}
    invitee = ctx.store.connection_ids_named(command.user)
    return [ToConnections((*invitee, me.connection_id), event)]

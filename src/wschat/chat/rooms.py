"""Use cases of rooms, names and presence: ``join``, ``leave``, ``setName``, ``who``, ``hello``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wschat import protocol
from wschat.chat.context import Context
from wschat.chat.intents import Announce, Intent, Reply
from wschat.protocol import ProtocolError
from wschat.storage.base import ChatStore, Connection, Member, member_names

PRIVATE_ROOM = "private_room"
MUTED = "muted"
MODERATORS = ("owner", "moderator")


def moderates(ctx: Context, room: str) -> bool:
    """Whether the caller is the room's owner or one of its moderators."""
    state = ctx.store.get_room_user(room, ctx.caller.name)
    return state is not None and state.role in MODERATORS


def require_voice(ctx: Context, room: str, action: str) -> None:
    """Refuse a muted user's message, edit or reaction in ``room``."""
    state = ctx.store.get_room_user(room, ctx.caller.name)
    if state is not None and state.muted_until is not None and state.muted_until > ctx.now_ms():
        seconds = (state.muted_until - ctx.now_ms() + 999) // 1000
        raise ProtocolError(MUTED, f"you are muted in {room!r} for {seconds} s more", action)


def may_enter(store: ChatStore, room: str, name: str) -> bool:
    """A public (or never created) room anyone may enter; a private one the invited and those
    with a role in it (for ``join`` and for ``?room=`` at ``$connect`` alike)."""
    info = store.get_room(room)
    if info is None or not info.private:
        return True
    state = store.get_room_user(room, name)
    return state is not None and (state.invited or state.role is not None)


def require_room(connection: Connection, room: str, action: str) -> None:
    if room not in connection.rooms:
        raise ProtocolError(protocol.NOT_IN_ROOM, f"you are not in {room!r}: join it first", action)


def join(ctx: Context, command: protocol.Join) -> list[Intent]:
    me = ctx.caller
    room = command.room
    if room not in me.rooms and not may_enter(ctx.store, room, me.name):
        raise ProtocolError(PRIVATE_ROOM, f"{room!r} is invite-only", command.ACTION)
    intents: list[Intent] = []
    if ctx.store.join_room(room, me.connection_id, me.name, me.expires_at):
        ts = ctx.now_ms()
        intents.append(
            Announce(
                room,
                lambda names: protocol.membership_event("joined", room, me.name, ts, names),
                quiet_if=another_connection_named(me.name, me.connection_id),
                echo_to=me.connection_id,  # the joiner learns it is in, however big the room
            )
        )
    names = member_names(ctx.store.room_members(room))
    page = ctx.store.message_history(room)
    history = protocol.history_event(page.messages, page.more, room=room, with_user=None)
    intents += [
        Reply(me.connection_id, protocol.presence_event(room, names)),
        Reply(me.connection_id, history),
    ]
    return intents


def leave(ctx: Context, command: protocol.Leave) -> list[Intent]:
    me = ctx.caller
    require_room(me, command.room, command.ACTION)
    ctx.store.leave_room(command.room, me.connection_id)
    ts = ctx.now_ms()
    return [
        Announce(
            command.room,
            lambda names: protocol.membership_event("left", command.room, me.name, ts, names),
            quiet_if=still_present(me.name),
            echo_to=me.connection_id,
        )
    ]


def set_name(ctx: Context, command: protocol.SetName) -> list[Intent]:
    # A name an authorizer vouched for is an identity, not a claim to change.
    if ctx.signed_in or ctx.config.auth_required:
        raise ProtocolError(
            protocol.UNAUTHORIZED, "names come from your sign-in here", command.ACTION
        )
    me = ctx.caller
    renamed = ctx.store.rename_connection(me.connection_id, command.name)
    if renamed is None:
        return []
    ts = ctx.now_ms()
    intents: list[Intent] = []
    if command.name != me.name:
        for room in sorted(renamed.rooms):
            intents.append(Announce(room, _renamed(room, me.name, command.name, ts)))
    intents.append(hello_of(renamed))
    return intents


def _renamed(room: str, old: str, new: str, ts: int) -> Callable[[list[str]], dict[str, Any]]:
    return lambda names: protocol.renamed_event(room, old, new, ts, names)


def who(ctx: Context, command: protocol.Who) -> list[Intent]:
    names = member_names(ctx.store.room_members(command.room))
    return [Reply(ctx.caller.connection_id, protocol.presence_event(command.room, names))]


def hello_of(connection: Connection) -> Reply:
    event = protocol.hello_event(
        connection.connection_id, connection.name, sorted(connection.rooms)
    )
    return Reply(connection.connection_id, event)


def another_connection_named(name: str, connection_id: str) -> Callable[[list[Member]], bool]:
    return lambda members: any(m.name == name and m.connection_id != connection_id for m in members)


def still_present(name: str) -> Callable[[list[Member]], bool]:
    return lambda members: any(m.name == name for m in members)

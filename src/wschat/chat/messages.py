"""Use cases of messages: ``sendMessage`` and ``direct`` store a message, acknowledge it and
deliver it; ``history`` reads pages of a room or a conversation. Stored before anyone hears of
it: an ``ack`` means stored."""

from __future__ import annotations

from wschat import protocol
from wschat.chat.context import Context
from wschat.chat.intents import Intent, Reply, ToConnections, ToRoom
from wschat.chat.rooms import require_room, require_voice
from wschat.protocol import ProtocolError
from wschat.storage.base import NewMessage, direct_room


def _new_message(
    ctx: Context, room: str, text: str, client_id: str | None, to: str | None = None
) -> NewMessage:
    ts = ctx.now_ms()
    expires_at = ts // 1000 + ctx.config.message_ttl_seconds
    return NewMessage(room, ctx.caller.name, text, ts, expires_at, client_id, to)


def send_message(ctx: Context, command: protocol.SendMessage) -> list[Intent]:
    require_room(ctx.caller, command.room, command.ACTION)
    require_voice(ctx, command.room, command.ACTION)
    stored = ctx.store.append_message(
        _new_message(ctx, command.room, command.text, command.client_id)
    )
    ctx.outcome.message_id = stored.id
    ack = Reply(ctx.caller.connection_id, protocol.ack_event(stored))
    return [ToRoom(command.room, protocol.message_event(stored), ack=ack)]


def direct(ctx: Context, command: protocol.Direct) -> list[Intent]:
    me = ctx.caller
    recipients = ctx.store.connection_ids_named(command.to)
    if not recipients:
        raise ProtocolError(
            protocol.NO_SUCH_USER, f"nobody named {command.to!r} is connected", command.ACTION
        )
    stored = ctx.store.append_message(
        _new_message(
            ctx, direct_room(me.name, command.to), command.text, command.client_id, command.to
        )
    )
    # Every connection of both users sees the message, so both sides' other tabs agree.
    own = ctx.store.connection_ids_named(me.name)
    ctx.outcome.message_id = stored.id
    ack = Reply(me.connection_id, protocol.ack_event(stored))
    everyone = (*recipients, *own, me.connection_id)
    return [ToConnections(everyone, protocol.direct_event(stored), ack=ack)]


def history(ctx: Context, command: protocol.History) -> list[Intent]:
    me = ctx.caller
    if command.with_user is not None:
        key = direct_room(me.name, command.with_user)
    else:
        assert command.room is not None
        require_room(me, command.room, command.ACTION)
        key = command.room
    page = ctx.store.message_history(
        key, after=command.after, before=command.before, limit=command.limit
    )
    event = protocol.history_event(
        page.messages,
        page.more,
        room=command.room,
        with_user=command.with_user,
        after=command.after,
        before=command.before,
    )
    return [Reply(me.connection_id, event)]

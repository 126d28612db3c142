"""Use cases of a connection's life: ``connect`` registers it and announces it to its rooms;
``departed`` (the forget use case) removes one that is gone and tells its rooms it left, for
its own ``$disconnect`` and for a post that found it gone (410)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wschat import protocol
from wschat.auth import AuthError
from wschat.chat.config import ChatConfig
from wschat.chat.intents import Announce, Intent, ToRoom
from wschat.chat.rooms import another_connection_named, may_enter, still_present
from wschat.storage.base import LOBBY, ChatStore, Connection, member_names, members_within

# API Gateway's integration timeout: no $connect runs longer than this.
CONNECT_GRACE_MS = 30_000
# What connecting and forgetting ask of the store (wschat/chat/registry.py derives IAM).
CONNECT_NEEDS = frozenset({"put_connection", "get_room", "get_room_user"})
FORGET_NEEDS = frozenset({"remove_connection", "room_members", "room_member_count"})


def connect(
    store: ChatStore,
    connection_id: str,
    connected_at_ms: int,
    query: Mapping[str, str],
    authorizer: Mapping[str, Any] | None,
    config: ChatConfig,
    now_ms: Callable[[], int],
) -> tuple[str, list[Intent]]:
    """Register a connection: its name and the intents announcing it. AuthError or
    ProtocolError refuse it.

    The name comes from the ``$connect`` authorizer's context (``name``; the authorizer
    checked the token, wschat.handlers.authorize). With sign-in off: ``?name=``, else a guest
    name."""
    authorized = authorized_name(authorizer)
    if authorized is not None:
        name = protocol.check_name(authorized, "$connect")
    elif config.auth_required:
        # Fail closed: a $connect route without the authorizer must not let anyone in.
        raise AuthError(401, "sign-in is on but $connect has no authorizer: nobody checked a token")
    elif query.get("name"):
        name = protocol.check_name(query["name"], "$connect")
    else:
        name = guest_name(connection_id)
    rooms = [LOBBY]
    for room in (query.get("room") or "").split(","):
        if room.strip() and room.strip() not in rooms:
            rooms.append(protocol.check_room(room.strip(), "$connect"))
    # A private room the caller may not enter is left out, not a refusal: a page that saved
    # rooms under another name must still get in (its ``hello`` lists the rooms it has).
    rooms = [room for room in rooms if room == LOBBY or may_enter(store, room, name)]
    store.put_connection(
        Connection.opened(connection_id, connected_at_ms, name=name, rooms=frozenset(rooms))
    )
    ts = now_ms()
    # The new connection learns about its rooms from hello/history once it is open.
    intents: list[Intent] = [
        Announce(
            room,
            _joined(room, name, ts),
            quiet_if=another_connection_named(name, connection_id),
        )
        for room in rooms
    ]
    return name, intents


def departed(
    store: ChatStore,
    connection_id: str,
    now_ms: Callable[[], int],
    config: ChatConfig,
    *,
    confirmed: bool = False,
) -> list[ToRoom]:
    """Remove a connection that is gone; the ``left`` events for its rooms.

    A 410 is not proof of departure for a connection still in its $connect (API Gateway
    answers 410 until $connect returns): unless ``confirmed`` (its own $disconnect), a record
    younger than the $connect time limit is kept for its $disconnect to remove."""
    connected_before = None if confirmed else now_ms() - CONNECT_GRACE_MS
    gone = store.remove_connection(connection_id, connected_before=connected_before)
    if gone is None:
        return []
    ts = now_ms()
    intents: list[ToRoom] = []
    for room in sorted(gone.rooms) if config.presence_event_limit > 0 else ():
        members = members_within(store, room, config.presence_event_limit)
        if not members:
            continue
        if still_present(gone.name)(members):
            continue  # another tab of the same person is still there
        event = protocol.membership_event("left", room, gone.name, ts, member_names(members))
        intents.append(ToRoom(room, event, members=tuple(m.connection_id for m in members)))
    return intents


def _joined(room: str, name: str, ts: int) -> Callable[[list[str]], dict[str, Any]]:
    return lambda names: protocol.membership_event("joined", room, name, ts, names)


def authorized_name(authorizer: Mapping[str, Any] | None) -> str | None:
    """The user name a ``$connect`` authorizer put in its context (``name``), if any."""
    name = (authorizer or {}).get("name")
    return name if isinstance(name, str) and name else None


def guest_name(connection_id: str) -> str:
    """A default name from the connection id, e.g. ``guest-l0sm``."""
    letters = "".join(ch for ch in connection_id if ch.isascii() and ch.isalnum())[:4].lower()
    return f"guest-{letters or 'anon'}"

"""Room isolation, as a property: whatever connections do (connect, join, leave, rename, send,
edit, react, type, invite, ask who is there, vanish without a $disconnect, disconnect), a
``message`` — and an ``edited``, a ``reaction`` — reaches every member of its room at that time
exactly once and nobody else, ``typing`` the members but the typer's own tabs, and a room's ids
increase in the order it accepted its messages. Room ``p`` is private (ann owns it): only
those invited get in, by ``join`` or ``?room=``, so no one else ever sees what is said there.
Along the way the store must agree with the model on every connection's rooms and name, and
``who`` must list the room's names.

Each example runs a random sequence through ``ChatService`` over a fresh
``SqliteStore(":memory:")`` while a model keeps who is in which room and under which name.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.conftest import Chat

from wschat import protocol
from wschat.protocol import ProtocolError
from wschat.service import ChatConfig
from wschat.storage.base import RateLimit

CONNECTIONS = ("c0", "c1", "c2", "c3")
ROOMS = ("lobby", "a", "b", "p")
PRIVATE = "p"  # ann's, invite-only
OWNER = "ann"
NAMES = ("ann", "bob", "cy")  # fewer names than connections: some share one

connection_ids = st.sampled_from(CONNECTIONS)
rooms = st.sampled_from(ROOMS)
names = st.sampled_from(NAMES)

operations = st.one_of(
    st.tuples(st.just("connect"), connection_ids, names, st.sets(rooms, max_size=3)),
    st.tuples(st.just("join"), connection_ids, rooms),
    st.tuples(st.just("leave"), connection_ids, rooms),
    st.tuples(st.just("setName"), connection_ids, names),
    st.tuples(st.just("send"), connection_ids, rooms),
    st.tuples(st.just("send"), connection_ids, rooms),
    st.tuples(st.just("who"), connection_ids, rooms),
    st.tuples(st.just("edit"), connection_ids, rooms),
    st.tuples(st.just("react"), connection_ids, rooms),
    st.tuples(st.just("typing"), connection_ids, rooms),
    st.tuples(st.just("invite"), connection_ids, names),
    st.tuples(st.just("vanish"), connection_ids),  # closed; API Gateway answers 410 from now on
    st.tuples(st.just("disconnect"), connection_ids),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=2)),  # ms; 0: same millisecond
)


@dataclass
class Model:
    """What should be true: each open connection's rooms and name."""

    rooms: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    last_id: dict[str, str] = field(default_factory=dict)  # per room, in send order
    authors: dict[str, str] = field(default_factory=dict)  # message id -> author's name
    reacted: set[tuple[str, str]] = field(default_factory=set)  # (message id, user) with 👍
    invited: set[str] = field(default_factory=lambda: {OWNER})  # names let into PRIVATE

    def may_enter(self, room: str, name: str) -> bool:
        return room != PRIVATE or name in self.invited

    def members(self, room: str) -> set[str]:
        return {cid for cid, joined in self.rooms.items() if room in joined}

    def forget(self, connection_id: str) -> None:
        self.rooms.pop(connection_id, None)
        self.names.pop(connection_id, None)


def message_posts(
    chat: Chat, since: int, kind: str = "message"
) -> list[tuple[str, dict[str, Any]]]:
    decoded = [(cid, json.loads(data)) for cid, data in chat.sender.posts[since:]]
    return [(cid, event) for cid, event in decoded if event["type"] == kind]


def refused_with(chat: Chat, code: str, connection_id: str, action: str, **fields: Any) -> None:
    try:
        chat.do(connection_id, action, **fields)
    except ProtocolError as error:
        assert error.code == code, (action, fields, error.message)
    else:
        raise AssertionError(f"{connection_id} {action} {fields}: expected {code}")


def run(chat: Chat, model: Model, operation: tuple[Any, ...]) -> None:
    kind, *args = operation
    if kind == "tick":
        chat.clock.advance(args[0])
        return
    connection_id = args[0]
    known = connection_id in model.rooms
    if kind == "connect":
        if known:
            return  # API Gateway never reuses an open connection's id
        name, extra_rooms = args[1], sorted(args[2])
        chat.sender.gone.discard(connection_id)
        chat.connect(connection_id, name=name, room=",".join(extra_rooms))
        # A private room one may not enter is left out at $connect.
        entered = {room for room in extra_rooms if model.may_enter(room, name)}
        model.rooms[connection_id] = {"lobby", *entered}
        model.names[connection_id] = name
    elif kind == "disconnect":
        chat.service.disconnect(connection_id)
        model.forget(connection_id)
    elif kind == "vanish":
        chat.sender.gone.add(connection_id)
        # Past $connect's time limit, so a 410 counts as gone (a younger record is kept for
        # its $disconnect: API Gateway answers 410 while a $connect is still running).
        chat.clock.advance(31_000)
    elif not known:
        fields = {"message": "?", "room": "lobby"} if kind == "send" else {}
        action = "sendMessage" if kind == "send" else "hello"
        refused_with(chat, protocol.UNAVAILABLE, connection_id, action, **fields)
    elif kind == "join":
        room = args[1]
        if room in model.rooms[connection_id] or model.may_enter(room, model.names[connection_id]):
            chat.do(connection_id, "join", room=room)
            model.rooms[connection_id].add(room)
        else:
            refused_with(chat, "private_room", connection_id, "join", room=room)
    elif kind == "leave":
        room = args[1]
        if room in model.rooms[connection_id]:
            chat.do(connection_id, "leave", room=room)
            model.rooms[connection_id].discard(room)
        else:
            refused_with(chat, protocol.NOT_IN_ROOM, connection_id, "leave", room=room)
    elif kind == "setName":
        chat.do(connection_id, "setName", name=args[1])
        model.names[connection_id] = args[1]
    elif kind == "send":
        send(chat, model, connection_id, args[1])
    elif kind in ("edit", "react"):
        change(chat, model, kind, connection_id, args[1])
    elif kind == "typing":
        typing(chat, model, connection_id, args[1])
    elif kind == "invite":
        if model.names[connection_id] == OWNER:
            chat.do(connection_id, "invite", room=PRIVATE, user=args[1])
            model.invited.add(args[1])
        else:
            refused_with(chat, "forbidden", connection_id, "invite", room=PRIVATE, user=args[1])
    elif kind == "who":
        since = len(chat.sender.posts)
        chat.do(connection_id, "who", room=args[1])
        if connection_id not in chat.sender.gone:
            [(to, data)] = chat.sender.posts[since:]
            names_present = sorted({model.names[cid] for cid in model.members(args[1])})
            assert to == connection_id
            assert json.loads(data) == protocol.presence_event(args[1], names_present)
    else:
        raise AssertionError(kind)


def send(chat: Chat, model: Model, connection_id: str, room: str) -> None:
    since = len(chat.sender.posts)
    if room not in model.rooms[connection_id]:
        refused_with(
            chat, protocol.NOT_IN_ROOM, connection_id, "sendMessage", message="x", room=room
        )
        assert message_posts(chat, since) == []
        return
    # Members at send time; a closed one is tried (and then forgotten) but receives nothing.
    expected = model.members(room) - chat.sender.gone
    text = f"{connection_id}@{room}#{since}"

    outcome = chat.do(connection_id, "sendMessage", message=text, room=room)

    delivered = message_posts(chat, since)
    assert Counter(cid for cid, _ in delivered) == Counter(expected), (room, model.rooms)
    for _, event in delivered:
        assert event["id"] == outcome.message_id
        assert (event["room"], event["text"]) == (room, text)
        assert event["from"] == model.names[connection_id]
    for closed in model.members(room) & chat.sender.gone:
        assert chat.store.get_connection(closed) is None, f"{closed} was found gone: forgotten"
    assert outcome.message_id is not None
    if room in model.last_id:
        assert outcome.message_id > model.last_id[room]
    model.last_id[room] = outcome.message_id
    model.authors[outcome.message_id] = model.names[connection_id]


def change(chat: Chat, model: Model, kind: str, connection_id: str, room: str) -> None:
    """Edit (when it is the connection's own) or toggle a 👍 on the room's last message: the
    change reaches exactly the room's members now."""
    since = len(chat.sender.posts)
    message_id = model.last_id.get(room)
    name = model.names[connection_id]
    if room not in model.rooms[connection_id]:
        fields = {"message": "x"} if kind == "edit" else {"emoji": "👍"}
        refused_with(chat, protocol.NOT_IN_ROOM, connection_id, kind, room=room, id="0", **fields)
        return
    if message_id is None:
        return
    if kind == "edit":
        if model.authors[message_id] != name:
            refused_with(
                chat, protocol.FORBIDDEN, connection_id, "edit", room=room, id=message_id,
                message="not mine",
            )  # fmt: skip
            return
        chat.do(connection_id, "edit", room=room, id=message_id, message=f"edited#{since}")
        event_type = "edited"
    else:
        on = (message_id, name) not in model.reacted
        chat.do(connection_id, "react", room=room, id=message_id, emoji="👍", on=on)
        (model.reacted.add if on else model.reacted.discard)((message_id, name))
        event_type = "reaction"
    expected = model.members(room) - chat.sender.gone
    delivered = message_posts(chat, since, event_type)
    assert Counter(cid for cid, _ in delivered) == Counter(expected), (kind, room, model.rooms)
    assert all(event["id"] == message_id and event["room"] == room for _, event in delivered)


def typing(chat: Chat, model: Model, connection_id: str, room: str) -> None:
    since = len(chat.sender.posts)
    if room not in model.rooms[connection_id]:
        refused_with(chat, protocol.NOT_IN_ROOM, connection_id, "typing", room=room)
        return
    chat.do(connection_id, "typing", room=room)
    name = model.names[connection_id]
    expected = {cid for cid in model.members(room) if model.names[cid] != name}
    delivered = message_posts(chat, since, "typing")
    assert Counter(cid for cid, _ in delivered) == Counter(expected - chat.sender.gone)


def check_store_matches(chat: Chat, model: Model) -> None:
    """Drop from the model what the service forgot (closed connections it found gone), then
    the store and the model must agree on every connection."""
    for connection_id in list(model.rooms):
        if chat.store.get_connection(connection_id) is None:
            assert connection_id in chat.sender.gone, f"{connection_id} forgotten while open"
            model.forget(connection_id)
    assert set(chat.store.scan_connection_ids()) == set(model.rooms)
    for connection_id, joined in model.rooms.items():
        record = chat.store.get_connection(connection_id)
        assert record is not None
        assert (set(record.rooms), record.name) == (joined, model.names[connection_id])
    for room in ROOMS:
        members = {m.connection_id for m in chat.store.room_members(room)}
        assert members == model.members(room), room


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(names, st.sets(rooms, max_size=3)), min_size=2, max_size=len(CONNECTIONS)),
    st.lists(operations, min_size=5, max_size=50),
)
def test_messages_reach_exactly_the_rooms_members_at_send_time(
    first: list[tuple[str, set[str]]], sequence: list[tuple[Any, ...]]
) -> None:
    # A burst no sequence can spend: the rate limit has its own tests.
    chat = Chat(ChatConfig(rate_limit=RateLimit(burst=1_000_000)))
    chat.store.create_room(PRIVATE, owner=OWNER, topic="", private=True, created_at=0)
    chat.store.set_role(PRIVATE, OWNER, "owner")
    model = Model()
    opening = [
        ("connect", connection_id, name, joined)
        for connection_id, (name, joined) in zip(CONNECTIONS, first, strict=False)
    ]
    try:
        for operation in [*opening, *sequence]:
            run(chat, model, operation)
            check_store_matches(chat, model)
        every_message = message_posts(chat, 0)
        assert len({(cid, e["id"]) for cid, e in every_message}) == len(every_message)
    finally:
        chat.close()

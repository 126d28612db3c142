"""Hypothesis strategies for fuzzing the chat protocol: odd text, any JSON, valid frames.

Shared by the parser's fuzz tests (tests/unit/test_fuzz_protocol.py), the handlers'
(tests/unit/test_fuzz_handlers.py) and the gateway's over real sockets
(tests/integration/test_fuzz_gateway.py).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from wschat import protocol
from wschat.chat.directory import CreateRoom, Invite, ListRooms
from wschat.chat.edits import Delete, Edit, React, Target
from wschat.chat.moderation import Kick, Mute, SetRole
from wschat.chat.reading import Read
from wschat.chat.registry import NAMES as ACTIONS
from wschat.chat.typing import Typing
from wschat.protocol import MAX_HISTORY_LIMIT, Command

# Every field any action reads.
FIELDS = ("message", "room", "clientId", "name", "to", "with", "after", "before", "limit")

# Characters that have broken parsers and renderers: NUL and controls, quotes and backslashes,
# markup, right-to-left overrides and isolates, zero-width joiners and spaces, a BOM, combining
# marks, non-characters, astral emoji, and both halves of a UTF-16 surrogate pair on their own.
ODD_CHARACTERS = [
    "\x00", "\x01", "\x1b", "\x7f", "\n", "\r", "\t", '"', "\\", "/", "<", ">", "&", "'",
    "\u0085", "\u00a0", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e",
    "\u2066", "\u2069", "\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff", "\u0301", "\u0336",
    "\u20dd", "\U0001f600", "\U0001f469", "\U0001f4bb", "\U0010ffff", "\ud800", "\udbff",
    "\udc00", "\udfff", "\ufdfa", "\u00df", "\u0130", "\u01c5", "\uff41",
]  # fmt: skip
odd_characters = st.sampled_from(ODD_CHARACTERS) | st.characters(codec="utf-8")
# Joined by hand: st.text() never yields lone surrogates, whatever its alphabet.
odd_text = st.lists(odd_characters, max_size=40).map("".join)
# Texts a person could type: no lone surrogates (a socket delivers UTF-8 only).
typed_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=8,
)


names = st.from_regex(protocol.NAME_PATTERN, fullmatch=True).filter(
    lambda name: name.lower() not in protocol.RESERVED_NAMES
)
rooms = st.from_regex(protocol.ROOM_PATTERN, fullmatch=True)
texts = typed_text.filter(lambda text: bool(text.strip()))
client_ids = st.none() | st.text(st.characters(codec="utf-8"), max_size=64)
message_ids = st.none() | st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[dict[str, Any], Command]:
    action = draw(st.sampled_from(ACTIONS))
    if action == "sendMessage":
        text, room, client_id = draw(texts), draw(rooms), draw(client_ids)
        frame = {"message": text, "room": room, "clientId": client_id}
        return frame | {"action": action}, protocol.SendMessage(text, room, client_id)
    if action == "direct":
        to, text, client_id = draw(names), draw(texts), draw(client_ids)
        frame = {"to": to, "message": text, "clientId": client_id}
        return frame | {"action": action}, protocol.Direct(to, text, client_id)
    if action in ("join", "leave", "who"):
        room = draw(rooms)
        command = {"join": protocol.Join, "leave": protocol.Leave, "who": protocol.Who}[action]
        return {"action": action, "room": room}, command(room)
    if action == "setName":
        name = draw(names)
        return {"action": action, "name": name}, protocol.SetName(name)
    if action == "history":
        limit = draw(st.integers(min_value=1, max_value=MAX_HISTORY_LIMIT))
        after, before = draw(message_ids), None
        if after is None:
            before = draw(message_ids)
        if draw(st.booleans()):
            with_user = draw(names)
            frame = {"with": with_user, "after": after, "before": before, "limit": limit}
            return frame | {"action": action}, protocol.History(
                None, with_user, after, before, limit
            )
        room = draw(rooms)
        frame = {"room": room, "after": after, "before": before, "limit": limit}
        return frame | {"action": action}, protocol.History(room, None, after, before, limit)
    if action in ("edit", "delete", "react"):
        message_id = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=64))
        if draw(st.booleans()):
            where: dict[str, Any] = {"with": draw(names)}
            target = Target(None, where["with"], message_id)
        else:
            where = {"room": draw(rooms)}
            target = Target(where["room"], None, message_id)
        frame = {"action": action, **where, "id": message_id}
        if action == "edit":
            text = draw(texts)
            return frame | {"message": text}, Edit(target, text)
        if action == "delete":
            return frame, Delete(target)
        emoji = draw(st.sampled_from(["👍", "🎉", "+1", "ok", "❤️"]))
        on = draw(st.booleans())
        return frame | {"emoji": emoji, "on": on}, React(target, emoji, on)
    if action == "read":
        up_to = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=64))
        if draw(st.booleans()):
            with_user = draw(names)
            return {"action": action, "with": with_user, "upTo": up_to}, Read(
                None, with_user, up_to
            )
        room = draw(rooms)
        return {"action": action, "room": room, "upTo": up_to}, Read(room, None, up_to)
    if action == "rooms":
        limit = draw(st.integers(min_value=1, max_value=100))
        after = draw(st.none() | rooms)
        return {"action": action, "after": after, "limit": limit}, ListRooms(after, limit)
    if action == "createRoom":
        room = draw(rooms.filter(lambda r: r != "lobby"))
        topic = draw(st.text(max_size=200).filter(lambda t: not has_lone_surrogate(t)))
        private = draw(st.booleans())
        frame = {"action": action, "room": room, "topic": topic, "private": private}
        return frame, CreateRoom(room, topic, private)
    if action in ("invite", "kick"):
        room, user = draw(rooms), draw(names)
        command = Invite(room, user) if action == "invite" else Kick(room, user)
        return {"action": action, "room": room, "user": user}, command
    if action == "setRole":
        room, user, role = draw(rooms), draw(names), draw(st.sampled_from(["moderator", "member"]))
        return {"action": action, "room": room, "user": user, "role": role}, SetRole(
            room, user, role
        )
    if action == "mute":
        room, user = draw(rooms), draw(names)
        seconds = draw(st.integers(min_value=0, max_value=7 * 24 * 3600))
        frame = {"action": action, "room": room, "user": user, "seconds": seconds}
        return frame, Mute(room, user, seconds)
    if action == "typing":
        if draw(st.booleans()):
            to = draw(names)
            return {"action": action, "to": to}, Typing(None, to)
        room = draw(rooms)
        return {"action": action, "room": room}, Typing(room)
    return {"action": action}, protocol.Hello()


def has_lone_surrogate(value: Any) -> bool:
    """Whether ``value`` holds text with no UTF-8 form (half a surrogate pair), anywhere."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False

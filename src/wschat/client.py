"""``wschat client``: the chat in a terminal, line by line.

Shows each room's recent history, then live messages; lines typed go to the current room (or,
after ``/dm NAME``, to NAME).
Commands: ``/join ROOM``, ``/leave [ROOM]``, ``/room ROOM`` (switch), ``/who [ROOM]``,
``/dm NAME [TEXT]`` (without TEXT: talk to NAME), ``/name NAME``, ``/history`` (older messages),
``/edit TEXT`` (your last message here), ``/delete`` (your last message here),
``/react EMOJI`` (the last message here), ``/unreact EMOJI``, ``/rooms`` (public rooms),
``/create ROOM [TOPIC]``, ``/create-private ROOM [TOPIC]``, and in the current room (its owner or
moderators) ``/invite NAME``, ``/mod NAME``, ``/unmod NAME``, ``/mute NAME [MINUTES]`` (10 by
default), ``/unmute NAME``, ``/kick NAME``; ``/help``, ``/quit``.
It reconnects with backoff and asks each room for what it missed (``history`` after the last
id it saw), so nothing is lost or shown twice across a reconnect.

Changes to messages print as they happen: ``* [general] alice edited: new text``,
``* [general] message deleted by alice ("old text")``, ``* [general] bob reacted 👍 (2) to
"hello"``; history shows a message as it is now (``(edited)``, ``(message deleted)``, its
reactions), and a change seen only in a catch-up page prints as a change.

On connect it says what is unread (``* 3 unread in [general]``); the room being talked in is
read as its messages print (``read`` up to the newest shown, at most every READ_EVERY seconds),
so the page's badges on your other tabs clear. Rooms created, invitations, roles, kicks and mutes
print as lines: ``* [team] bob muted mallory for 10 minutes``.

Someone typing in the current room, or to you, shows as ``* alice is typing…`` (``… [dm]`` for a
direct message), at most once per person and place every 10 s rather than a line per ``typing``
event. The client reads whole lines, so it sends no ``typing`` of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from wschat import ids

HELP = __doc__.split("Commands: ", 1)[1].split("It reconnects", 1)[0].strip() if __doc__ else ""
MAX_BACKOFF = 10.0
CATCH_UP_REWIND_MS = 10_000
TYPING_NOTICE_EVERY = 10.0  # seconds between two "is typing" lines for one person in one place
REMEMBERED = 500  # messages kept per place, for /edit, /delete, /react and for change lines
SNIPPET_CHARS = 30
READ_EVERY = 0.3  # seconds: a burst of messages is read with one ``read``, not one each
DEFAULT_MUTE_MINUTES = 10
MAX_MUTE_MINUTES = 7 * 24 * 60  # the server's limit: a week


@dataclass
class Seen:
    """A message as this client last saw it."""

    sender: str
    text: str
    deleted: bool = False
    edited_at: int | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, event: dict[str, Any]) -> Seen:
        return cls(
            sender=str(event.get("from")),
            text=str(event.get("text", "")),
            deleted=bool(event.get("deleted")),
            edited_at=event.get("editedAt") if isinstance(event.get("editedAt"), int) else None,
            reactions=_reactions(event.get("reactions")),
        )

    def snippet(self) -> str:
        text = " ".join(self.text.split())
        if len(text) > SNIPPET_CHARS:
            text = text[: SNIPPET_CHARS - 1] + "…"
        return f'"{text}"' if text else ""


def _reactions(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        return {}
    return {str(emoji): [str(u) for u in users] for emoji, users in value.items() if users}


def _counts(reactions: dict[str, list[str]]) -> str:
    return ", ".join(f"{emoji} {len(users)}" for emoji, users in reactions.items()) or "none"


class TerminalChat:
    def __init__(
        self,
        url: str,
        *,
        name: str | None,
        room: str,
        out: TextIO = sys.stdout,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.token = token
        self.current = room
        self.rooms: set[str] = {"lobby", room}
        self.last_ids: dict[str, str] = {}
        self.first_ids: dict[str, str] = {}  # per room: where /history goes on from
        self.seen: set[str] = set()
        self.out = out
        self.ws: ClientConnection | None = None
        self.stopping = False
        self.connected = asyncio.Event()
        self.clock: Callable[[], float] = time.monotonic
        self.typing_shown: dict[tuple[str, str], float] = {}  # (room or "@", name) -> when
        # Per place (a room, or "@name" for direct messages with name): id -> the message.
        self.messages: dict[str, dict[str, Seen]] = {}
        self.read_sent: dict[str, str] = {}  # per place: the newest ``upTo`` sent
        self.read_pending: set[str] = set()  # places with a ``read`` about to go
        self.previous = room  # where lines went before the last /join or /create

    # --- output ---------------------------------------------------------------------------

    def show(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    @staticmethod
    def _time(ts: int) -> str:
        return time.strftime("%H:%M", time.localtime(ts / 1000))

    def show_message(self, event: dict[str, Any]) -> None:
        message_id = str(event.get("id", ""))
        place = self._place_of(event)
        if message_id in self.seen:
            if place is not None:
                self._show_changes(place, message_id, Seen.of(event))
            return
        self.seen.add(message_id)
        when = self._time(int(event.get("ts", 0)))
        seen = Seen.of(event)
        text = "(message deleted)" if seen.deleted else seen.text
        if seen.edited_at is not None and not seen.deleted:
            text += " (edited)"
        if seen.reactions and not seen.deleted:
            text += f"  [{_counts(seen.reactions)}]"
        if place is not None:
            self._remember(place, message_id, seen)
            self.last_ids[place] = max(self.last_ids.get(place, ""), message_id)
            self.first_ids[place] = min(self.first_ids.get(place, message_id), message_id)
        if event.get("type") == "direct":
            self.show(f"{when} [dm] {event.get('from')} -> {event.get('to')}: {text}")
            return
        self.show(f"{when} [{event.get('room')}] {event.get('from')}: {text}")

    # --- changes to messages --------------------------------------------------------------

    def _place_of(self, event: dict[str, Any]) -> str | None:
        """Where a message (or a change to one) is: its room, or "@" the other user."""
        room = event.get("room")
        if isinstance(room, str):
            return room
        sender, to = event.get("from"), event.get("to")
        if isinstance(sender, str) and isinstance(to, str):
            return f"@{to if sender == self.name else sender}"
        return None

    @staticmethod
    def _label(place: str) -> str:
        return "[dm]" if place.startswith("@") else f"[{place}]"

    def _remember(self, place: str, message_id: str, seen: Seen) -> None:
        messages = self.messages.setdefault(place, {})
        messages[message_id] = seen
        if len(messages) > REMEMBERED:
            del messages[min(messages)]

    def _known(self, place: str, message_id: Any) -> Seen | None:
        return self.messages.get(place, {}).get(str(message_id))

    def _show_changes(self, place: str, message_id: str, now: Seen) -> None:
        """A message seen before, again in a history page (a catch-up): what changed since."""
        known = self._known(place, message_id)
        if known is None:
            return
        label = self._label(place)
        if now.deleted and not known.deleted:
            self.show(f"* {label} {known.sender}'s message deleted {known.snippet()}".rstrip())
        elif not now.deleted and now.edited_at is not None and now.edited_at != known.edited_at:
            self.show(f"* {label} {now.sender} edited: {now.text}")
        if not now.deleted and now.reactions != known.reactions:
            about = known.snippet() or "a message"
            self.show(f"* {label} reactions on {about}: {_counts(now.reactions)}")
        self._remember(place, message_id, now)

    def show_change(self, event: dict[str, Any]) -> None:
        """An ``edited``, ``deleted`` or ``reaction`` event."""
        place = self._place_of(event)
        if place is None:
            return
        kind, label = event.get("type"), self._label(place)
        known = self._known(place, event.get("id"))
        if kind == "edited":
            text = str(event.get("text", ""))
            if known is not None:
                known.text, known.edited_at = text, event.get("editedAt")
            self.show(f"* {label} {event.get('from')} edited: {text}")
        elif kind == "deleted":
            author, by = event.get("from"), event.get("by")
            snippet = f" ({known.snippet()})" if known is not None and known.snippet() else ""
            if known is not None:
                known.deleted, known.reactions = True, {}
            whose = "message" if author == by else f"{author}'s message"
            self.show(f"* {label} {whose} deleted by {by}{snippet}")
        else:
            emoji, user, on = str(event.get("emoji")), event.get("user"), bool(event.get("on"))
            users = [str(u) for u in event.get("users", [])]
            before = known.reactions.get(emoji, []) if known is not None else None
            if known is not None:
                if users:
                    known.reactions[emoji] = users
                else:
                    known.reactions.pop(emoji, None)
            if user == self.name and before is not None and sorted(before) == sorted(users):
                already = "you already reacted" if on else "you had not reacted"
                self.show(f"* {label} {already} {emoji} ({len(users)})")
                return
            snippet = known.snippet() if known is not None else ""
            verb, about = ("reacted", " to ") if on else ("took back", " on ")
            about = about + snippet if snippet else ""
            self.show(f"* {label} {user} {verb} {emoji} ({len(users)}){about}")

    # --- rooms, invitations and moderation ------------------------------------------------

    @staticmethod
    def _for_how_long(until: int) -> str:
        minutes = round((until - time.time() * 1000) / 60_000)
        if minutes < 1:
            return "for less than a minute"
        if minutes < 120:
            return f"for {minutes} minute{'' if minutes == 1 else 's'}"
        return f"until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until / 1000))}"

    def show_rooms(self, event: dict[str, Any]) -> None:
        listed = [info for info in event.get("rooms", []) if isinstance(info, dict)]
        if not listed:
            self.show("* no public rooms" + (" after those" if event.get("more") else ""))
            return
        self.show("* public rooms:")
        for info in listed:
            members = info.get("members", 0)
            line = f"*   [{info.get('room')}] {members} member{'' if members == 1 else 's'}"
            if info.get("owner"):
                line += f", owner {info.get('owner')}"
            if info.get("topic"):
                line += f": {info.get('topic')}"
            if info.get("room") in self.rooms:
                line += " (joined)"
            self.show(line)
        if event.get("more"):
            self.show(f"* more: /rooms {listed[-1].get('room')}")

    def show_room_event(self, event: dict[str, Any]) -> None:
        """``roomCreated``, ``invited``, ``roleChanged``, ``kicked`` or ``muted``."""
        kind, room = event.get("type"), str(event.get("room"))
        user, by = event.get("user"), event.get("by")
        if kind == "roomCreated":
            private = " (private: /invite NAME lets people in)" if event.get("private") else ""
            topic = f": {event.get('topic')}" if event.get("topic") else ""
            self.show(f"* created [{room}]{private}{topic}")
        elif kind == "invited":
            if user == self.name and by != self.name:
                self.show(f"* {by} invited you to [{room}]; /join {room} to go in")
            else:
                self.show(f"* invited {user} to [{room}]")
        elif kind == "roleChanged":
            if event.get("role") == "moderator":
                self.show(f"* [{room}] {by} made {user} a moderator")
            else:
                self.show(f"* [{room}] {by} removed {user} as moderator")
        elif kind == "kicked":
            if user == self.name:
                self.rooms.discard(room)
                self.show(f"* {by} kicked you out of [{room}]")
                if self.current == room:
                    self.current = "lobby"
                    self.show("* talking in [lobby]")
            else:
                self.show(f"* [{room}] {by} kicked {user}")
        elif kind == "muted":
            until = event.get("until")
            if isinstance(until, int) and not isinstance(until, bool):
                how_long = self._for_how_long(until)
                if user == self.name:
                    self.show(f"* [{room}] {by} muted you {how_long}")
                else:
                    self.show(f"* [{room}] {by} muted {user} {how_long}")
            else:
                self.show(f"* [{room}] {by} unmuted {'you' if user == self.name else user}")

    # --- read marks ---------------------------------------------------------------------------

    def _mark_read(self) -> None:
        """The place talked in has printed messages newer than its mark: read them (soon, so
        a page of history or a burst is one ``read``)."""
        place = self.current
        if self.ws is None or place in self.read_pending:
            return
        newest = self.last_ids.get(place)
        if not newest or self.read_sent.get(place, "") >= newest:
            return
        if not place.startswith("@") and place not in self.rooms:
            return
        self.read_pending.add(place)
        task = asyncio.ensure_future(self._send_read(place))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_read(self, place: str) -> bool:
        await asyncio.sleep(READ_EVERY)
        self.read_pending.discard(place)
        newest = self.last_ids.get(place)
        if place != self.current or not newest or self.read_sent.get(place, "") >= newest:
            return False
        if not place.startswith("@") and place not in self.rooms:
            return False
        self.read_sent[place] = newest
        where = {"with": place[1:]} if place.startswith("@") else {"room": place}
        return await self.send({"action": "read", **where, "upTo": newest})

    def show_typing(self, event: dict[str, Any]) -> None:
        who = event.get("from")
        if not isinstance(who, str) or who == self.name:
            return
        room = event.get("room")
        if room is None:
            where, suffix = "@", " [dm]"  # to us: direct messages show whatever room is current
        elif room == self.current:
            where, suffix = str(room), ""
        else:
            return
        now = self.clock()
        last = self.typing_shown.get((where, who))
        if last is not None and now - last < TYPING_NOTICE_EVERY:
            return
        if len(self.typing_shown) > 256:
            recent = now - TYPING_NOTICE_EVERY
            self.typing_shown = {k: t for k, t in self.typing_shown.items() if t > recent}
        self.typing_shown[(where, who)] = now
        self.show(f"* {who} is typing…{suffix}")

    # --- connection -------------------------------------------------------------------------

    def connect_url(self) -> str:
        parts = urlsplit(self.url)
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
        if self.name:
            query["name"] = self.name
        extra = sorted(self.rooms - {"lobby"})
        if extra:
            query["room"] = ",".join(extra)
        if self.token:
            query["token"] = self.token
        return urlunsplit(parts._replace(query=urlencode(query, safe=",")))

    async def send(self, frame: dict[str, Any]) -> bool:
        if self.ws is None:
            # Typed while (re)connecting: wait a little for the connection rather than drop it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), 10)
        if self.ws is None:
            self.show("* not connected; try again in a moment")
            return False
        try:
            await self.ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            self.show("* not connected; try again in a moment")
            return False
        return True

    async def run_connection(self) -> None:
        attempt = 0
        while not self.stopping:
            try:
                async with websockets.connect(self.connect_url(), open_timeout=10) as ws:
                    self.ws = ws
                    attempt = 0
                    self.connected.set()
                    await ws.send(json.dumps({"action": "hello"}))
                    async for raw in ws:
                        self.handle(json.loads(raw))
                # The server closed the connection cleanly (e.g. the gateway shutting down):
                # as much a disconnect as a dropped one.
                if not self.stopping:
                    self.show(
                        f"* disconnected (closed by the server, {ws.close_code}); reconnecting…"
                    )
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                self.show(f"* the server refused the connection ({status})")
                if status in (400, 401, 403):
                    self.stopping = True
                    break
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                if attempt == 0:
                    self.show(f"* disconnected ({exc.__class__.__name__}); reconnecting…")
            finally:
                self.ws = None
                self.connected.clear()
            if self.stopping:
                break
            delay = min(MAX_BACKOFF, 0.25 * 2**attempt) * random.uniform(0.75, 1.25)
            attempt += 1
            await asyncio.sleep(delay)

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("message", "direct"):
            self.show_message(event)
            self._mark_read()
        elif kind == "history":
            for message in event.get("messages", []):
                self.show_message(message)
            if event.get("after") and event.get("more") and event.get("messages"):
                frame = {"action": "history", "after": event["messages"][-1]["id"]}
                frame.update(
                    {"with": event["with"]} if "with" in event else {"room": event["room"]}
                )
                self._schedule(frame)
            self._mark_read()
        elif kind == "hello":
            first = self.name is None or not self.last_ids
            self.name = str(event.get("name"))
            self.rooms = set(event.get("rooms", [])) | {"lobby"}
            if first:
                self.show(f"* connected as {self.name}; rooms: {', '.join(sorted(self.rooms))}")
                self.show(f"* talking in [{self.current}]; /help lists commands")
            else:
                self.show("* reconnected; catching up")
            self.read_sent.clear()  # a read sent on the old connection may have been lost
            unread = event.get("unread")
            if first and isinstance(unread, dict):
                for room, count in sorted(unread.items()):
                    if isinstance(count, int) and count > 0:
                        more = "+" if count >= 100 else ""
                        self.show(f"* {count}{more} unread in [{room}]")
            for room in sorted(self.rooms):
                page: dict[str, Any] = {"action": "history", "room": room}
                if room in self.last_ids:
                    # Messages sent at one moment can arrive out of id order: catch up from a
                    # little before the newest id seen; show_message drops what was shown.
                    page["after"] = ids.rewound(self.last_ids[room], CATCH_UP_REWIND_MS)
                else:
                    page["limit"] = 20
                self._schedule(page)
        elif kind in ("joined", "left"):
            if event.get("name") == self.name:
                if kind == "joined":
                    self.rooms.add(str(event["room"]))
                else:
                    self.rooms.discard(str(event["room"]))
            verb = "joined" if kind == "joined" else "left"
            self.show(f"* {event.get('name')} {verb} [{event.get('room')}]")
        elif kind == "renamed":
            if event.get("from") == self.name:
                self.name = str(event.get("to"))
            self.show(f"* {event.get('from')} is now {event.get('to')} in [{event.get('room')}]")
        elif kind == "presence":
            members = ", ".join(event.get("members", []))
            self.show(f"* in [{event.get('room')}]: {members}")
        elif kind == "error":
            self.show(f"! {event.get('message')} ({event.get('code')})")
            action = event.get("action")
            if not self.current.startswith("@") and (
                (action == "join" and self.current not in self.rooms)
                or (action == "createRoom" and self.current != self.previous)
            ):
                # Not let in (private_room), not created (room_exists): lines typed go back
                # where they went before.
                self.current = self.previous if self.previous in self.rooms else "lobby"
                self.show(f"* talking in [{self.current}]")
        elif kind == "typing":
            self.show_typing(event)
        elif kind in ("edited", "deleted", "reaction"):
            self.show_change(event)
        elif kind == "rooms":
            self.show_rooms(event)
        elif kind in ("roomCreated", "invited", "roleChanged", "kicked", "muted"):
            self.show_room_event(event)
        elif kind == "read":
            pass  # our mark moved (here or on another tab of ours): nothing to print
        elif kind == "ack":
            pass  # the message itself follows
        elif "message" in event:
            self.show(f"! gateway: {event['message']}")

    def _schedule(self, frame: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.send(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    _tasks: set[asyncio.Task[bool]] = set()

    # --- input ------------------------------------------------------------------------------

    async def command(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line.strip():
            return
        if not line.startswith("/"):
            if self.current.startswith("@"):
                await self.send({"action": "direct", "to": self.current[1:], "message": line})
            else:
                await self.send({"action": "sendMessage", "room": self.current, "message": line})
            return
        word, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        handlers: dict[str, Callable[[str], Any]] = {
            "join": self._join,
            "leave": self._leave,
            "room": self._switch,
            "who": self._who,
            "dm": self._dm,
            "name": lambda arg: self.send({"action": "setName", "name": arg}),
            "history": self._older,
            "edit": self._edit,
            "delete": self._delete,
            "react": lambda arg: self._react(arg, on=True),
            "unreact": lambda arg: self._react(arg, on=False),
            "rooms": self._rooms,
            "create": lambda arg: self._create(arg, private=False),
            "create-private": lambda arg: self._create(arg, private=True),
            "invite": lambda arg: self._moderate("invite", arg),
            "mod": lambda arg: self._moderate("mod", arg),
            "unmod": lambda arg: self._moderate("unmod", arg),
            "mute": lambda arg: self._moderate("mute", arg),
            "unmute": lambda arg: self._moderate("unmute", arg),
            "kick": lambda arg: self._moderate("kick", arg),
            "help": lambda arg: self._help(),
            "quit": lambda arg: self._quit(),
        }
        handler = handlers.get(word)
        if handler is None:
            self.show(f"! unknown command /{word}; /help lists commands")
            return
        result = handler(rest)
        if asyncio.iscoroutine(result):
            await result

    async def _join(self, room: str) -> None:
        if not room:
            self.show("! usage: /join ROOM")
            return
        self.previous, self.current = self.current, room
        await self.send({"action": "join", "room": room})

    async def _leave(self, room: str) -> None:
        room = room or self.current
        if room.startswith("@"):
            self.show("! usage: /leave ROOM (/room ROOM goes back to a room)")
            return
        await self.send({"action": "leave", "room": room})
        if room == self.current:
            self.current = "lobby"

    def _switch(self, room: str) -> None:
        if room not in self.rooms:
            self.show(f"! you are not in [{room}]; /join {room} first")
            return
        self.current = room
        self.show(f"* talking in [{room}]")
        self._mark_read()

    async def _who(self, room: str) -> None:
        room = room or self.current
        if room.startswith("@"):
            self.show("! usage: /who ROOM")
            return
        await self.send({"action": "who", "room": room})

    async def _dm(self, rest: str) -> None:
        to, _, text = rest.partition(" ")
        if not to:
            self.show("! usage: /dm NAME [TEXT]")
            return
        if not text.strip():
            # Talk to them: lines typed (and /edit, /delete, /react) go to this conversation.
            self.current = f"@{to}"
            self.show(f"* talking to {to} [dm]; /room ROOM goes back to a room")
            if f"@{to}" not in self.first_ids:
                await self.send({"action": "history", "with": to, "limit": 20})
            self._mark_read()
            return
        await self.send({"action": "direct", "to": to, "message": text})

    def _here(self) -> dict[str, str]:
        """The current place, as edit/delete/react frames name it."""
        if self.current.startswith("@"):
            return {"with": self.current[1:]}
        return {"room": self.current}

    def _last(self, *, mine: bool, reacted: str | None = None) -> str | None:
        """The newest message here (not deleted): ``mine``, or carrying our ``reacted``."""
        messages = self.messages.get(self.current, {})
        for message_id in sorted(messages, reverse=True):
            seen = messages[message_id]
            if seen.deleted or (mine and seen.sender != self.name):
                continue
            if reacted is not None and self.name not in seen.reactions.get(reacted, []):
                continue
            return message_id
        return None

    def _where_label(self) -> str:
        return (
            f"your conversation with {self.current[1:]}"
            if self.current.startswith("@")
            else f"[{self.current}]"
        )

    async def _edit(self, text: str) -> None:
        if not text:
            self.show("! usage: /edit TEXT (replaces your last message here)")
            return
        message_id = self._last(mine=True)
        if message_id is None:
            self.show(f"! no message of yours in {self._where_label()} to edit")
            return
        await self.send({"action": "edit", **self._here(), "id": message_id, "message": text})

    async def _delete(self, rest: str) -> None:
        if rest:
            self.show("! usage: /delete (deletes your last message here)")
            return
        message_id = self._last(mine=True)
        if message_id is None:
            self.show(f"! no message of yours in {self._where_label()} to delete")
            return
        await self.send({"action": "delete", **self._here(), "id": message_id})

    async def _react(self, emoji: str, *, on: bool) -> None:
        command = "react" if on else "unreact"
        if not emoji or any(ch.isspace() for ch in emoji):
            self.show(f"! usage: /{command} EMOJI")
            return
        message_id = self._last(mine=False, reacted=None if on else emoji)
        if message_id is None:
            if on:
                self.show(f"! no message in {self._where_label()} to react to")
            else:
                self.show(f"! you have no {emoji} on a message in {self._where_label()}")
            return
        frame = {"action": "react", **self._here(), "id": message_id, "emoji": emoji, "on": on}
        await self.send(frame)

    async def _rooms(self, after: str) -> None:
        if " " in after:
            self.show("! usage: /rooms [AFTER] (the next page starts after that room)")
            return
        frame: dict[str, Any] = {"action": "rooms"}
        if after:
            frame["after"] = after
        await self.send(frame)

    async def _create(self, rest: str, *, private: bool) -> None:
        room, _, topic = rest.partition(" ")
        if not room:
            self.show(f"! usage: /create{'-private' if private else ''} ROOM [TOPIC]")
            return
        frame: dict[str, Any] = {"action": "createRoom", "room": room, "private": private}
        if topic.strip():
            frame["topic"] = topic.strip()
        self.previous, self.current = self.current, room  # in it at once, as after /join
        await self.send(frame)

    async def _moderate(self, command: str, rest: str) -> None:
        """/invite, /mod, /unmod, /mute, /unmute or /kick NAME, in the current room."""
        user, _, more = rest.partition(" ")
        more = more.strip()
        usage = f"! usage: /{command} NAME" + (" [MINUTES]" if command == "mute" else "")
        if not user or (more and command != "mute"):
            self.show(usage)
            return
        if self.current.startswith("@"):
            self.show(f"! /{command} acts in a room: /room ROOM first")
            return
        room = self.current
        frame: dict[str, Any]
        if command == "invite":
            frame = {"action": "invite", "room": room, "user": user}
        elif command in ("mod", "unmod"):
            role = "moderator" if command == "mod" else "member"
            frame = {"action": "setRole", "room": room, "user": user, "role": role}
        elif command == "kick":
            frame = {"action": "kick", "room": room, "user": user}
        else:
            minutes = DEFAULT_MUTE_MINUTES if command == "mute" else 0
            if more:
                try:
                    minutes = int(more)
                except ValueError:
                    minutes = -1
                if not 1 <= minutes <= MAX_MUTE_MINUTES:
                    self.show(f"{usage} (MINUTES: a whole number 1-{MAX_MUTE_MINUTES})")
                    return
            frame = {"action": "mute", "room": room, "user": user, "seconds": minutes * 60}
        await self.send(frame)

    async def _older(self, _: str) -> None:
        if self.current.startswith("@"):
            frame: dict[str, Any] = {"action": "history", "with": self.current[1:]}
        else:
            frame = {"action": "history", "room": self.current}
        # Older than the oldest shown of this place (not of every room: that skipped messages).
        oldest = self.first_ids.get(self.current)
        if oldest:
            frame["before"] = oldest
        await self.send(frame)

    def _help(self) -> None:
        self.show(f"* {HELP}")

    async def _quit(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()

    async def run(self, lines: asyncio.Queue[str | None]) -> None:
        connection = asyncio.create_task(self.run_connection())
        try:
            while not self.stopping:
                getter = asyncio.ensure_future(lines.get())
                done, _ = await asyncio.wait(
                    {getter, connection}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    break
                line = getter.result()
                if line is None:
                    await self._quit()
                    break
                await self.command(line)
        finally:
            self.stopping = True
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connection


def _read_stdin(queue: asyncio.Queue[str | None]) -> None:
    """Lines typed go to ``queue`` (None at end of input) from a daemon thread: a readline left
    blocked in asyncio's executor kept /quit from exiting until another line was typed."""
    loop = asyncio.get_running_loop()

    def put(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def pump() -> None:
        for line in iter(sys.stdin.readline, ""):
            put(line)
        put(None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()


def run_client(url: str, *, name: str | None, room: str, token: str | None) -> int:
    async def main() -> None:
        chat = TerminalChat(url, name=name, room=room, token=token)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        _read_stdin(queue)
        await chat.run(queue)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0

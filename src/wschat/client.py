"""``wschat client``: the chat in a terminal, line by line.

Shows each room's recent history, then live messages; lines typed go to the current room.
Commands: ``/join ROOM``, ``/leave [ROOM]``, ``/room ROOM`` (switch), ``/who [ROOM]``,
``/dm NAME TEXT``, ``/name NAME``, ``/history`` (older messages), ``/help``, ``/quit``.
It reconnects with backoff and asks each room for what it missed (``history`` after the last
id it saw), so nothing is lost or shown twice across a reconnect.

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
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from wschat import ids

HELP = __doc__.split("Commands: ", 1)[1].split("It reconnects", 1)[0].strip() if __doc__ else ""
MAX_BACKOFF = 10.0
CATCH_UP_REWIND_MS = 10_000
TYPING_NOTICE_EVERY = 10.0  # seconds between two "is typing" lines for one person in one place


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

    # --- output ---------------------------------------------------------------------------

    def show(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    @staticmethod
    def _time(ts: int) -> str:
        return time.strftime("%H:%M", time.localtime(ts / 1000))

    def show_message(self, event: dict[str, Any]) -> None:
        message_id = str(event.get("id", ""))
        if message_id in self.seen:
            return
        self.seen.add(message_id)
        when = self._time(int(event.get("ts", 0)))
        if event.get("type") == "direct":
            other = event["to"] if event.get("from") == self.name else event.get("from")
            self.last_ids[f"@{other}"] = max(self.last_ids.get(f"@{other}", ""), message_id)
            self.show(f"{when} [dm] {event.get('from')} -> {event.get('to')}: {event.get('text')}")
            return
        room = str(event.get("room"))
        self.last_ids[room] = max(self.last_ids.get(room, ""), message_id)
        self.first_ids[room] = min(self.first_ids.get(room, message_id), message_id)
        self.show(f"{when} [{room}] {event.get('from')}: {event.get('text')}")

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
        elif kind == "history":
            for message in event.get("messages", []):
                self.show_message(message)
            if event.get("after") and event.get("more") and event.get("messages"):
                frame = {"action": "history", "after": event["messages"][-1]["id"]}
                frame.update(
                    {"with": event["with"]} if "with" in event else {"room": event["room"]}
                )
                self._schedule(frame)
        elif kind == "hello":
            first = self.name is None or not self.last_ids
            self.name = str(event.get("name"))
            self.rooms = set(event.get("rooms", [])) | {"lobby"}
            if first:
                self.show(f"* connected as {self.name}; rooms: {', '.join(sorted(self.rooms))}")
                self.show(f"* talking in [{self.current}]; /help lists commands")
            else:
                self.show("* reconnected; catching up")
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
        elif kind == "typing":
            self.show_typing(event)
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
            await self.send({"action": "sendMessage", "room": self.current, "message": line})
            return
        word, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        handlers: dict[str, Callable[[str], Any]] = {
            "join": self._join,
            "leave": self._leave,
            "room": self._switch,
            "who": lambda arg: self.send({"action": "who", "room": arg or self.current}),
            "dm": self._dm,
            "name": lambda arg: self.send({"action": "setName", "name": arg}),
            "history": self._older,
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
        self.current = room
        await self.send({"action": "join", "room": room})

    async def _leave(self, room: str) -> None:
        room = room or self.current
        await self.send({"action": "leave", "room": room})
        if room == self.current:
            self.current = "lobby"

    def _switch(self, room: str) -> None:
        if room not in self.rooms:
            self.show(f"! you are not in [{room}]; /join {room} first")
            return
        self.current = room
        self.show(f"* talking in [{room}]")

    async def _dm(self, rest: str) -> None:
        to, _, text = rest.partition(" ")
        if not to or not text.strip():
            self.show("! usage: /dm NAME TEXT")
            return
        await self.send({"action": "direct", "to": to, "message": text})

    async def _older(self, _: str) -> None:
        frame: dict[str, Any] = {"action": "history", "room": self.current}
        # Older than the oldest shown of this room (not of every room: that skipped messages).
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

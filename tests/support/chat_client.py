"""A chat client for tests: one WebSocket connection speaking docs/protocol.md.

It connects with ``?name=&room=&token=``, sends actions as JSON frames and reads the server's
events. Reading is by type: ``next("ack")`` returns the first event of that type not read yet,
keeping the others unread for later calls, so a test states what it expects without depending on
how events of different kinds interleave. ``sync()`` is a barrier: it returns whatever arrived
that the test did not read, which is how a test shows a client was sent nothing.

Every wait has a deadline (``TIMEOUT`` unless told otherwise) and fails with what did arrive.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0
Event = dict[str, Any]
_client_ids = itertools.count(1)


def chat_url(
    url: str,
    *,
    name: str | None = None,
    rooms: Iterable[str] = (),
    token: str | None = None,
) -> str:
    """``url`` with the query docs/protocol.md defines; rooms are comma separated (``a,b``)."""
    query: dict[str, str] = {}
    if name is not None:
        query["name"] = name
    rooms = list(rooms)
    if rooms:
        query["room"] = ",".join(rooms)
    if token is not None:
        query["token"] = token
    return f"{url}?{urlencode(query, safe=',')}" if query else url


class ChatClient:
    """One chat connection and the events it has received."""

    def __init__(
        self,
        ws: ClientConnection,
        label: str = "client",
        closer: Callable[[], object] | None = None,
    ) -> None:
        self.ws = ws
        self.label = label
        self._closer = closer or ws.close
        self.received: list[Event] = []  # every event, in arrival order
        self._unread: list[Event] = []

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        name: str | None = None,
        rooms: Iterable[str] = (),
        token: str | None = None,
        timeout: float = TIMEOUT,
        **kwargs: Any,
    ) -> ChatClient:
        """Open a connection; a refused handshake raises websockets' ``InvalidStatus``."""
        kwargs.setdefault("close_timeout", 2)
        kwargs.setdefault("ping_interval", None)  # only the test's own frames
        # Keep reading the socket however many events the test leaves unread: with websockets'
        # default (16) a busy client stops reading and then misses the server's close frame.
        kwargs.setdefault("max_queue", None)
        # websockets wants connect() entered as a context manager; the client's close exits it.
        stack = contextlib.ExitStack()
        ws = stack.enter_context(
            connect(
                chat_url(url, name=name, rooms=rooms, token=token), open_timeout=timeout, **kwargs
            )
        )
        return cls(ws, name or "guest", stack.close)

    # --- sending -------------------------------------------------------------------------------

    def send(self, action: str, **fields: Any) -> None:
        """Send ``{"action": action, **fields}``; a trailing ``_`` is dropped from a field's
        name, for fields that are Python keywords (``with_="bob"`` sends ``"with": "bob"``)."""
        frame = {"action": action, **{key.rstrip("_"): value for key, value in fields.items()}}
        self.ws.send(json.dumps(frame))

    def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (not necessarily JSON)."""
        self.ws.send(data)

    def request(self, action: str, answer: str, timeout: float = TIMEOUT, **fields: Any) -> Event:
        """Send an action and return the next unread event of type ``answer`` (which may have
        arrived before this action was sent, if the test left one unread)."""
        self.send(action, **fields)
        return self.next(answer, timeout)

    def say(self, text: str, room: str = "lobby", timeout: float = TIMEOUT) -> Event:
        """Send ``text`` to ``room`` with a clientId of its own; return the ``ack`` carrying that
        clientId (so the message is stored)."""
        client_id = f"{self.label}-{next(_client_ids)}"
        self.send("sendMessage", room=room, message=text, clientId=client_id)
        return self.next("ack", timeout, clientId=client_id)

    def hello(self) -> Event:
        return self.request("hello", "hello")

    # --- receiving -----------------------------------------------------------------------------

    def next(self, type: str, timeout: float = TIMEOUT, **fields: Any) -> Event:
        """The first unread event of ``type`` whose ``fields`` have the given values (a trailing
        ``_`` dropped, as in ``send``); it waits up to ``timeout`` seconds for one to arrive."""
        wanted = {key.rstrip("_"): value for key, value in fields.items()}

        def matches(event: Event) -> bool:
            return event.get("type") == type and all(
                event.get(key) == value for key, value in wanted.items()
            )

        for index, pending in enumerate(self._unread):
            if matches(pending):
                return self._unread.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                raw = self.ws.recv(timeout=remaining)
            except TimeoutError:
                raise AssertionError(
                    f"{self.label}: no {type!r} event {wanted or ''} within {timeout}s; "
                    f"unread: {self._unread}"
                ) from None
            event: Event = json.loads(raw)
            self.received.append(event)
            if matches(event):
                return event
            self._unread.append(event)

    def collect(
        self, type: str, count: int, timeout: float = TIMEOUT, **fields: Any
    ) -> list[Event]:
        """The next ``count`` events of ``type``, all within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return [
            self.next(type, max(0.0, deadline - time.monotonic()), **fields) for _ in range(count)
        ]

    def error(self, timeout: float = TIMEOUT) -> Event:
        return self.next("error", timeout)

    def unread(self) -> list[Event]:
        """The events received but not read yet (no waiting); they count as read now."""
        unread, self._unread = self._unread, []
        return unread

    def sync(self, timeout: float = TIMEOUT) -> list[Event]:
        """Every event not read yet, once the server has answered a ``hello`` sent now.

        Events the gateway posted to this connection before that answer are on the socket ahead
        of it, so an empty list shows the client was sent nothing else (the ``hello`` itself is
        an action: it counts against the connection's rate limit).
        """
        earlier, self._unread = self._unread, []
        self.send("hello")
        self.next("hello", timeout)
        unread, self._unread = earlier + self._unread, []
        return unread

    # --- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close with a close frame (code 1000), as a browser tab does."""
        self._closer()

    def drop(self) -> None:
        """Drop the TCP connection with no close frame, as a client whose network went away."""
        sock = self.ws.socket
        # Linger 0: the kernel resets the connection instead of closing it in order.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.close_socket()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ChatClient {self.label}>"

"""A model of API Gateway's @connections endpoint at account scale, for W6 (bench/README.md).

One process, one asyncio loop, HTTP/1.1 keep-alive parsed by hand (a raw ``asyncio.Protocol``:
a few tens of microseconds of CPU per request, so one core answers thousands a second):

- ``POST /{stage}/@connections/{id}``: one **token bucket** shared by every caller (``--rate``
  posts a second, ``--burst`` saved up; 0 = unthrottled) decides on arrival: past it, at once,
  429 with ``x-amzn-ErrorType: LimitExceededException`` and ``{"message":"Limit Exceeded"}``
  (what API Gateway answers past the account's 10,000/s with a 5,000 burst). An admitted post
  is answered after ``--latency-ms`` (concurrently, a timer per post): 200, or 410
  ``GoneException`` for the ids in the gone share (``--gone-share``, chosen by a hash of the
  id, so the benchmark knows in advance which ids are gone: :func:`is_gone`). SigV4 is not
  verified (tests/support/connections_endpoint.py does that; here it would cost CPU the
  model must not spend).
- Counted per room (the ``"room"`` field of the JSON frame posted): posts answered 200 per id
  (distinct ids delivered, and duplicates: second and later 200s to one id), ids answered 410,
  429s, the first and last 200 (``time.time()``, the moment the answer is sent) and 200s per
  quarter second for plots.
- ``GET /_stats``: the counts as JSON, with this process's CPU seconds; ``POST /_reset`` with
  an optional JSON body ``{"rate", "burst", "latency_ms", "gone_share"}``: forget the counts
  and apply the settings given.

    .venv/bin/python bench/model_endpoint.py --port 0 --rate 10000 --burst 5000

prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import zlib
from typing import Any
from urllib.parse import unquote

GONE_BUCKETS = 100_000


def is_gone(connection_id: str, share: float) -> bool:
    """Whether the model answers 410 for this id: a fixed share of ids, chosen by CRC-32."""
    if share <= 0:
        return False
    return zlib.crc32(connection_id.encode()) % GONE_BUCKETS < share * GONE_BUCKETS


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Room:
    __slots__ = ("delivered", "first", "gone", "last", "posts", "throttled", "timeline")

    def __init__(self) -> None:
        self.delivered: dict[str, int] = {}  # id -> 200s
        self.gone: set[str] = set()
        self.throttled = 0
        self.posts = 0
        self.first = 0.0
        self.last = 0.0
        self.timeline: dict[int, int] = {}  # quarter second since the epoch -> 200s

    def summary(self) -> dict[str, Any]:
        unique = len(self.delivered)
        return {
            "posts": self.posts,
            "delivered": unique,
            "duplicates": sum(self.delivered.values()) - unique,
            "gone": len(self.gone),
            "throttled": self.throttled,
            "first": self.first,
            "last": self.last,
            "timeline": sorted(self.timeline.items()),
        }


class Model:
    def __init__(self, rate: float, burst: float, latency_ms: float, gone_share: float) -> None:
        self.configure(rate=rate, burst=burst, latency_ms=latency_ms, gone_share=gone_share)

    def configure(self, **settings: Any) -> None:
        for key in ("rate", "burst", "latency_ms", "gone_share"):
            if settings.get(key) is not None:
                setattr(self, key, float(settings[key]))
        self.latency = self.latency_ms / 1000
        self.tokens = self.burst
        self.at = time.monotonic()
        self.rooms: dict[str, Room] = {}
        self.frames: dict[bytes, Room] = {}  # frame body -> its room (one body per room)
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.reset_at = time.time()
        self.cpu_at_reset = _cpu_seconds()

    def room_of(self, body: bytes) -> Room:
        room = self.frames.get(body)
        if room is None:
            try:
                name = str(json.loads(body).get("room") or "")
            except (ValueError, AttributeError):
                name = ""
            room = self.rooms.setdefault(name, Room())
            if len(self.frames) < 10_000:
                self.frames[body] = room
        return room

    def admit(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if tokens >= 1:
            self.tokens = tokens - 1
            return True
        self.tokens = tokens
        return False

    def stats(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "latency_ms": self.latency_ms,
            "gone_share": self.gone_share,
            "requests": self.requests,
            "max_in_flight": self.max_in_flight,
            "cpu": _cpu_seconds() - self.cpu_at_reset,
            "since": self.reset_at,
            "now": time.time(),
            "rooms": {name: room.summary() for name, room in self.rooms.items()},
        }


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _error(status: str, error_type: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"x-amzn-ErrorType: {error_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


THROTTLED = _error("429 Too Many Requests", "LimitExceededException", "Limit Exceeded")
GONE = _error("410 Gone", "GoneException", "")
NOT_FOUND = _error("404 Not Found", "NotFoundException", "not found")


def _json(document: Any) -> bytes:
    body = json.dumps(document).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class HttpProtocol(asyncio.Protocol):
    """One keep-alive connection: requests parsed from the buffer, answered in order (urllib3
    sends the next request only after the answer, so answers never overtake each other)."""

    def __init__(self, model: Model, loop: asyncio.AbstractEventLoop) -> None:
        self.model = model
        self.loop = loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            line_end = head.find(b"\r\n")
            request_line = head[: line_end if line_end >= 0 else len(head)]
            method, _, rest = request_line.partition(b" ")
            target = rest.partition(b" ")[0].decode("latin-1")
            self.handle(method, target, body)

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)

    def handle(self, method: bytes, target: str, body: bytes) -> None:
        model = self.model
        marker = target.find("/@connections/")
        if method == b"POST" and marker >= 0:
            model.requests += 1
            room = model.room_of(body)
            room.posts += 1
            if not model.admit():
                room.throttled += 1
                self.send(THROTTLED)
                return
            connection_id = unquote(target[marker + 14 :])
            model.in_flight += 1
            if model.in_flight > model.max_in_flight:
                model.max_in_flight = model.in_flight
            if model.latency > 0:
                self.loop.call_later(model.latency, self.answer, room, connection_id)
            else:
                self.answer(room, connection_id)
            return
        if target.startswith("/_stats"):
            self.send(_json(model.stats()))
        elif target.startswith("/_reset") and method == b"POST":
            settings = json.loads(body) if body.strip() else {}
            model.configure(**settings)
            self.send(_json(model.stats()))
        else:
            self.send(NOT_FOUND)

    def answer(self, room: Room, connection_id: str) -> None:
        model = self.model
        model.in_flight -= 1
        if is_gone(connection_id, model.gone_share):
            room.gone.add(connection_id)
            self.send(GONE)
            return
        now = time.time()
        delivered = room.delivered
        delivered[connection_id] = delivered.get(connection_id, 0) + 1
        if not room.first:
            room.first = now
        room.last = now
        quarter = int(now * 4)
        room.timeline[quarter] = room.timeline.get(quarter, 0) + 1
        self.send(OK)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rate", type=float, default=10_000, help="posts/s; 0 = unthrottled")
    p.add_argument("--burst", type=float, default=5_000)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--gone-share", type=float, default=0.01, help="share of ids answered 410")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    model = Model(args.rate, args.burst, args.latency_ms, args.gone_share)
    server = await loop.create_server(
        lambda: HttpProtocol(model, loop), args.host, args.port, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Just enough HTTP/1.1 for the gateway's one port: request heads, bodies, plain responses.

The port serves WebSocket upgrades (handed to websockets' Sans-I/O protocol) and whatever
plain HTTP is mounted in its ``HttpRoutes``: the @connections management API, SQS, a health
check, and for the chat its page.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 256 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    head: bytes  # the raw head, replayed into websockets for an upgrade
    body: bytes = b""
    path: str = ""  # percent-decoded
    raw_path: str = ""
    query: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    @property
    def is_websocket_upgrade(self) -> bool:
        upgrade = (self.header("Upgrade") or "").lower()
        return self.method == "GET" and upgrade == "websocket"

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(buffer: bytes | bytearray) -> tuple[Request, int] | None:
    """Parse a request head from ``buffer``: (request without body, head length) or None if
    more bytes are needed. Raises BadRequest on garbage."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest(431, "request head too large")
        return None
    if end + 4 > MAX_HEAD_BYTES:
        raise BadRequest(431, "request head too large")
    head = bytes(buffer[: end + 4])
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1.") or not method.isalpha():
        raise BadRequest(400, "malformed request line")
    if any(ch < "!" or ch == "\x7f" for ch in target):  # RFC 9112 3.2: no controls in a target
        raise BadRequest(400, "malformed request target")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers.append((name, value.strip()))
    # An origin-form target ("/path?query") is split by hand: urlsplit would read "//a/b" as
    # a host, and raises on some malformed targets.
    raw_path, _, raw_query = target.partition("?")
    raw_path = raw_path.partition("#")[0]
    if not raw_path.startswith("/"):
        try:
            parts = urlsplit(target)
        except ValueError:
            raise BadRequest(400, "malformed request target") from None
        raw_path, raw_query = parts.path or "/", parts.query
    request = Request(
        method=method,
        target=target,
        version=version,
        headers=headers,
        head=head,
        path=unquote(raw_path),
        raw_path=raw_path,
        query=parse_qsl(raw_query, keep_blank_values=True),
    )
    return request, len(head)


def body_length(request: Request) -> int:
    if request.header("Transfer-Encoding"):
        raise BadRequest(411, "chunked bodies are not supported; send Content-Length")
    raw = request.header("Content-Length") or "0"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise BadRequest(400, "invalid Content-Length")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "request body too large")
    return length


@functools.lru_cache(maxsize=2)
def _date_of_second(second: int) -> str:
    return formatdate(second, usegmt=True)


def http_date() -> str:
    """Now as an HTTP Date header value, formatted once a second."""
    return _date_of_second(int(time.time()))


def response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    keep_alive: bool = True,
) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        f"Date: {http_date()}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    if status >= 200 and status != 204:  # RFC 9110 8.6: no Content-Length on 1xx and 204
        lines.append(f"Content-Length: {len(body)}")
    if body or status not in (204, 304):
        lines.append(f"Content-Type: {content_type}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, payload: object, **kwargs: object) -> bytes:
    return response(status, json.dumps(payload).encode(), **kwargs)  # type: ignore[arg-type]


# Answers one request (the peer's address is for access checks): the whole response's bytes.
Handler = Callable[[Request, str], Awaitable[bytes]]


class HttpRoutes:
    """Path prefix -> handler; the longest prefix that matches a request's raw path wins
    (``/a`` matches ``/a`` and ``/a/...``, ``/`` everything); no match is 404."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, Handler]] = []

    def mount(self, prefix: str, handler: Handler) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"a mount point starts with /: {prefix!r}")
        self._routes = [(p, h) for p, h in self._routes if p != prefix]
        self._routes.append((prefix.rstrip("/") or "/", handler))
        self._routes.sort(key=lambda route: len(route[0]), reverse=True)

    def handler_for(self, raw_path: str) -> Handler | None:
        for prefix, handler in self._routes:
            if prefix == "/" or raw_path == prefix or raw_path.startswith(prefix + "/"):
                return handler
        return None

    async def handle(self, request: Request, peer: str) -> bytes:
        handler = self.handler_for(request.raw_path)
        if handler is None:
            return json_response(404, {"message": "Not Found"})
        return await handler(request, peer)

"""The gateway's own opening handshake (wschat.gateway.handshake) against websockets' checks:
it accepts exactly the upgrades websockets accepts, with the same Sec-WebSocket-Accept, and
leaves every other head to websockets."""

from __future__ import annotations

import pytest
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol

from wschat.gateway import handshake, http

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def head(headers: list[tuple[str, str]], request_line: str = "GET /local HTTP/1.1") -> bytes:
    lines = [request_line, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def ours(raw: bytes) -> str | None:
    parsed = http.parse_head(raw)
    assert parsed is not None
    return handshake.accept_key(parsed[0])


def websockets_accept(raw: bytes) -> str | None:
    protocol = ServerProtocol()
    protocol.receive_data(raw)
    events = protocol.events_received()
    if not events or not isinstance(events[0], WsRequest):
        return None
    response = protocol.accept(events[0])
    return response.headers["Sec-WebSocket-Accept"] if response.status_code == 101 else None


def replaced(name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(n, v) for n, v in GOOD if n != name]
    return kept if value is None else [*kept, (name, value)]


VARIANTS = {
    "plain": head(GOOD),
    "header names in any case": head([(n.lower(), v) for n, v in GOOD]),
    "Connection with other options": head(replaced("Connection", "keep-alive, Upgrade")),
    "Upgrade in capitals": head(replaced("Upgrade", "WebSocket")),
    "extensions and a subprotocol offered": head(
        [
            *GOOD,
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Sec-WebSocket-Protocol", "chat"),
        ]
    ),
    "no key": head(replaced("Sec-WebSocket-Key", None)),
    "a key of 5 bytes": head(replaced("Sec-WebSocket-Key", "c2hvcnQ=")),
    "a key that is not base64": head(replaced("Sec-WebSocket-Key", "not base64 at all!!!")),
    "two keys": head([*GOOD, ("Sec-WebSocket-Key", KEY)]),
    "version 8": head(replaced("Sec-WebSocket-Version", "8")),
    "no version": head(replaced("Sec-WebSocket-Version", None)),
    "two versions": head([*GOOD, ("Sec-WebSocket-Version", "13")]),
    "no Connection upgrade": head(replaced("Connection", "keep-alive")),
    "two Upgrade protocols": head(replaced("Upgrade", "websocket, h2c")),
    "Upgrade to something else": head(replaced("Upgrade", "h2c")),
    "HTTP/1.0": head(GOOD, "GET /local HTTP/1.0"),
    "a header name with a slash": head([*GOOD, ("X/Y", "1")]),
    "a control character in a value": head([*GOOD, ("X-Y", "a\x01b")]),
    # websockets reads lines of at most 8,192 bytes, CRLF included.
    "a request line of 8,192 bytes": head(GOOD, "GET /" + "a" * 8176 + " HTTP/1.1"),
    "a request line of 8,193 bytes": head(GOOD, "GET /" + "a" * 8177 + " HTTP/1.1"),
    "a header of 9,000 bytes": head([*GOOD, ("X-Big", "b" * 9000)]),
    "129 headers": head([*GOOD, *[("X-H", "v")] * 124]),
    "128 headers": head([*GOOD, *[("X-H", "v")] * 123]),
}


@pytest.mark.parametrize("raw", VARIANTS.values(), ids=VARIANTS.keys())
def test_accepts_exactly_what_websockets_accepts_with_the_same_accept_key(raw: bytes) -> None:
    theirs = websockets_accept(raw)
    mine = ours(raw)
    if theirs is None:
        assert mine is None  # left to websockets, which refuses it
    else:
        assert mine == theirs


def test_the_101_carries_the_accept_key_and_connects_headers() -> None:
    response = handshake.switching_protocols(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Thu, 03 Dec 2026 17:00:00 GMT",
        {"Sec-WebSocket-Protocol": "chat"},
    )
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" in response
    assert response.endswith(b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n")


@pytest.mark.parametrize(
    "headers", [{"X-Evil": "a\r\nSet-Cookie: b=c"}, {"Bad Name": "x"}, {"X": "line\nbreak"}]
)
def test_a_header_http_cannot_carry_is_refused_not_written(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        handshake.switching_protocols("key", "date", headers)

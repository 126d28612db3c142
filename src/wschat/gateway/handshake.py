"""The opening handshake of a well-formed RFC 6455 upgrade, from the head already parsed.

The gateway parses every request head once (``http.parse_head``). For an upgrade that is
plainly valid (GET over HTTP/1.1, one ``Upgrade: websocket``, ``Connection`` listing
``upgrade``, one 16-byte ``Sec-WebSocket-Key``, one ``Sec-WebSocket-Version: 13``, header
names and values as RFC 9110 allows, lines and headers within websockets' limits),
``accept_key`` gives the ``Sec-WebSocket-Accept``
value and ``switching_protocols`` the 101 response, so websockets does not parse the same
head a second time and build the answer header by header: a connect storm spends its time
in ``$connect``, not in reading each head twice. Anything else (``accept_key`` is None) goes
through websockets' own checks, which answer it with the right error (400, 405, 426, ...).
"""

from __future__ import annotations

import base64
import binascii
import re

from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.utils import accept_key as _accept_of

from wschat.gateway.http import Request

# RFC 9110 5.1 and 5.5: a header name is a token; a value holds no controls but tab.
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def accept_key(request: Request) -> str | None:
    """``Sec-WebSocket-Accept`` for a plainly valid upgrade; None for anything websockets
    should look at (and refuse)."""
    if request.method != "GET" or request.version != "HTTP/1.1":
        return None
    # websockets' own limits on a head: longer lines and more headers are its to refuse.
    if len(request.headers) > MAX_NUM_HEADERS:
        return None
    if max(len(line) for line in request.head.split(b"\r\n")) + 2 > MAX_LINE_LENGTH:
        return None
    key: list[str] = []
    version: list[str] = []
    upgrade: list[str] = []
    connection_upgrade = False
    for name, value in request.headers:
        if _TOKEN.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            return None
        lowered = name.lower()
        if lowered == "sec-websocket-key":
            key.append(value)
        elif lowered == "sec-websocket-version":
            version.append(value)
        elif lowered == "upgrade":
            upgrade.append(value)
        elif lowered == "connection":
            options = (option.strip().lower() for option in value.split(","))
            connection_upgrade = connection_upgrade or "upgrade" in options
    if not connection_upgrade or len(key) != 1 or version != ["13"]:
        return None
    if len(upgrade) != 1 or upgrade[0].lower() != "websocket":
        return None
    try:
        raw_key = base64.b64decode(key[0].encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    if len(raw_key) != 16:
        return None
    return _accept_of(key[0])


def switching_protocols(accept: str, date: str, headers: dict[str, str]) -> bytes:
    """The 101 response: websockets' headers (Date, Upgrade, Connection, the accept key) and
    those ``$connect`` set (e.g. ``Sec-WebSocket-Protocol``)."""
    for name, value in headers.items():
        if _TOKEN.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            raise ValueError(f"$connect set a header HTTP cannot carry: {name!r}")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        f"Date: {date}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

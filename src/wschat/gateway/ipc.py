"""Framing between the gateway and its function workers: 4-byte big-endian length, then JSON.

Messages (``op``):

* gateway → worker: ``invoke`` {id, event, context}; ``reply`` {id, ...} answering a channel call
* worker → gateway: ``result`` {id, ok, value | error, exiting?}; ``post_many`` /
  ``post_batch`` / ``get`` / ``delete`` {id, ...}, the local fast path's calls (Python workers),
  answered with ``reply``. ``exiting``: the worker ends after this answer, as Lambda's Node.js
  runtime does after an uncaught error.
* worker → gateway, once: ``ready`` {ok}, false when the handler could not be loaded.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

HEADER = struct.Struct(">I")


def encode(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":"), default=str).encode("utf-8")
    return HEADER.pack(len(payload)) + payload


class Decoder:
    """Turns a byte stream back into messages, whatever the chunking."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            messages.append(json.loads(bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return messages


def pack_data(data: bytes) -> dict[str, str]:
    """Bytes for a JSON message: text when it is UTF-8 (the usual case), base64 otherwise."""
    try:
        return {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data_b64": base64.b64encode(data).decode("ascii")}


def unpack_data(message: dict[str, Any]) -> bytes:
    if "data_b64" in message:
        return base64.b64decode(message["data_b64"])
    return str(message.get("data", "")).encode("utf-8")

"""Framing between the gateway and its function workers: 4-byte big-endian length, then JSON.

Messages (``op``):

* gateway → worker: ``invoke`` {id, event, context, connections?}; ``connections`` (Python
  workers): what opened and closed since the worker was last told, or every open id
  (``ConnectionRegistry.changes_since``).
* worker → gateway: ``result`` {id, ok, value | error, exiting?}; ``post_many`` {ids, data} /
  ``post_batch`` {batches}, the local fast path's posts (Python workers), which get no answer:
  the worker knows from ``connections`` who is gone. ``exiting``: the worker ends after this
  answer, as Lambda's Node.js runtime does after an uncaught error.
* worker → gateway, once: ``ready`` {ok}, false when the handler could not be loaded.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")

# orjson: every invocation crosses the pipe as JSON (its event in, its posts and result out);
# the standard library's encoder and decoder cost W4 about 5% of its peak (docs/benchmarks.md).
# What orjson refuses (lone surrogates, integers past 64 bits) falls back
# to the standard library, which takes them; such a payload starts with a space (JSON
# whitespace), so the other end decodes it with the standard library too (orjson would read a
# big integer as a float).
_STDLIB = b" "


def encode(message: dict[str, Any]) -> bytes:
    try:
        payload = orjson.dumps(message, default=str)
    except (orjson.JSONEncodeError, TypeError):
        payload = _STDLIB + json.dumps(message, separators=(",", ":"), default=str).encode()
    return HEADER.pack(len(payload)) + payload


def _decode(payload: bytes) -> Any:
    if payload[:1] == _STDLIB:
        return json.loads(payload)
    return orjson.loads(payload)


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
            messages.append(_decode(bytes(self._buffer[HEADER.size : end])))
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

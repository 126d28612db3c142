"""Message ids that sort by time: 50 bits of milliseconds then 80 random bits, Crockford base32.

Ids made in one process are strictly increasing even within one millisecond (the random part is
incremented), so ``sorted(ids)`` is the order the messages were accepted in.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(now_ms: int | None = None) -> str:
    """A 26-character id, greater than every id this process made before."""
    global _last_ms, _last_random
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rnd = _last_random + 1
        else:
            rnd = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms, _last_random = ms, rnd
    return _encode(ms, 10) + _encode(rnd, 16)


def id_time_ms(message_id: str) -> int:
    """The millisecond timestamp an id was made at."""
    value = 0
    for char in message_id[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def next_id(last_id: str | None, now_ms: int | None = None) -> str:
    """A new id greater than ``last_id``: time-based, or ``last_id`` + 1 when the clock is
    behind it (another process made it in the same millisecond, or clocks disagree)."""
    candidate = new_id(now_ms)
    if last_id is None or candidate > last_id:
        return candidate
    value = 0
    for char in last_id:
        value = value * 32 + _ALPHABET.index(char)
    return _encode(value + 1, len(last_id))


def rewound(message_id: str, ms: int) -> str:
    """The smallest id of the moment ``ms`` before ``message_id``'s: ``history`` after it
    returns everything from that moment on (clients catch up from a little before the newest
    id they saw, because messages sent at one moment can arrive out of id order)."""
    return _encode(max(0, id_time_ms(message_id) - ms), 10) + "0" * (len(message_id) - 10)

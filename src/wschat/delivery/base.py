"""Delivery port: posting to WebSocket connections, as API Gateway's @connections API does.

Exception tree::

    DeliveryError            a post, get or delete failed for a reason other than the ones below
    └── GoneConnection       the connection is closed or unknown (API Gateway's 410 GoneException)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class DeliveryError(Exception):
    """Posting to, reading or closing a connection failed."""


class GoneConnection(DeliveryError):
    """The connection no longer exists (410 GoneException); its record should be deleted."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id


@dataclass(slots=True)
class FanoutResult:
    """How one post to many connections went."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # connection id -> reason

    def merge(self, other: FanoutResult) -> None:
        self.delivered += other.delivered
        self.gone.extend(other.gone)
        self.failed.update(other.failed)


# Recipients one invocation posts to itself through API Gateway before a room is queued
# (docs/scaling.md): ~0.16 s at 20 ms a post from 64 threads.
API_GATEWAY_INLINE_LIMIT = 500


class Sender(Protocol):
    """Sends to connections of one API stage.

    ``inline_limit``: how many recipients of one event the invocation that produced it should
    post to itself before it hands the room to the fan-out queue; None for any number.
    """

    inline_limit: int | None

    def post(self, connection_id: str, data: bytes) -> None:
        """Send one message; raises GoneConnection or DeliveryError."""

    def post_many(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> FanoutResult:
        """Send the same bytes to many connections; one recipient's failure never stops the
        rest. With ``deadline`` (a ``time.monotonic()`` value: a delivery job's time) a
        sender that meets throttling retries until it; without, it gives up quickly."""

    def post_batch(self, batches: Sequence[tuple[Sequence[str], bytes]]) -> list[FanoutResult]:
        """Send several (recipients, bytes) batches, in order, in as few calls as the sender
        can (one for the local gateway's fast path); one result per batch. ``post_many_each``
        is the plain way."""


def post_many_each(
    sender: Sender, batches: Sequence[tuple[Sequence[str], bytes]]
) -> list[FanoutResult]:
    """``Sender.post_batch`` for a sender with nothing better: ``post_many`` batch by batch."""
    return [sender.post_many(connection_ids, data) for connection_ids, data in batches]

"""What the DynamoDB record modules send their requests through.

``DynamoDBStore`` (``wschat.storage.dynamodb``) is one class over five tables, written record by
record: connections and memberships in ``dynamodb``, messages in ``dynamodb_messages``, rooms
and room users in ``dynamodb_rooms``. Each record module is a mixin of ``Records`` and sends
through the methods below, which the store implements at the botocore boundary: the record
modules build requests and read replies, and never see a botocore exception (nor import
botocore: only ``dynamodb`` does, see tests/unit/test_cold_start.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from wschat.storage.base import TableNames

OPTIMISTIC_ATTEMPTS = 16  # tries of read, compute, conditional write on one hot item


def pause(attempt: int) -> None:
    """Full-jitter backoff before trying a contended write again (at most 50 ms)."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))


class Records:
    """The requests a record module may send; ``DynamoDBStore`` implements them."""

    tables: TableNames

    def _call(self, operation: str, what: str, **request: Any) -> dict[str, Any]:
        """``client.<operation>(**request)``'s reply; errors as the store's (``what`` names
        the request in their message)."""
        raise NotImplementedError

    def _conditional(self, operation: str, what: str, **request: Any) -> dict[str, Any] | None:
        """A write with a ConditionExpression: its reply, or None when the condition failed."""
        raise NotImplementedError

    def _transact(self, what: str, items: Sequence[dict[str, Any]]) -> tuple[str, ...]:
        """TransactWriteItems: () when it committed, else one cancellation reason per item."""
        raise NotImplementedError

    def _batch_get(
        self, table: str, keys: Sequence[dict[str, Any]], **options: Any
    ) -> list[dict[str, Any]]:
        """BatchGetItem of ``keys`` (in chunks of 100, unprocessed keys asked again): the
        items found, in no particular order. ``options`` go with each table's request."""
        raise NotImplementedError

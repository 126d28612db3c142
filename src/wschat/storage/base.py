"""Storage ports: what the chat needs from a store, whatever backs it (SQLite or DynamoDB).

Exception tree::

    StoreError                 anything the store could not do
    └── StoreUnavailable       the backing service cannot be reached; retrying later may work

Adapters turn their driver's errors into these with ``raise ... from exc`` so callers never see
``botocore`` or ``sqlite3`` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

# API Gateway closes every connection after 2 hours; records live a little longer so a missed
# $disconnect (a crashed Lambda, a throttled invocation) is cleaned up by the table's TTL.
CONNECTION_TTL_SECONDS = 2 * 60 * 60 + 10 * 60


@dataclass(frozen=True, slots=True)
class Connection:
    """One open WebSocket connection as the store keeps it."""

    connection_id: str
    connected_at: int  # epoch milliseconds, as API Gateway's requestContext.connectedAt
    expires_at: int  # epoch seconds: the TTL attribute

    @classmethod
    def opened(cls, connection_id: str, connected_at_ms: int) -> Connection:
        return cls(
            connection_id=connection_id,
            connected_at=connected_at_ms,
            expires_at=connected_at_ms // 1000 + CONNECTION_TTL_SECONDS,
        )


class StoreError(Exception):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The backing service cannot be reached or refused for capacity; retrying later may work."""


class ConnectionStore(Protocol):
    """The table of open connections (``websocket-connections``, keyed by ``connectionId``)."""

    def put_connection(self, connection: Connection) -> None:
        """Store (or overwrite) a connection record."""

    def delete_connection(self, connection_id: str) -> None:
        """Forget a connection; forgetting an unknown one is not an error."""

    def get_connection(self, connection_id: str) -> Connection | None:
        """The record of one connection, or None."""

    def scan_connection_ids(self) -> Iterator[str]:
        """Every stored connection id, read page by page (the seed's paginated Scan)."""

    def close(self) -> None:
        """Release connections and files."""

"""Stores behind one port, chosen by name (``sqlite`` or ``dynamodb``).

The adapters import lazily so a Lambda that uses DynamoDB never imports sqlite3 and the local
gateway's SQLite default never imports boto3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from wschat.storage.base import (
    CONNECTION_TTL_SECONDS,
    Connection,
    ConnectionStore,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "CONNECTION_TTL_SECONDS",
    "Connection",
    "ConnectionStore",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "open_store_from_env",
]

STORE_KINDS = ("dynamodb", "sqlite")
DEFAULT_TABLE = "websocket-connections"


def open_store(
    kind: str, *, table_name: str = DEFAULT_TABLE, sqlite_path: str | None = None
) -> ConnectionStore:
    """Open the store named ``kind`` (one of ``STORE_KINDS``)."""
    if kind == "dynamodb":
        from wschat.storage.dynamodb import DynamoDBStore

        return DynamoDBStore.from_environment(table_name=table_name)
    if kind == "sqlite":
        from wschat.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path or "wschat.sqlite3")
    raise ValueError(f"unknown store {kind!r}; expected one of {', '.join(STORE_KINDS)}")


def open_store_from_env(environ: Mapping[str, str] | None = None) -> ConnectionStore:
    """The store a handler uses: ``WSCHAT_STORE`` (default ``dynamodb``), the table named by
    ``WEBSOCKET_TABLE`` as in the seed, and ``WSCHAT_SQLITE_PATH`` for SQLite."""
    env = os.environ if environ is None else environ
    return open_store(
        env.get("WSCHAT_STORE", "dynamodb"),
        table_name=env.get("WEBSOCKET_TABLE", DEFAULT_TABLE),
        sqlite_path=env.get("WSCHAT_SQLITE_PATH"),
    )

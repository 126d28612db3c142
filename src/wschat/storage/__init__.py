"""Stores behind one port, chosen by name (``sqlite`` or ``dynamodb``).

The adapters import lazily so a Lambda that uses DynamoDB never imports sqlite3 and the local
gateway's SQLite default never imports boto3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from wschat.storage.base import (
    CONNECTION_TTL_SECONDS,
    ChatStore,
    Connection,
    ConnectionStore,
    StoreError,
    StoreUnavailable,
    TableNames,
)

__all__ = [
    "CONNECTION_TTL_SECONDS",
    "ChatStore",
    "Connection",
    "ConnectionStore",
    "StoreError",
    "StoreUnavailable",
    "TableNames",
    "open_store",
    "open_store_from_env",
]

STORE_KINDS = ("dynamodb", "sqlite")


def open_store(
    kind: str, *, tables: TableNames | None = None, sqlite_path: str | None = None
) -> ChatStore:
    """Open the store named ``kind`` (one of ``STORE_KINDS``)."""
    if kind == "dynamodb":
        from wschat.storage.dynamodb import DynamoDBStore

        return DynamoDBStore.from_environment(tables or TableNames())
    if kind == "sqlite":
        from wschat.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path or "wschat.sqlite3")
    raise ValueError(f"unknown store {kind!r}; expected one of {', '.join(STORE_KINDS)}")


def open_store_from_env(environ: Mapping[str, str] | None = None) -> ChatStore:
    """The store a handler uses: ``WSCHAT_STORE`` (default ``dynamodb``), tables named by
    ``WEBSOCKET_TABLE`` (as in the seed), ``MEMBERS_TABLE``, ``MESSAGES_TABLE``,
    ``ROOMS_TABLE`` and ``ROOM_USERS_TABLE``, and ``WSCHAT_SQLITE_PATH`` for SQLite."""
    env = os.environ if environ is None else environ
    return open_store(
        env.get("WSCHAT_STORE", "dynamodb"),
        tables=TableNames.from_env(env),
        sqlite_path=env.get("WSCHAT_SQLITE_PATH"),
    )

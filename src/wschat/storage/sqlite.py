"""SQLite adapter: the embedded default store of the local gateway.

One file holds the same tables the AWS deployment has in DynamoDB, under the same names
(``websocket-connections`` keyed by ``connectionId``). WAL mode lets the gateway's function
workers (separate processes, like separate Lambda functions) read and write it at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from wschat.storage.base import Connection, StoreError, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS "websocket-connections" (
    connectionId TEXT PRIMARY KEY,
    connectedAt  INTEGER NOT NULL,
    expiresAt    INTEGER NOT NULL
);
"""

_PAGE_SIZE = 1000  # ids read per query while scanning, like a DynamoDB Scan page


class SqliteStore:
    def __init__(self, path: str | Path, *, scan_page_size: int | None = None) -> None:
        self.path = str(path)
        self._scan_page_size = _PAGE_SIZE if scan_page_size is None else scan_page_size
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            # isolation_level=None: autocommit; each statement is its own transaction.
            self._db = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            # "database is locked" and I/O errors: worth retrying later.
            raise StoreUnavailable(f"SQLite: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    def put_connection(self, connection: Connection) -> None:
        self._execute(
            'INSERT OR REPLACE INTO "websocket-connections" (connectionId, connectedAt, expiresAt)'
            " VALUES (?, ?, ?)",
            (connection.connection_id, connection.connected_at, connection.expires_at),
        )

    def delete_connection(self, connection_id: str) -> None:
        self._execute(
            'DELETE FROM "websocket-connections" WHERE connectionId = ?', (connection_id,)
        )

    def get_connection(self, connection_id: str) -> Connection | None:
        rows = self._execute(
            'SELECT connectionId, connectedAt, expiresAt FROM "websocket-connections"'
            " WHERE connectionId = ?",
            (connection_id,),
        )
        if not rows:
            return None
        cid, connected_at, expires_at = rows[0]
        return Connection(str(cid), int(str(connected_at)), int(str(expires_at)))

    def scan_connection_ids(self) -> Iterator[str]:
        last = ""
        while True:
            rows = self._execute(
                'SELECT connectionId FROM "websocket-connections" WHERE connectionId > ?'
                " ORDER BY connectionId LIMIT ?",
                (last, self._scan_page_size),
            )
            for (cid,) in rows:
                yield str(cid)
            if len(rows) < self._scan_page_size:
                return
            last = str(rows[-1][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

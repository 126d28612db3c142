"""SQLite adapter: the embedded default store of the local gateway.

One file holds the tables the AWS deployment keeps in DynamoDB, under the same names:
``websocket-connections`` keyed by ``connectionId`` (the seed's), ``chat-members`` keyed by
(room, connectionId), ``chat-messages`` keyed by (room, id) and ``chat-rooms`` holding each
room's last message id. WAL mode lets the gateway's function workers (separate processes, like
separate Lambda functions) use it at once; multi-step writes run in ``BEGIN IMMEDIATE``
transactions, so they are atomic across processes too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from wschat import ids
from wschat.storage.base import (
    Connection,
    HistoryPage,
    Member,
    NewMessage,
    RateLimit,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS "websocket-connections" (
    connectionId TEXT PRIMARY KEY,
    connectedAt  INTEGER NOT NULL,
    expiresAt    INTEGER NOT NULL
);
"""
# Version 2: names, rooms, messages and rate-limit buckets (the chat of docs/protocol.md).
MIGRATION_2 = """
ALTER TABLE "websocket-connections" ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE "websocket-connections" ADD COLUMN tokens REAL;
ALTER TABLE "websocket-connections" ADD COLUMN tokensAt INTEGER;
CREATE INDEX IF NOT EXISTS "websocket-connections-by-name" ON "websocket-connections" (name);
CREATE TABLE IF NOT EXISTS "chat-members" (
    room         TEXT NOT NULL,
    connectionId TEXT NOT NULL,
    name         TEXT NOT NULL,
    expiresAt    INTEGER NOT NULL,
    PRIMARY KEY (room, connectionId)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "chat-members-by-connection" ON "chat-members" (connectionId);
CREATE TABLE IF NOT EXISTS "chat-messages" (
    room      TEXT NOT NULL,
    id        TEXT NOT NULL,
    sender    TEXT NOT NULL,
    text      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    clientId  TEXT,
    recipient TEXT,
    expiresAt INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS "chat-rooms" (
    room   TEXT PRIMARY KEY,
    lastId TEXT NOT NULL
) WITHOUT ROWID;
"""

_PAGE_SIZE = 1000  # ids read per query while scanning, like a DynamoDB Scan page
T = TypeVar("T")


class SqliteStore:
    def __init__(self, path: str | Path, *, scan_page_size: int | None = None) -> None:
        self.path = str(path)
        self._scan_page_size = _PAGE_SIZE if scan_page_size is None else scan_page_size
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, and explicit BEGIN for multi-step writes.
            self._db = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < 1:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version < 2:
                columns = {
                    row[1] for row in db.execute('PRAGMA table_info("websocket-connections")')
                }
                for statement in MIGRATION_2.split(";"):
                    statement = statement.strip()
                    if not statement:
                        continue
                    if statement.startswith("ALTER") and statement.split()[5] in columns:
                        continue
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- plumbing ----------------------------------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``work`` under the lock; writes in one IMMEDIATE transaction."""
        try:
            with self._lock:
                if not write:
                    return work(self._db)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
        except sqlite3.OperationalError as exc:
            # "database is locked", disk I/O errors: worth retrying later.
            raise StoreUnavailable(f"SQLite: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    # --- connections -------------------------------------------------------------------------

    def put_connection(self, connection: Connection) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                'INSERT OR REPLACE INTO "websocket-connections"'
                " (connectionId, connectedAt, expiresAt, name) VALUES (?, ?, ?, ?)",
                (
                    connection.connection_id,
                    connection.connected_at,
                    connection.expires_at,
                    connection.name,
                ),
            )
            # The record's rooms are the whole truth: memberships it does not list go.
            db.execute(
                'DELETE FROM "chat-members" WHERE connectionId = ?', (connection.connection_id,)
            )
            for room in connection.rooms:
                db.execute(
                    'INSERT OR REPLACE INTO "chat-members" (room, connectionId, name, expiresAt)'
                    " VALUES (?, ?, ?, ?)",
                    (room, connection.connection_id, connection.name, connection.expires_at),
                )

        self._run(work, write=True)

    def delete_connection(self, connection_id: str) -> None:
        self._run(
            lambda db: db.execute(
                'DELETE FROM "websocket-connections" WHERE connectionId = ?', (connection_id,)
            ),
            write=True,
        )

    def _connection(self, db: sqlite3.Connection, connection_id: str) -> Connection | None:
        row = db.execute(
            'SELECT connectedAt, expiresAt, name FROM "websocket-connections"'
            " WHERE connectionId = ?",
            (connection_id,),
        ).fetchone()
        if row is None:
            return None
        rooms = db.execute(
            'SELECT room FROM "chat-members" WHERE connectionId = ?', (connection_id,)
        ).fetchall()
        return Connection(
            connection_id, int(row[0]), int(row[1]), str(row[2]), frozenset(r[0] for r in rooms)
        )

    def get_connection(self, connection_id: str) -> Connection | None:
        return self._run(lambda db: self._connection(db, connection_id))

    def scan_connection_ids(self) -> Iterator[str]:
        last = ""
        while True:
            rows = self._run(
                lambda db, after=last: db.execute(  # type: ignore[misc]
                    'SELECT connectionId FROM "websocket-connections" WHERE connectionId > ?'
                    " ORDER BY connectionId LIMIT ?",
                    (after, self._scan_page_size),
                ).fetchall()
            )
            for (cid,) in rows:
                yield str(cid)
            if len(rows) < self._scan_page_size:
                return
            last = str(rows[-1][0])

    def rename_connection(self, connection_id: str, name: str) -> Connection | None:
        def work(db: sqlite3.Connection) -> Connection | None:
            updated = db.execute(
                'UPDATE "websocket-connections" SET name = ? WHERE connectionId = ?',
                (name, connection_id),
            ).rowcount
            if not updated:
                return None
            db.execute(
                'UPDATE "chat-members" SET name = ? WHERE connectionId = ?', (name, connection_id)
            )
            return self._connection(db, connection_id)

        return self._run(work, write=True)

    def connection_ids_named(self, name: str) -> list[str]:
        rows = self._run(
            lambda db: db.execute(
                'SELECT connectionId FROM "websocket-connections" WHERE name = ?', (name,)
            ).fetchall()
        )
        return [str(row[0]) for row in rows]

    def take_token(self, connection_id: str, now_ms: int, limit: RateLimit) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                'SELECT tokens, tokensAt FROM "websocket-connections" WHERE connectionId = ?',
                (connection_id,),
            ).fetchone()
            if row is None:
                return True  # not stored (e.g. $connect still running): nothing to limit by
            tokens = limit.level(row[0], row[1], now_ms)
            if tokens < 1:
                return False
            db.execute(
                'UPDATE "websocket-connections" SET tokens = ?, tokensAt = ?'
                " WHERE connectionId = ?",
                (tokens - 1, now_ms, connection_id),
            )
            return True

        return self._run(work, write=True)

    # --- memberships -------------------------------------------------------------------------

    def join_room(self, room: str, connection_id: str, name: str, expires_at: int) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            exists = db.execute(
                'SELECT 1 FROM "websocket-connections" WHERE connectionId = ?', (connection_id,)
            ).fetchone()
            if exists is None:
                return False  # gone: no orphan membership
            inserted = db.execute(
                'INSERT OR IGNORE INTO "chat-members" (room, connectionId, name, expiresAt)'
                " VALUES (?, ?, ?, ?)",
                (room, connection_id, name, expires_at),
            ).rowcount
            return bool(inserted == 1)

        return self._run(work, write=True)

    def leave_room(self, room: str, connection_id: str) -> bool:
        return self._run(
            lambda db: (
                db.execute(
                    'DELETE FROM "chat-members" WHERE room = ? AND connectionId = ?',
                    (room, connection_id),
                ).rowcount
                == 1
            ),
            write=True,
        )

    def room_members(self, room: str, *, limit: int | None = None) -> list[Member]:
        query = 'SELECT connectionId, name FROM "chat-members" WHERE room = ?'
        params: tuple[object, ...] = (room,)
        if limit is not None:
            query += " LIMIT ?"
            params = (room, max(0, limit))
        rows = self._run(lambda db: db.execute(query, params).fetchall())
        return [Member(room, str(cid), str(name)) for cid, name in rows]

    def room_member_ids(self, room: str, *, after: str | None = None, limit: int) -> list[str]:
        query = 'SELECT connectionId FROM "chat-members" WHERE room = ? AND connectionId > ?'
        params = (room, after or "", max(0, limit))
        rows = self._run(
            lambda db: db.execute(query + " ORDER BY connectionId LIMIT ?", params).fetchall()
        )
        return [str(cid) for (cid,) in rows]

    def remove_connection(
        self, connection_id: str, *, connected_before: int | None = None
    ) -> Connection | None:
        def work(db: sqlite3.Connection) -> Connection | None:
            connection = self._connection(db, connection_id)
            if connection is None:
                return None
            if connected_before is not None and connection.connected_at >= connected_before:
                return None
            db.execute('DELETE FROM "chat-members" WHERE connectionId = ?', (connection_id,))
            db.execute(
                'DELETE FROM "websocket-connections" WHERE connectionId = ?', (connection_id,)
            )
            return connection

        return self._run(work, write=True)

    def remove_all_connections(self) -> int:
        """Forget every connection and membership; returns how many connections there were.

        For the local gateway's start: connections never outlive the gateway that held them,
        so records left by one that was killed (no $disconnect ran) are all stale.
        """

        def work(db: sqlite3.Connection) -> int:
            db.execute('DELETE FROM "chat-members"')
            return int(db.execute('DELETE FROM "websocket-connections"').rowcount)

        return self._run(work, write=True)

    # --- messages ----------------------------------------------------------------------------

    def append_message(self, message: NewMessage) -> StoredMessage:
        def work(db: sqlite3.Connection) -> StoredMessage:
            row = db.execute(
                'SELECT lastId FROM "chat-rooms" WHERE room = ?', (message.room,)
            ).fetchone()
            message_id = ids.next_id(row[0] if row else None, message.ts)
            db.execute(
                'INSERT OR REPLACE INTO "chat-rooms" (room, lastId) VALUES (?, ?)',
                (message.room, message_id),
            )
            db.execute(
                'INSERT INTO "chat-messages"'
                " (room, id, sender, text, ts, clientId, recipient, expiresAt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.room,
                    message_id,
                    message.sender,
                    message.text,
                    message.ts,
                    message.client_id,
                    message.to,
                    message.expires_at,
                ),
            )
            return StoredMessage(
                message.room,
                message_id,
                message.sender,
                message.text,
                message.ts,
                message.client_id,
                message.to,
            )

        return self._run(work, write=True)

    def message_history(
        self,
        room: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        now = int(time.time())
        columns = "room, id, sender, text, ts, clientId, recipient"
        if after is not None:
            sql = (
                f'SELECT {columns} FROM "chat-messages" WHERE room = ? AND id > ?'
                " AND expiresAt > ? ORDER BY id ASC LIMIT ?"
            )
            params: tuple[object, ...] = (room, after, now, limit + 1)
        elif before is not None:
            sql = (
                f'SELECT {columns} FROM "chat-messages" WHERE room = ? AND id < ?'
                " AND expiresAt > ? ORDER BY id DESC LIMIT ?"
            )
            params = (room, before, now, limit + 1)
        else:
            sql = (
                f'SELECT {columns} FROM "chat-messages" WHERE room = ?'
                " AND expiresAt > ? ORDER BY id DESC LIMIT ?"
            )
            params = (room, now, limit + 1)
        rows = self._run(lambda db: db.execute(sql, params).fetchall())
        more = len(rows) > limit
        rows = rows[:limit]
        if after is None:
            rows.reverse()
        messages = [
            StoredMessage(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), r[5], r[6])
            for r in rows
        ]
        return HistoryPage(messages, more)

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""SQLite adapter: the embedded default store of the local gateway.

One file holds the tables the AWS deployment keeps in DynamoDB, under the same names:
``websocket-connections`` keyed by ``connectionId`` (the seed's), ``chat-members`` keyed by
(room, connectionId), ``chat-messages`` keyed by (room, id), ``chat-rooms`` holding each room's
last message id and record, and ``chat-room-users`` keyed by (room, user); a message's reactions
are rows of ``chat-reactions`` (room, id, emoji, user). The schema and the migrations of older
files are in ``wschat.storage.sqlite_schema``. WAL mode lets the gateway's function workers
(separate processes, like separate Lambda functions) use it at once; multi-step writes run in
``BEGIN IMMEDIATE`` transactions, so they are atomic across processes too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from wschat import ids
from wschat.storage.base import (
    Connection,
    HistoryPage,
    Member,
    NewMessage,
    RateLimit,
    Role,
    RoomInfo,
    RoomUser,
    StoredMessage,
    StoreError,
    StoreUnavailable,
    parse_role,
)
from wschat.storage.sqlite_schema import migrate

_PAGE_SIZE = 1000  # ids read per query while scanning, like a DynamoDB Scan page
_IN_CHUNK = 500  # values per "IN (...)": well under SQLite's limit on bound parameters
_BUSY_TIMEOUT = 10.0  # seconds a statement waits for another process's lock
_MESSAGE_COLUMNS = "room, id, sender, text, ts, clientId, recipient, editedAt, deletedAt"
T = TypeVar("T")
Reactions = dict[str, tuple[str, ...]]


def _message(row: Sequence[Any], reactions: Reactions | None = None) -> StoredMessage:
    """A row of ``_MESSAGE_COLUMNS`` (and its reactions) as a StoredMessage."""
    deleted = row[8] is not None
    return StoredMessage(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        "" if deleted else str(row[3]),
        int(row[4]),
        row[5],
        row[6],
        edited_at=None if row[7] is None else int(row[7]),
        deleted=deleted,
        reactions={} if deleted or reactions is None else reactions,
    )


def _reactions(
    db: sqlite3.Connection, room: str, message_ids: Sequence[str]
) -> dict[str, Reactions]:
    """The reactions of each of the room's messages that has any: id -> emoji -> users."""
    found: dict[str, dict[str, list[str]]] = {}
    for start in range(0, len(message_ids), _IN_CHUNK):
        chunk = list(message_ids[start : start + _IN_CHUNK])
        marks = ", ".join("?" * len(chunk))
        for message_id, emoji, user in db.execute(
            f'SELECT id, emoji, user FROM "chat-reactions" WHERE room = ? AND id IN ({marks})'
            " ORDER BY id, emoji, user",
            (room, *chunk),
        ):
            found.setdefault(message_id, {}).setdefault(emoji, []).append(user)
    return {
        message_id: {emoji: tuple(users) for emoji, users in emojis.items()}
        for message_id, emojis in found.items()
    }


def _room(row: Sequence[Any]) -> RoomInfo:
    return RoomInfo(str(row[0]), str(row[1]), str(row[2]), bool(row[3]), int(row[4]))


def _room_user(row: Sequence[Any]) -> RoomUser:
    return RoomUser(
        str(row[0]),
        str(row[1]),
        role=parse_role(row[2]),
        invited=bool(row[3]),
        muted_until=None if row[4] is None else int(row[4]),
        last_read=None if row[5] is None else str(row[5]),
    )


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out other processes switching it at the same moment.

    Changing the journal mode upgrades a shared lock to an exclusive one. When two connections
    do that at once, SQLite answers one of them "database is locked" at once rather than calling
    its busy handler (waiting there could deadlock), so the wait is this loop's.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


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
                self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            _use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=10000")
            migrate(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

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
        return self._run(lambda db: self._take(db, connection_id, now_ms, limit), write=True)

    def admit(
        self, connection_id: str, now_ms: int, limit: RateLimit
    ) -> tuple[Connection | None, bool]:
        # One transaction where get_connection + take_token were two (every frame runs it).
        def work(db: sqlite3.Connection) -> tuple[Connection | None, bool]:
            connection = self._connection(db, connection_id)
            if connection is None:
                return None, True
            return connection, self._take(db, connection_id, now_ms, limit)

        return self._run(work, write=True)

    def _take(
        self, db: sqlite3.Connection, connection_id: str, now_ms: int, limit: RateLimit
    ) -> bool:
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
            'UPDATE "websocket-connections" SET tokens = ?, tokensAt = ? WHERE connectionId = ?',
            (tokens - 1, now_ms, connection_id),
        )
        return True

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
            # The room's record keeps its owner and topic: only lastId moves.
            db.execute(
                'INSERT INTO "chat-rooms" (room, lastId) VALUES (?, ?)'
                " ON CONFLICT (room) DO UPDATE SET lastId = excluded.lastId",
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
            return message.stored_as(message_id)

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
        columns = _MESSAGE_COLUMNS
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

        def work(db: sqlite3.Connection) -> HistoryPage:
            rows = db.execute(sql, params).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            if after is None:
                rows.reverse()
            reactions = _reactions(db, room, [str(row[1]) for row in rows])
            messages = [_message(row, reactions.get(str(row[1]))) for row in rows]
            return HistoryPage(messages, more)

        return self._run(work)

    def _get_message(
        self, db: sqlite3.Connection, room: str, message_id: str
    ) -> StoredMessage | None:
        row = db.execute(
            f'SELECT {_MESSAGE_COLUMNS} FROM "chat-messages"'
            " WHERE room = ? AND id = ? AND expiresAt > ?",
            (room, message_id, int(time.time())),
        ).fetchone()
        if row is None:
            return None
        return _message(row, _reactions(db, room, [message_id]).get(message_id))

    def get_message(self, room: str, message_id: str) -> StoredMessage | None:
        return self._run(lambda db: self._get_message(db, room, message_id))

    def edit_message(
        self, room: str, message_id: str, *, author: str, text: str, edited_at: int
    ) -> StoredMessage | None:
        def work(db: sqlite3.Connection) -> StoredMessage | None:
            edited = db.execute(
                'UPDATE "chat-messages" SET text = ?, editedAt = ?'
                " WHERE room = ? AND id = ? AND sender = ? AND deletedAt IS NULL"
                " AND expiresAt > ?",
                (text, edited_at, room, message_id, author, int(time.time())),
            ).rowcount
            return self._get_message(db, room, message_id) if edited else None

        return self._run(work, write=True)

    def delete_message(
        self, room: str, message_id: str, *, deleted_at: int, author: str | None
    ) -> StoredMessage | None:
        def work(db: sqlite3.Connection) -> StoredMessage | None:
            deleted = db.execute(
                """UPDATE "chat-messages" SET text = '', deletedAt = ?"""
                " WHERE room = ? AND id = ? AND deletedAt IS NULL AND expiresAt > ?"
                " AND (? IS NULL OR sender = ?)",
                (deleted_at, room, message_id, int(time.time()), author, author),
            ).rowcount
            if not deleted:
                return None
            db.execute('DELETE FROM "chat-reactions" WHERE room = ? AND id = ?', (room, message_id))
            return self._get_message(db, room, message_id)

        return self._run(work, write=True)

    def react(
        self, room: str, message_id: str, *, user: str, emoji: str, on: bool, max_emojis: int
    ) -> StoredMessage | None:
        if not user or not emoji:
            raise ValueError("a reaction needs a user and an emoji")

        def work(db: sqlite3.Connection) -> StoredMessage | None:
            message = self._get_message(db, room, message_id)
            if message is None or message.deleted:
                return None
            key = (room, message_id, emoji, user)
            if not on:
                db.execute(
                    'DELETE FROM "chat-reactions"'
                    " WHERE room = ? AND id = ? AND emoji = ? AND user = ?",
                    key,
                )
            elif emoji in message.reactions or len(message.reactions) < max_emojis:
                db.execute('INSERT OR IGNORE INTO "chat-reactions" VALUES (?, ?, ?, ?)', key)
            else:
                return None  # a new emoji past the cap
            return self._get_message(db, room, message_id)

        return self._run(work, write=True)

    def unread_count(self, room: str, *, after: str | None, limit: int) -> int:
        rows = self._run(
            lambda db: db.execute(
                'SELECT COUNT(*) FROM (SELECT 1 FROM "chat-messages"'
                " WHERE room = ? AND id > ? AND expiresAt > ? AND deletedAt IS NULL LIMIT ?)",
                (room, after or "", int(time.time()), max(0, limit)),
            ).fetchone()
        )
        return int(rows[0])

    # --- rooms -------------------------------------------------------------------------------

    def create_room(
        self, room: str, *, owner: str, topic: str, private: bool, created_at: int
    ) -> bool:
        # A record that holds lastId alone (a room with messages nobody created) is created too.
        created = self._run(
            lambda db: (
                db.execute(
                    'INSERT INTO "chat-rooms" (room, owner, topic, private, createdAt)'
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room) DO UPDATE SET"
                    " owner = excluded.owner, topic = excluded.topic, private = excluded.private,"
                    ' createdAt = excluded.createdAt WHERE "chat-rooms".owner IS NULL',
                    (room, owner, topic, int(private), created_at),
                ).rowcount
            ),
            write=True,
        )
        return bool(created)

    def get_room(self, room: str) -> RoomInfo | None:
        row = self._run(
            lambda db: db.execute(
                'SELECT room, owner, topic, private, createdAt FROM "chat-rooms"'
                " WHERE room = ? AND owner IS NOT NULL",
                (room,),
            ).fetchone()
        )
        return None if row is None else _room(row)

    def set_topic(self, room: str, topic: str) -> bool:
        changed = self._run(
            lambda db: (
                db.execute(
                    'UPDATE "chat-rooms" SET topic = ? WHERE room = ? AND owner IS NOT NULL',
                    (topic, room),
                ).rowcount
            ),
            write=True,
        )
        return bool(changed)

    def public_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        rows = self._run(
            lambda db: db.execute(
                'SELECT room, owner, topic, private, createdAt FROM "chat-rooms"'
                " WHERE owner IS NOT NULL AND private = 0 AND room > ? ORDER BY room LIMIT ?",
                (after or "", max(0, limit)),
            ).fetchall()
        )
        return [_room(row) for row in rows]

    def room_member_count(self, room: str, *, limit: int | None = None) -> int:
        query = 'SELECT COUNT(*) FROM "chat-members" WHERE room = ?'
        params: tuple[object, ...] = (room,)
        if limit is not None:  # the index is walked no further than the limit
            query = 'SELECT COUNT(*) FROM (SELECT 1 FROM "chat-members" WHERE room = ? LIMIT ?)'
            params = (room, max(0, limit))
        return int(self._run(lambda db: db.execute(query, params).fetchone()[0]))

    # --- room users --------------------------------------------------------------------------

    _ROOM_USER = 'SELECT room, user, role, invited, mutedUntil, lastRead FROM "chat-room-users"'

    def get_room_user(self, room: str, user: str) -> RoomUser | None:
        row = self._run(
            lambda db: db.execute(
                f"{self._ROOM_USER} WHERE room = ? AND user = ?", (room, user)
            ).fetchone()
        )
        return None if row is None else _room_user(row)

    def room_users(self, room: str, *, after: str | None = None, limit: int) -> list[RoomUser]:
        rows = self._run(
            lambda db: db.execute(
                f"{self._ROOM_USER} WHERE room = ? AND user > ? ORDER BY user LIMIT ?",
                (room, after or "", max(0, limit)),
            ).fetchall()
        )
        return [_room_user(row) for row in rows]

    def _set_or_clear(self, room: str, user: str, column: str, value: object) -> None:
        """Set one column of a room user (making the record if need be), or clear it with
        None: a clear does not make a record for a user who has none."""
        if value is None:
            sql = f'UPDATE "chat-room-users" SET {column} = NULL WHERE room = ? AND user = ?'
            params: tuple[object, ...] = (room, user)
        else:
            sql = (
                f'INSERT INTO "chat-room-users" (room, user, {column}) VALUES (?, ?, ?)'
                f" ON CONFLICT (room, user) DO UPDATE SET {column} = excluded.{column}"
            )
            params = (room, user, value)
        self._run(lambda db: db.execute(sql, params), write=True)

    def set_role(self, room: str, user: str, role: Role | None) -> None:
        self._set_or_clear(room, user, "role", role)

    def set_muted(self, room: str, user: str, until_ms: int | None) -> None:
        self._set_or_clear(room, user, "mutedUntil", until_ms)

    def invite(self, room: str, user: str) -> bool:
        invited = self._run(
            lambda db: (
                db.execute(
                    'INSERT INTO "chat-room-users" (room, user, invited) VALUES (?, ?, 1)'
                    " ON CONFLICT (room, user) DO UPDATE SET invited = 1 WHERE invited = 0",
                    (room, user),
                ).rowcount
            ),
            write=True,
        )
        return bool(invited)

    def mark_read(self, room: str, user: str, up_to: str) -> str:
        def work(db: sqlite3.Connection) -> str:
            db.execute(
                'INSERT INTO "chat-room-users" (room, user, lastRead) VALUES (?, ?, ?)'
                " ON CONFLICT (room, user) DO UPDATE SET lastRead = excluded.lastRead"
                " WHERE lastRead IS NULL OR lastRead < excluded.lastRead",
                (room, user, up_to),
            )
            row = db.execute(
                'SELECT lastRead FROM "chat-room-users" WHERE room = ? AND user = ?',
                (room, user),
            ).fetchone()
            return str(row[0])

        return self._run(work, write=True)

    def read_marks(self, user: str, rooms: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(rooms))

        def work(db: sqlite3.Connection) -> dict[str, str]:
            marks: dict[str, str] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks.update(
                    db.execute(
                        'SELECT room, lastRead FROM "chat-room-users" WHERE user = ?'
                        f" AND room IN ({', '.join('?' * len(chunk))}) AND lastRead IS NOT NULL",
                        (user, *chunk),
                    ).fetchall()
                )
            return marks

        return self._run(work)

    def close(self) -> None:
        with self._lock:
            self._db.close()

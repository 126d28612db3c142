"""The SQLite store's schema, and the migrations that bring an older file up to it.

``PRAGMA user_version`` is the schema version of a file. ``migrate`` runs, in one ``BEGIN
IMMEDIATE`` transaction (so two processes opening the same file migrate it once), each step
newer than the file's version; every step also copes with a file that is part-way there, so
``./data/wschat.sqlite3`` of any earlier wschat opens and keeps its history.

1. the seed's ``websocket-connections``;
2. names, rooms, messages and rate-limit buckets (the chat of docs/protocol.md);
3. edits, deletes and reactions of messages, room records (owner, topic, visibility; ``lastId``
   may now be NULL, for a room created before its first message), per-user room state.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS "websocket-connections" (
    connectionId TEXT PRIMARY KEY,
    connectedAt  INTEGER NOT NULL,
    expiresAt    INTEGER NOT NULL
);
"""
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
# Version 3. The ALTERs are skipped for columns a file already has; chat-rooms is rebuilt
# (SQLite cannot drop a NOT NULL) unless it already has its owner column.
MIGRATION_3 = """
ALTER TABLE "chat-messages" ADD COLUMN editedAt INTEGER;
ALTER TABLE "chat-messages" ADD COLUMN deletedAt INTEGER;
CREATE TABLE IF NOT EXISTS "chat-reactions" (
    room  TEXT NOT NULL,
    id    TEXT NOT NULL,
    emoji TEXT NOT NULL,
    user  TEXT NOT NULL,
    PRIMARY KEY (room, id, emoji, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS "chat-room-users" (
    room       TEXT NOT NULL,
    user       TEXT NOT NULL,
    role       TEXT,
    invited    INTEGER NOT NULL DEFAULT 0,
    mutedUntil INTEGER,
    lastRead   TEXT,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
"""
ROOMS_3 = """
CREATE TABLE "chat-rooms-3" (
    room      TEXT PRIMARY KEY,
    lastId    TEXT,
    owner     TEXT,
    topic     TEXT NOT NULL DEFAULT '',
    private   INTEGER NOT NULL DEFAULT 0,
    createdAt INTEGER
) WITHOUT ROWID;
INSERT INTO "chat-rooms-3" (room, lastId) SELECT room, lastId FROM "chat-rooms";
DROP TABLE "chat-rooms";
ALTER TABLE "chat-rooms-3" RENAME TO "chat-rooms";
"""
# Public rooms by name, as DynamoDB's sparse public-index: created (an owner) and not private.
PUBLIC_ROOMS_INDEX = """
CREATE INDEX IF NOT EXISTS "chat-rooms-public" ON "chat-rooms" (room)
    WHERE owner IS NOT NULL AND private = 0
"""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in db.execute(f'PRAGMA table_info("{table}")')}


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script``; an ``ALTER TABLE t ADD COLUMN c`` only if t lacks c."""
    for statement in script.split(";"):
        statement = statement.strip()
        if not statement:
            continue
        words = statement.split()
        adds_column = words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "COLUMN"]
        if adds_column and words[5] in _columns(db, words[2].strip('"')):
            continue
        db.execute(statement)


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file's schema to ``SCHEMA_VERSION``, atomically."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            _run_script(db, SCHEMA)
        if version < 2:
            _run_script(db, MIGRATION_2)
        if version < 3:
            _run_script(db, MIGRATION_3)
            if "owner" not in _columns(db, "chat-rooms"):
                _run_script(db, ROOMS_3)
            _run_script(db, PUBLIC_ROOMS_INDEX)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise

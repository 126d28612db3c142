"""The floor of bench/run.py: the least a Python gateway can do per chat message while keeping
the semantics issue 14 asks wschat to keep.

Where the ceiling (bench/ceiling_server.py) only relays bytes, this does what a chat message
must cost under those rules, and nothing more:

- every client frame is an invocation: the gateway writes one JSON line to a worker process
  over a pipe and waits for its one-line answer; a worker runs one invocation at a time
  (Lambda's model) and a connection's frames run in order (the next is read after the answer);
- the worker checks the frame, takes a rate-limit token, checks the sender is in the room and
  appends the message in one SQLite transaction (WAL, synchronous=NORMAL), reads the room's
  members, and builds the message frame once; the gateway sends the sender its ``ack`` and the
  frame to every member only after that, so a message is stored before anyone receives it;
- connects and disconnects are invocations too, storing and deleting the connection's rows.

Nothing else: no API Gateway event, no Lambda context, no logs, no metrics, no store
abstraction, no chat features. So its figures bound what any gateway written this way in
Python can reach on the same machine, and wschat's distance to them is what its structure
costs. Clients connect with ``?name=NAME&room=ROOM`` and send wschat's frames,
``{"action": "sendMessage", "room": ..., "message": ...}``.

    python bench/floor_server.py --port 0      # prints "listening on PORT" once bound
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from ceiling_server import raise_nofile_limit

WORKERS = 2  # environments, as wschat serve starts per function under load
RATE_PER_SECOND = 100_000.0  # the benchmarks' wschat settings (bench/systems.py, CHAT_ENV)
RATE_BURST = 100_000.0
MAX_CHARS = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, tokens REAL NOT NULL, tokensAt INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    room TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_connection ON members (id);
CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, lastId INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
    ts INTEGER NOT NULL, PRIMARY KEY (room, id)
) WITHOUT ROWID;
"""


# --- worker: one process per environment, one invocation at a time ---------------------------


class Store:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        while True:  # another worker may be switching the file to WAL at the same moment
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.005)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executescript(SCHEMA)  # commits

    def connect(self, request: dict[str, Any]) -> dict[str, Any]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR REPLACE INTO connections VALUES (?, ?, ?, ?)",
            (request["id"], request["name"], RATE_BURST, int(time.time() * 1000)),
        )
        db.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (request["room"], request["id"]))
        db.execute("COMMIT")
        return {}

    def disconnect(self, request: dict[str, Any]) -> dict[str, Any]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM members WHERE id = ?", (request["id"],))
        db.execute("DELETE FROM connections WHERE id = ?", (request["id"],))
        db.execute("COMMIT")
        return {}

    def message(self, request: dict[str, Any]) -> dict[str, Any]:
        sender = request["id"]
        try:
            frame = orjson.loads(request["body"])
            room, text = frame["room"], frame["message"]
            if frame.get("action") != "sendMessage" or not isinstance(room, str):
                raise ValueError("not a sendMessage frame with a room")
            if not isinstance(text, str) or not 0 < len(text) <= MAX_CHARS:
                raise ValueError(f'"message" must be 1 to {MAX_CHARS} characters')
        except (ValueError, KeyError, TypeError) as exc:
            return {"reply": error("bad_request", str(exc))}
        db = self.db
        now_ms = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT c.name, c.tokens, c.tokensAt, m.id IS NOT NULL FROM connections c"
                " LEFT JOIN members m ON m.room = ? AND m.id = c.id WHERE c.id = ?",
                (room, sender),
            ).fetchone()
            if row is None or not row[3]:
                db.execute("ROLLBACK")
                return {"reply": error("not_a_member", f"you are not in {room}")}
            name, tokens, tokens_at, _ = row
            tokens = min(RATE_BURST, tokens + (now_ms - tokens_at) / 1000 * RATE_PER_SECOND)
            if tokens < 1:
                db.execute("ROLLBACK")
                return {"reply": error("rate_limited", "slow down")}
            db.execute(
                "UPDATE connections SET tokens = ?, tokensAt = ? WHERE id = ?",
                (tokens - 1, now_ms, sender),
            )
            (message_id,) = db.execute(
                "INSERT INTO rooms VALUES (?, 1) ON CONFLICT (room)"
                " DO UPDATE SET lastId = lastId + 1 RETURNING lastId",
                (room,),
            ).fetchone()
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                (room, message_id, name, text, now_ms),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        members = [m for (m,) in db.execute("SELECT id FROM members WHERE room = ?", (room,))]
        event = {"type": "message", "id": message_id, "room": room, "from": name, "text": text}
        return {
            "reply": orjson.dumps({"type": "ack", "id": message_id}).decode(),
            "to": members,
            "frame": orjson.dumps({**event, "ts": now_ms}).decode(),
        }


def error(code: str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


def worker(path: str) -> None:
    store = Store(path)
    ops = {"connect": store.connect, "disconnect": store.disconnect, "message": store.message}
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        request = orjson.loads(line)
        out.write(orjson.dumps(ops[request["op"]](request)) + b"\n")
        out.flush()


# --- gateway: the WebSocket server and the pool of workers ------------------------------------


class Pool:
    """Idle workers; an invocation takes one, writes its request line and reads the answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.idle: asyncio.Queue[asyncio.subprocess.Process] = asyncio.Queue()

    async def start(self, count: int) -> None:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                self.path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
            self.idle.put_nowait(proc)

    async def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = await self.idle.get()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(orjson.dumps(request) + b"\n")
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("a worker exited")
            answer: dict[str, Any] = orjson.loads(line)
            return answer
        finally:
            self.idle.put_nowait(proc)


connections: dict[str, ServerConnection] = {}


async def handler(ws: ServerConnection, pool: Pool) -> None:
    query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
    connection_id = base64.b64encode(os.urandom(11)).decode()
    await pool.invoke(
        {
            "op": "connect",
            "id": connection_id,
            "name": query.get("name", ["anonymous"])[0],
            "room": query.get("room", ["lobby"])[0],  # wschat's default room
        }
    )
    connections[connection_id] = ws
    try:
        async for body in ws:
            if not isinstance(body, str):
                continue
            answer = await pool.invoke({"op": "message", "id": connection_id, "body": body})
            await ws.send(answer["reply"])
            if "frame" in answer:
                broadcast(
                    [c for c in map(connections.get, answer["to"]) if c is not None],
                    answer["frame"],
                )
    except ConnectionClosed:
        pass  # the client went away without a close frame: its rows go all the same
    finally:
        del connections[connection_id]
        await pool.invoke({"op": "disconnect", "id": connection_id})


async def main(host: str, port: int, data_dir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    data_dir.mkdir(parents=True, exist_ok=True)
    pool = Pool(str(data_dir / "floor.sqlite3"))
    await pool.start(WORKERS)
    async with serve(
        lambda ws: handler(ws, pool),
        host,
        port,
        compression=None,
        max_size=128 * 1024,
        backlog=4096,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("floor-data"))
    parser.add_argument("--worker", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
    else:
        raise_nofile_limit()
        import uvloop  # the gateway's loop, as wschat serve runs it

        uvloop.run(main(args.host, args.port, args.data_dir))

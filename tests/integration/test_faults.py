"""Faults, end to end on ``wschat serve`` processes: what docs/protocol.md promises when things
break. An ``ack`` means the message is stored, and ``history`` after the last id a client saw
returns exactly what it missed; so

* the DynamoDB-compatible server stopped mid-conversation: senders get ``unavailable`` (fast),
  the gateway stays up and answers every frame, and when the server is back the same gateway
  process serves again and every acknowledged message is in the history;
* the gateway killed with SIGKILL mid-conversation and started again on the same port and data
  directory: every client reconnects with backoff and catches up; every acknowledged message is
  recovered by every member, and no catch-up returns a message its member already had;
* a client that vanishes without a close frame (its process killed, or frozen so that nothing at
  all arrives) is cleaned up and leaves presence; so is a record whose connection is gone with
  no $disconnect run (the next fan-out to its room gets 410 for it).

Each test records its figures with ``record_property`` (bench/reliability.py reads them from
pytest's JUnit XML into docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.conftest import TEST_REGION
from tests.integration.conftest import (
    PROJECT_TEMPLATE,
    REPO,
    TIMEOUT,
    ServeProcess,
    wait_for,
)
from tests.support.chat_client import ChatClient, chat_url
from tests.support.moto_server import MotoServer, free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from wschat.gateway.template import load_api
from wschat.storage.base import TableNames

pytestmark = pytest.mark.integration

ROOM = "ops"
RELAXED_RATE = ["--parameter", "RatePerSecond=1000", "--parameter", "RateBurst=1000"]
Record = Callable[[str, object], None]


# --- processes -------------------------------------------------------------------------------


def serve(
    directory: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> ServeProcess:
    """``wschat serve`` with the project's template on ``port`` (the last --port wins)."""
    args = ["--template", str(PROJECT_TEMPLATE), "--port", str(port), *extra]
    server = ServeProcess(args, directory, env, cwd=REPO)
    try:
        return server.wait_ready(timeout=30)
    except BaseException:
        server.close()
        raise


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the gateway's function workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def healthz(server: ServeProcess) -> dict[str, Any]:
    address = urlsplit(server.urls["Chat page"])
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        result: dict[str, Any] = json.loads(body)
        return result
    finally:
        conn.close()


def stored_connections(database: Path) -> dict[str, str]:
    """connectionId -> name of every connection record in the SQLite store."""
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        rows = db.execute('SELECT connectionId, name FROM "websocket-connections"').fetchall()
    return {str(cid): str(name) for cid, name in rows}


def age_connections(database: Path, by_ms: int) -> None:
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        db.execute('UPDATE "websocket-connections" SET connectedAt = connectedAt - ?', (by_ms,))
        db.commit()


def full_history(url: str, room: str = ROOM) -> list[dict[str, Any]]:
    """Every stored message of ``room``, oldest first, paged with ``after`` as clients do."""
    with ChatClient.connect(url, name="auditor", rooms=[room]) as auditor:
        messages: list[dict[str, Any]] = []
        after = "0"  # sorts before every id
        while True:
            page = auditor.request("history", "history", room=room, after=after, limit=100)
            messages.extend(page["messages"])
            if not page["more"] or not page["messages"]:
                return messages
            after = page["messages"][-1]["id"]


# --- a chat client modelled on the web page (src/wschat/web/connection.js) ------------------


# Between storing a message and posting it to the room, a sendMessage invocation may take up
# to its function timeout (29 s in template.yaml). Two invocations running at once can post in
# the other order than their ids, so a member may receive a newer id before an older one.
SAFETY_WINDOW_S = 30.0


@dataclass
class Member:
    """One person in ``ROOM``, modelled on the chat page (src/wschat/web/connection.js): sends a
    numbered message every ``every`` seconds while the test says so, reconnects with capped
    exponential backoff and jitter when the connection drops, and after each reconnect asks
    ``history`` after the newest id it has (the page's ``ChatStore.lastId``), page by page while
    ``more``, then ``who``.

    After the page's catch-up it asks once more, from a safety anchor: the newest id it had
    received ``SAFETY_WINDOW_S`` before the connection dropped (or from the start). Live
    messages can arrive out of id order (two invocations post at once), so a message older than
    the newest one received can still be on its way when the connection drops; the page's
    catch-up cannot return it. ``missed_by_page_catch_up`` counts what only the second ask
    found. ``generation`` counts connections; what arrived on each is kept apart.
    """

    url: str
    name: str
    every: float = 0.15
    reconnect: bool = True
    sent: int = 0
    acked: dict[str, str] = field(default_factory=dict)  # clientId -> message id
    errors: Counter[str] = field(default_factory=Counter)
    last_id: str | None = None
    generation: int = 0
    live: dict[int, set[str]] = field(default_factory=dict)  # generation -> message ids
    caught_up: dict[int, list[str]] = field(default_factory=dict)  # page's catch-up, by gen.
    safety_net: dict[int, list[str]] = field(default_factory=dict)  # second ask, by generation
    page_anchor: dict[int, str] = field(default_factory=dict)  # generation -> its `after`
    early: list[tuple[str, str]] = field(default_factory=list)  # (after, id) with id <= after
    received: Counter[str] = field(default_factory=Counter)  # id -> times received
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, id)
    out_of_order: int = 0  # live messages older than one already received
    live_twice: int = 0  # live messages delivered a second time
    reorder_lag_max: float = 0.0  # the longest such a message came after the newer one, s
    _newest_at: float = 0.0
    refused: int = 0  # connection attempts that failed while the gateway was away
    present: list[str] = field(default_factory=list)  # the room's names, as last told
    events: list[dict[str, Any]] = field(default_factory=list)
    sending: bool = False
    connected: bool = False
    _phase: str | None = None  # "page" or "net" while catching up
    _net_anchor: str = "0"
    _dropped_at: float = 0.0

    @property
    def recovered(self) -> set[str]:
        return set(self.received)

    @property
    def caught_up_fully(self) -> bool:
        return self.connected and self.generation >= 2 and self._phase is None

    async def run(self, done: asyncio.Event) -> None:
        attempt = 0
        while not done.is_set():
            try:
                async with connect(
                    chat_url(self.url, name=self.name, rooms=[ROOM]),
                    open_timeout=3,
                    close_timeout=1,
                    ping_interval=None,
                    max_queue=None,
                ) as ws:
                    attempt = 0
                    await self._session(ws, done)
            except (OSError, TimeoutError, WebSocketException):
                if not self.connected:
                    self.refused += 1
            finally:
                if self.connected:
                    self._dropped_at = time.monotonic()
                self.connected = False
            if done.is_set() or not self.reconnect:
                return
            delay = min(1.0, 0.05 * 2**attempt) * (0.75 + random.random() / 2)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection, done: asyncio.Event) -> None:
        self.generation += 1
        generation = self.generation
        self.live[generation] = set()
        self.caught_up[generation] = []
        self.safety_net[generation] = []
        self.connected = True
        if self.last_id is not None:
            cutoff = self._dropped_at - SAFETY_WINDOW_S
            self._net_anchor = max((i for t, i in self.arrivals if t <= cutoff), default="0")
            self.page_anchor[generation] = self.last_id
            self._phase = "page"
            await self._history(ws, self.last_id)
            await ws.send(json.dumps({"action": "who", "room": ROOM}))
        sender = asyncio.create_task(self._send_loop(ws))
        try:
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                await self._receive(ws, json.loads(raw), generation)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _history(self, ws: ClientConnection, after: str) -> None:
        await ws.send(json.dumps({"action": "history", "room": ROOM, "after": after, "limit": 50}))

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.every * (0.8 + random.random() * 0.4))
            if not self.sending:
                continue
            self.sent += 1
            frame = {
                "action": "sendMessage",
                "room": ROOM,
                "message": f"{self.name} #{self.sent}",
                "clientId": f"{self.name}-{self.sent}",
            }
            await ws.send(json.dumps(frame))

    async def _receive(self, ws: ClientConnection, event: dict[str, Any], generation: int) -> None:
        kind = event.get("type")
        if kind == "ack":
            self.acked[event["clientId"]] = event["id"]
        elif kind == "message" and event.get("room") == ROOM:
            if self.last_id is not None and event["id"] < self.last_id:
                self.out_of_order += 1
                lag = time.monotonic() - self._newest_at
                self.reorder_lag_max = max(self.reorder_lag_max, lag)
            else:
                self._newest_at = time.monotonic()
            if any(event["id"] in ids for ids in self.live.values()):
                self.live_twice += 1
            self._got(event["id"])
            self.live[generation].add(event["id"])
        elif kind == "history" and event.get("room") == ROOM and "after" in event:
            after = event["after"]
            pages = self.caught_up if self._phase == "page" else self.safety_net
            for message in event["messages"]:
                if message["id"] <= after:
                    self.early.append((after, message["id"]))
                self._got(message["id"])
                pages[generation].append(message["id"])
            if event["more"] and event["messages"]:
                await self._history(ws, event["messages"][-1]["id"])
            elif self._phase == "page":
                self._phase = "net"
                await self._history(ws, self._net_anchor)
            else:
                self._phase = None
        elif kind == "error":
            self.errors[event["code"]] += 1
        else:
            if kind in ("presence", "joined", "left", "renamed") and event.get("room") == ROOM:
                self.present = event["members"]
            self.events.append(event)

    def _got(self, message_id: str) -> None:
        self.received[message_id] += 1
        self.arrivals.append((time.monotonic(), message_id))
        if self.last_id is None or message_id > self.last_id:
            self.last_id = message_id

    def _before(self, generation: int) -> set[str]:
        """Every id received on the connections before ``generation``."""
        before: set[str] = set()
        for earlier in range(1, generation):
            before |= self.live[earlier] | set(self.caught_up[earlier])
            before |= set(self.safety_net[earlier])
        return before

    def repeated_in_catch_up(self) -> set[str]:
        """Ids the page's catch-up returned that this member had received on an earlier
        connection: history after the last id must be exactly what was missed."""
        repeated: set[str] = set()
        for generation, page_ids in self.caught_up.items():
            repeated |= self._before(generation) & set(page_ids)
        return repeated

    def missed_by_page_catch_up(self) -> set[str]:
        """Ids only the safety net found: older than the page's anchor, never received."""
        missed: set[str] = set()
        for generation, anchor in self.page_anchor.items():
            had = self._before(generation) | self.live[generation]
            missed |= {i for i in self.safety_net[generation] if i <= anchor and i not in had}
        return missed


class Conversation:
    """The members' tasks on one event loop, run in a thread of its own so the test can stop
    and start processes while they chat."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.loop = asyncio.new_event_loop()
        self.done = asyncio.Event()
        self._tasks: list[concurrent.futures.Future[None]] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Conversation:
        self._thread.start()
        for member in self.members:
            self._tasks.append(asyncio.run_coroutine_threadsafe(member.run(self.done), self.loop))
        return self

    def set_sending(self, sending: bool) -> None:
        def apply() -> None:
            for member in self.members:
                member.sending = sending

        self.loop.call_soon_threadsafe(apply)

    def acked(self) -> dict[str, str]:
        """Every acknowledged message of every member: clientId -> id."""
        everything: dict[str, str] = {}
        for member in self.members:
            everything.update(member.acked)
        return everything

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        for task in self._tasks:
            with contextlib.suppress(Exception):
                task.result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


# --- SIGKILL of the gateway --------------------------------------------------------------------


def test_sigkill_gateway_mid_conversation_every_acked_message_is_recovered_once(
    tmp_path: Path, record_property: Record
) -> None:
    port = free_port()
    database = tmp_path / "wschat.sqlite3"
    # Members send about 40 frames a second each, over the default rate limit: lifted, so
    # that several messages are always between store and delivery when the kill comes.
    data = ["--store", "sqlite", "--data-dir", str(tmp_path), *RELAXED_RATE]
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    gateway = serve(tmp_path / "run1", port, *data)
    restarted: ServeProcess | None = None
    workers: set[int] = set()
    members = [Member(gateway.websocket_url, f"m{i}", every=0.025) for i in range(5)]
    # A sixth member that does not come back: its record outlives the crash (no $disconnect
    # ran), and the restarted gateway must drop it from the room.
    ghost = Member(gateway.websocket_url, "ghost", every=0.025, reconnect=False)
    started = time.monotonic()
    try:
        with Conversation([*members, ghost]) as chat:
            wait_for(lambda: all(m.connected for m in [*members, ghost]), 10, "everyone connected")
            chat.set_sending(True)
            wait_for(lambda: len(chat.acked()) >= 300, 20, "300 acknowledged messages")

            workers = children(gateway.process.pid)
            assert workers, "the gateway runs its functions in worker processes"
            gateway.process.send_signal(signal.SIGKILL)
            gateway.process.wait(TIMEOUT)
            killed_at = time.monotonic()
            acked_before_kill = len(chat.acked())
            # Workers see their pipe close and exit: nothing of the old gateway keeps the port
            # or the database.
            wait_for(lambda: not any(alive(pid) for pid in workers), 5, "orphaned workers exit")
            orphans_gone_s = time.monotonic() - killed_at
            # No $disconnect ran: the records outlive the crash. The restarted gateway must drop
            # them: `wschat serve` forgets a previous run's records when it starts, and failing
            # that its fan-outs' 410s would (for records older than a $connect can run, see
            # service.py: so they are aged as if the crash came a minute after everyone
            # connected).
            assert "ghost" in stored_connections(database).values()
            age_connections(database, 60_000)

            restarted = serve(tmp_path / "run2", port, *data)
            ready_at = time.monotonic()
            wait_for(lambda: all(m.caught_up_fully for m in members), 20, "every member caught up")
            reconnected_at = time.monotonic()
            wait_for(lambda: len(chat.acked()) >= acked_before_kill + 150, 20, "150 more acks")
            chat.set_sending(False)
            time.sleep(0.5)  # frames already on their way get their acks
            acked = chat.acked()
            wait_for(
                lambda: all(set(acked.values()) <= m.recovered for m in members),
                10,
                "every member has every acknowledged message",
            )
            with ChatClient.connect(restarted.websocket_url, name="who", rooms=[ROOM]) as who:
                present = who.request("who", "presence", room=ROOM)["members"]
            ghost_record_left = "ghost" in stored_connections(database).values()

        stored = full_history(restarted.websocket_url)
        stored_ids = [m["id"] for m in stored]
        stored_client_ids = [m.get("clientId") for m in stored]
        # Everyone closed: every record goes, the crash's stale ones included.
        wait_for(lambda: not stored_connections(database), 10, "an empty connections table")
        assert healthz(restarted)["connections"] == 0
    finally:
        gateway.close()
        if restarted is not None:
            restarted.close()
        kill_all(workers)

    missing = {m.name: set(acked.values()) - m.recovered for m in members}
    repeated = {m.name: m.repeated_in_catch_up() for m in members}
    recovered_counts = [len(set(acked.values()) & m.recovered) for m in members]
    record_property("clients", len(members))
    record_property("acked", len(acked))
    record_property("acked_before_kill", acked_before_kill)
    record_property("recovered_min", min(recovered_counts))
    record_property("recovered_max", max(recovered_counts))
    record_property("missing", sum(len(v) for v in missing.values()))
    record_property("repeated_in_catch_up", sum(len(v) for v in repeated.values()))
    record_property("live_twice", sum(m.live_twice for m in members))
    record_property("stored", len(stored_ids))
    record_property("stored_unacked", len(set(stored_ids) - set(acked.values())))
    record_property("out_of_order_live", sum(m.out_of_order for m in members))
    record_property("reorder_lag_max_ms", round(1000 * max(m.reorder_lag_max for m in members), 1))
    page_missed = [m.missed_by_page_catch_up() for m in members]
    record_property("missed_by_page_catch_up", sum(len(ids) for ids in page_missed))
    record_property(
        "missed_by_page_catch_up_acked",
        sum(len(ids & set(acked.values())) for ids in page_missed),
    )
    record_property("orphan_workers_exit_s", round(orphans_gone_s, 2))
    record_property("restart_ready_s", round(ready_at - killed_at, 2))
    record_property("all_reconnected_s", round(reconnected_at - killed_at, 2))
    record_property("run_s", round(time.monotonic() - started, 1))

    assert acked_before_kill >= 300
    assert all(not ids for ids in missing.values()), f"acked but never recovered: {missing}"
    assert all(not ids for ids in repeated.values()), f"catch-up repeated: {repeated}"
    assert sum(m.live_twice for m in members) == 0, "a message delivered live twice"
    assert all(not m.early for m in members), [m.early for m in members]
    # Stored once each: no id twice, no clientId twice, every ack's id stored.
    assert len(stored_ids) == len(set(stored_ids))
    assert len(stored_client_ids) == len(set(stored_client_ids))
    assert set(acked.values()) <= set(stored_ids)
    assert all(acked[cid] == m["id"] for m in stored if (cid := m.get("clientId")) in acked)
    # Every member's view holds only stored messages.
    assert all(m.recovered <= set(stored_ids) for m in members)
    # The ghost is gone from the store and from presence, as every member last heard it.
    # (Nobody hears a `left` for it: it is gone before anyone is back. The page, and this
    # model, ask `who` after reconnecting.)
    assert not ghost_record_left
    assert "ghost" not in present
    assert all(m.present and "ghost" not in m.present for m in members), [
        m.present for m in members
    ]


# --- the DynamoDB-compatible server stopped mid-conversation -----------------------------------


def template_tables() -> TableNames:
    """The table names the project's template gives its functions."""
    environment = load_api(PROJECT_TEMPLATE).functions[0].environment
    return TableNames.from_env(environment)


def replay(recording: Path, server: MotoServer) -> int:
    """Send every request moto's recorder wrote (``MOTO_ENABLE_RECORDING``) to ``server``, in
    order; returns how many. The recorder writes each request before moto handles it, one at a
    time (tests/support/moto_server.py), so replaying the log onto an empty server rebuilds the
    state the stopped one had: moto keeps its state in memory only."""
    count = 0
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        data = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
        url = urlsplit(entry["url"])
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = {
            key: value
            for key, value in entry["headers"].items()
            if key.lower() not in ("content-length", "transfer-encoding")
        }
        conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
        try:
            conn.request(entry["method"], path, body=data, headers=headers)
            conn.getresponse().read()
        finally:
            conn.close()
        count += 1
    return count


def received_ids(person: ChatClient, wanted: set[str], timeout: float = 10) -> set[str]:
    """The ids of the ``message`` events ``person`` reads until it has seen ``wanted``."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while not wanted <= seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            seen.add(person.next("message", remaining, room=ROOM)["id"])
        except AssertionError:
            break
    return seen


@contextlib.contextmanager
def recording_moto(monkeypatch: pytest.MonkeyPatch, recording: Path) -> Iterator[MotoServer]:
    """A moto server of this test's own (stopping the session's would empty it under the other
    tests), recording every request to ``recording``."""
    monkeypatch.setenv("MOTO_ENABLE_RECORDING", "true")
    monkeypatch.setenv("MOTO_RECORDER_FILEPATH", str(recording))
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


def test_dynamodb_stopped_mid_conversation_senders_get_unavailable_then_service_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, record_property: Record
) -> None:
    import boto3

    from wschat.storage.dynamodb import ensure_tables

    first_log, second_log = tmp_path / "moto-1.jsonl", tmp_path / "moto-2.jsonl"
    with recording_moto(monkeypatch, first_log) as moto, contextlib.ExitStack() as stack:
        admin = boto3.client("dynamodb", endpoint_url=moto.url, region_name=TEST_REGION)
        tables = template_tables()
        ensure_tables(admin, tables)
        env = {"AWS_ENDPOINT_URL_DYNAMODB": moto.url, "AWS_REGION": TEST_REGION}
        (tmp_path / "gateway").mkdir()
        gateway = serve(
            tmp_path / "gateway",
            free_port(),
            "--store",
            "dynamodb",
            "--data-dir",
            str(tmp_path / "gateway"),
            *RELAXED_RATE,
            env=env,
        )
        stack.callback(gateway.close)
        pid = gateway.process.pid
        url = gateway.websocket_url
        people = {
            name: stack.enter_context(ChatClient.connect(url, name=name, rooms=[ROOM]))
            for name in ("alice", "bob", "carol")
        }
        acked: dict[str, str] = {}  # clientId -> id
        for round_ in range(10):
            for name, person in people.items():
                ack = person.say(f"{name} before {round_}", room=ROOM)
                acked[ack["clientId"]] = ack["id"]
        acked_before = dict(acked)

        moto.stop()
        # Every frame is answered, quickly, with `unavailable`; nothing is stored.
        refused_client_ids: list[str] = []
        answer_s = []
        for _ in range(2):
            for name, person in people.items():
                client_id = f"{name}-during-outage-{len(refused_client_ids)}"
                sent_at = time.monotonic()
                person.send("sendMessage", room=ROOM, message="lost?", clientId=client_id)
                error = person.next("error", timeout=20)
                answer_s.append(time.monotonic() - sent_at)
                assert error["code"] == "unavailable", error
                assert error.get("action") in (None, "sendMessage"), error
                refused_client_ids.append(client_id)
        assert people["bob"].request("hello", "error", timeout=20)["code"] == "unavailable"
        assert healthz(gateway)["connections"] == len(people)  # the gateway itself is up
        # A new connection cannot be registered: refused (503) rather than left unreachable.
        with pytest.raises(InvalidStatus) as refused:
            ChatClient.connect(url, name="dave", rooms=[ROOM], timeout=20).close()
        assert refused.value.response.status_code == 503

        # Back on the same port, with the state it had: moto keeps nothing across a restart,
        # so its own request log is replayed onto the new one before anyone uses it.
        monkeypatch.setenv("MOTO_RECORDER_FILEPATH", str(second_log))
        moto.start()
        replayed = replay(first_log, moto)
        assert gateway.process.poll() is None and gateway.process.pid == pid
        resumed_s = []
        for round_ in range(3):
            for name, person in people.items():
                started = time.monotonic()
                ack = person.say(f"{name} after {round_}", room=ROOM, timeout=20)
                resumed_s.append(time.monotonic() - started)
                acked[ack["clientId"]] = ack["id"]
        # Live delivery works again: everyone gets the messages sent after the outage.
        after_ids = set(acked.values()) - set(acked_before.values())
        for person in people.values():
            assert after_ids <= received_ids(person, after_ids), person
        with ChatClient.connect(url, name="dave", rooms=[ROOM]) as dave:
            assert dave.hello()["name"] == "dave"
        stored = full_history(url)
        assert healthz(gateway)["connections"] >= len(people)

    stored_ids = {m["id"] for m in stored}
    stored_client_ids = {m.get("clientId") for m in stored}
    record_property("acked_before_stop", len(acked_before))
    record_property("acked_total", len(acked))
    record_property("in_history_after", len(set(acked.values()) & stored_ids))
    record_property("unavailable_answers", len(answer_s) + 1)
    record_property("unavailable_answer_max_s", round(max(answer_s), 2))
    record_property("requests_replayed", replayed)
    record_property("refused_sends", len(refused_client_ids))
    record_property("refused_sends_stored", len(set(refused_client_ids) & stored_client_ids))
    record_property("first_ack_after_restart_s", round(resumed_s[0], 2))

    assert set(acked_before.values()) <= stored_ids, "acked before the outage, lost"
    assert set(acked.values()) <= stored_ids
    assert not set(refused_client_ids) & stored_client_ids, "`unavailable` but stored"
    assert max(answer_s) < 10, answer_s


# --- a client that vanishes without a close frame ------------------------------------------------

IDLE_TIMEOUT_S = 2.0
# A process holding one chat connection, active (a `hello` every half second, so the idle
# timeout spares it) until it is killed or frozen.
GHOST = """
import json, sys, time
from websockets.sync.client import connect
ws = connect(sys.argv[1], ping_interval=None, open_timeout=10, max_queue=None)
ws.send(json.dumps({"action": "hello"}))
while json.loads(ws.recv(timeout=10)).get("type") != "hello":
    pass
print("open", flush=True)
for _ in range(1200):
    time.sleep(0.5)
    ws.send(json.dumps({"action": "hello"}))
"""


@pytest.fixture(scope="module")
def idle_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``wschat serve`` (project template, SQLite) closing connections idle for 2 s."""
    directory = tmp_path_factory.mktemp("idle")
    args = ["--store", "sqlite", "--data-dir", str(directory)]
    server = serve(directory, free_port(), *args, "--idle-timeout", str(IDLE_TIMEOUT_S))
    try:
        yield server
    finally:
        server.close()


def wait_for_left(observer: ChatClient, name: str, timeout: float) -> dict[str, Any]:
    """The room's ``left`` event for ``name``; meanwhile the observer asks ``who`` every half
    second, which also keeps it from being idle itself."""
    deadline = time.monotonic() + timeout
    while True:
        observer.send("who", room=ROOM)
        try:
            return observer.next("left", 0.5, room=ROOM, name=name)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.parametrize(
    "vanish",
    ["killed", "frozen"],
    ids=["process-killed", "process-frozen-silent"],
)
def test_a_client_that_vanishes_without_a_close_frame_leaves_presence(
    idle_gateway: ServeProcess, vanish: str, record_property: Record
) -> None:
    """``killed``: SIGKILL to the process holding the socket; its kernel closes the TCP
    connection, with no WebSocket close frame. ``frozen``: SIGSTOP; the socket stays open and
    nothing at all arrives, so only the idle timeout can find it."""
    url = idle_gateway.websocket_url
    name = f"ghost-{vanish}"
    ghost = subprocess.Popen(
        [sys.executable, "-c", GHOST, chat_url(url, name=name, rooms=[ROOM])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        with ChatClient.connect(url, name=f"observer-{vanish}", rooms=[ROOM]) as observer:
            assert ghost.stdout is not None
            assert ghost.stdout.readline().strip() == "open"
            present = observer.request("who", "presence", room=ROOM)["members"]
            assert name in present
            vanished_at = time.monotonic()
            if vanish == "killed":
                ghost.kill()
                ghost.wait(TIMEOUT)
            else:
                ghost.send_signal(signal.SIGSTOP)
            # Frozen: idle timeout, then the close handshake's own 2 s, then $disconnect.
            left = wait_for_left(observer, name, timeout=IDLE_TIMEOUT_S + 8)
            cleaned_s = time.monotonic() - vanished_at
            assert name not in left["members"]
            observer.sync()  # the answers to earlier `who`s
            present = observer.request("who", "presence", room=ROOM)["members"]
            assert name not in present
            assert f"observer-{vanish}" in present
    finally:
        ghost.kill()  # SIGKILL ends a stopped process too
        ghost.wait(TIMEOUT)
    record_property("cleaned_up_s", round(cleaned_s, 2))
    if vanish == "frozen":
        # Not before the idle timeout: nothing told the gateway earlier.
        assert cleaned_s >= IDLE_TIMEOUT_S * 0.9


def test_a_record_whose_connection_is_gone_is_dropped_by_the_next_fan_outs_410(
    idle_gateway: ServeProcess, record_property: Record
) -> None:
    """A connection record with no connection behind it (its $disconnect never ran: a crashed
    gateway, a failed invocation) is found by the next message to its room: the gateway
    answers 410 for it, and the room hears it left."""
    from wschat.storage.base import Connection
    from wschat.storage.sqlite import SqliteStore

    url = idle_gateway.websocket_url
    name = "ghost-record"
    database = idle_gateway.directory / "wschat.sqlite3"
    with ChatClient.connect(url, name="observer-410", rooms=[ROOM]) as observer:
        store = SqliteStore(database)
        try:
            # Older than a $connect can run: a 410 for it is a departure (service.py).
            opened = int(time.time() * 1000) - 60_000
            store.put_connection(
                Connection.opened("GhostRecord0000=", opened, name=name, rooms=frozenset([ROOM]))
            )
        finally:
            store.close()
        assert name in observer.request("who", "presence", room=ROOM)["members"]
        sent_at = time.monotonic()
        observer.say("anyone there?", room=ROOM)
        left = observer.next("left", 10, room=ROOM, name=name)
        cleaned_s = time.monotonic() - sent_at
        assert name not in left["members"]
        observer.sync()
        assert name not in observer.request("who", "presence", room=ROOM)["members"]
    assert name not in stored_connections(database).values()
    record_property("cleaned_up_s", round(cleaned_s, 2))

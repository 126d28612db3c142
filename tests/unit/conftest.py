"""Fixtures for the chat without sockets.

* The Lambda handlers in-process: the real SQLite store in a temporary file, a recording Sender
  on the local fast path, a Lambda context, and what they print (JSON log lines, EMF metrics).
* The chat service alone (``Chat``): a ``ChatService`` over ``SqliteStore(":memory:")``, a
  recording Sender and a clock the test moves by hand.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support.events import LambdaContext, lambda_context, load_event, management_endpoint_of

from wschat.delivery import local
from wschat.delivery.base import (
    API_GATEWAY_INLINE_LIMIT,
    DeliveryError,
    FanoutResult,
    GoneConnection,
)
from wschat.handlers import _runtime, authorize
from wschat.observability import get_logger
from wschat.protocol import ProtocolError
from wschat.service import ChatConfig, ChatService, Outcome
from wschat.storage.sqlite import SqliteStore

# Every sample event belongs to this stage; handlers post back through it.
SAMPLE_ENDPOINT = management_endpoint_of(load_event("send_message"))

# The handlers' cached store factory, held here because a test may monkeypatch _runtime.store.
_cached_store = _runtime.store
_cached_job_queue = _runtime.job_queue


class RecordingSender:
    """A Sender (``wschat.delivery.base.Sender``) that records posts instead of sending them.

    Tell it which connections are ``gone`` (410, API Gateway already closed them) or
    ``failing`` (any other delivery error, with its reason). ``on_post`` runs before each
    successful post: a test can look at the store at the moment a recipient is reached.
    """

    inline_limit: int | None = API_GATEWAY_INLINE_LIMIT  # as the sender it stands in for

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.gone: set[str] = set()
        self.failing: dict[str, str] = {}
        self.on_post: Callable[[str, dict[str, Any]], None] | None = None
        self.batch_calls = 0  # post_batch calls: one sender call for an ack and its message

    def post(self, connection_id: str, data: bytes) -> None:
        if connection_id in self.gone:
            raise GoneConnection(connection_id)
        if connection_id in self.failing:
            raise DeliveryError(self.failing[connection_id])
        if self.on_post is not None:
            self.on_post(connection_id, json.loads(data))
        self.posts.append((connection_id, bytes(data)))

    def post_many(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> FanoutResult:
        result = FanoutResult()
        for connection_id in connection_ids:
            try:
                self.post(connection_id, data)
            except GoneConnection:
                result.gone.append(connection_id)
            except DeliveryError as exc:
                result.failed[connection_id] = str(exc)
            else:
                result.delivered += 1
        return result

    def post_batch(self, batches: Sequence[tuple[Sequence[str], bytes]]) -> list[FanoutResult]:
        self.batch_calls += 1
        return [self.post_many(connection_ids, data) for connection_ids, data in batches]

    def received(self, connection_id: str, type: str | None = None) -> list[dict[str, Any]]:
        """The events posted to one connection (those of one ``type`` if given), decoded."""
        events = [json.loads(data) for cid, data in self.posts if cid == connection_id]
        return [e for e in events if type is None or e["type"] == type]

    def types(self, connection_id: str) -> list[str]:
        """The ``type`` of every event posted to one connection, in order."""
        return [event["type"] for event in self.received(connection_id)]

    def recipients(self, type: str | None = None) -> set[str]:
        """Who got anything (anything of one ``type``)."""
        return {cid for cid, data in self.posts if type is None or json.loads(data)["type"] == type}

    def clear(self) -> None:
        self.posts.clear()


class Clock:
    """Epoch milliseconds that move only when the test says: ``ChatService(now_ms=clock)``.

    Starts at the real time: the SQLite store drops messages whose TTL is past by the real clock,
    so a clock far in the past would hide every stored message from ``history``.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self.now = int(time.time() * 1000) if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class RecordingLog:
    """The service's ``Log``: keeps each warning with its ``extra``."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, msg: str, *args: object, extra: Mapping[str, object] | None = None) -> None:
        self.warnings.append((msg % args if args else msg, dict(extra or {})))


class Chat:
    """A ChatService over a fresh in-memory SQLite store, a RecordingSender and a Clock, with
    the frames a client would send written as calls: ``chat.do("c1", "join", room="a")``."""

    def __init__(self, config: ChatConfig | None = None, *, clock: Clock | None = None) -> None:
        self.store = SqliteStore(":memory:")
        self.sender = RecordingSender()
        self.clock = clock or Clock()
        self.log = RecordingLog()
        self.service = ChatService(
            self.store, self.sender, config or ChatConfig(), log=self.log, now_ms=self.clock
        )

    def connect(self, connection_id: str, **query: str) -> str:
        """``$connect`` with a query string; returns the connection's name."""
        return self.service.connect(connection_id, self.clock(), query)

    def do(self, connection_id: str, action: str, **fields: Any) -> Outcome:
        """One frame ``{"action": action, **fields}`` from a connection."""
        return self.service.handle(connection_id, json.dumps({"action": action, **fields}))

    def refused(self, connection_id: str, action: str, **fields: Any) -> ProtocolError:
        """The ProtocolError a frame is refused with (the test fails if it is accepted)."""
        try:
            self.do(connection_id, action, **fields)
        except ProtocolError as error:
            return error
        raise AssertionError(f"{action} {fields} was accepted")

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def chat() -> Iterator[Chat]:
    opened = Chat()
    yield opened
    opened.close()


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Points the handlers at a fresh SQLite store (WSCHAT_STORE=sqlite) and drops the store
    and the chat settings they cached, before and after the test, so no test sees another's
    connections and a test's WSCHAT_* variables (set before its first handler call) apply."""
    path = tmp_path / "wschat.sqlite3"
    for name in [name for name in os.environ if name.startswith("WSCHAT_")]:
        monkeypatch.delenv(name)  # the developer's own settings (auth, limits) stay out
    monkeypatch.setenv("WSCHAT_STORE", "sqlite")
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(path))
    _drop_cached_runtime()
    yield path
    _drop_cached_runtime()


@pytest.fixture
def configure(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``configure(WSCHAT_RATE_BURST="3")``: settings for the handlers' next calls (the handlers
    cache their settings per cold start, so this drops the cached ones)."""

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _runtime.config.cache_clear()
        authorize.verifier.cache_clear()

    return apply


def _drop_cached_runtime() -> None:
    if _cached_store.cache_info().currsize:
        _cached_store().close()
    _cached_store.cache_clear()
    _runtime.config.cache_clear()
    authorize.verifier.cache_clear()
    _cached_job_queue.cache_clear()


@pytest.fixture
def store(store_path: Path) -> Iterator[SqliteStore]:
    """A second connection to the handlers' SQLite file: what it shows, the handlers wrote."""
    opened = SqliteStore(store_path)
    yield opened
    opened.close()


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingSender]:
    """A RecordingSender registered for the sample events' @connections endpoint."""
    # The override would send handlers to another endpoint than the one registered here.
    monkeypatch.delenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", raising=False)
    recording = RecordingSender()
    local.register_channel(SAMPLE_ENDPOINT, recording)
    yield recording
    local.unregister_channel(SAMPLE_ENDPOINT)


@pytest.fixture
def context() -> LambdaContext:
    return lambda_context()


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at the time of the write.

    powertools' Logger keeps the stdout it saw when it was built, while capsys installs a new
    one for each phase of each test (setup, call, teardown).
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class StdoutLines:
    """The JSON lines a handler printed: log lines, and EMF metric lines (the ones with an
    ``_aws`` key, which CloudWatch turns into metrics). Each kind is read once."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._unread: list[dict[str, Any]] = []

    def _take(self, metrics: bool) -> list[dict[str, Any]]:
        out = self._capsys.readouterr().out
        self._unread += [json.loads(line) for line in out.splitlines() if line.strip()]
        taken = [line for line in self._unread if ("_aws" in line) == metrics]
        self._unread = [line for line in self._unread if ("_aws" in line) != metrics]
        return taken

    def logs(self) -> list[dict[str, Any]]:
        return self._take(metrics=False)

    def metrics(self) -> list[dict[str, Any]]:
        return self._take(metrics=True)


@pytest.fixture
def stdout_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[StdoutLines]:
    handler: Any = get_logger().registered_handler
    previous = handler.stream
    # Assigned, not setStream(): that flushes the old stream, which capsys may have closed.
    handler.stream = _CurrentStdout()
    yield StdoutLines(capsys)
    if not getattr(previous, "closed", False):
        handler.stream = previous


@pytest.fixture
def log_lines(stdout_lines: StdoutLines) -> Callable[[], list[dict[str, Any]]]:
    """Reads the JSON log lines written to stdout since the last read."""
    return stdout_lines.logs


@pytest.fixture
def metric_lines(stdout_lines: StdoutLines) -> Callable[[], list[dict[str, Any]]]:
    """Reads the EMF metric lines written to stdout since the last read."""
    return stdout_lines.metrics

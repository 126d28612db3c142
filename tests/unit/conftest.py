"""Fixtures for running the Lambda handlers in-process: the real SQLite store in a temporary
file, a recording Sender on the local fast path, a Lambda context and the JSON log lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support.events import LambdaContext, lambda_context, load_event, management_endpoint_of

from wschat.delivery import local
from wschat.delivery.base import ConnectionInfo, DeliveryError, FanoutResult, GoneConnection
from wschat.handlers import _runtime
from wschat.observability import get_logger
from wschat.storage.sqlite import SqliteStore

# Every sample event belongs to this stage; handlers post back through it.
SAMPLE_ENDPOINT = management_endpoint_of(load_event("send_message"))

# The handlers' cached store factory, held here because a test may monkeypatch _runtime.store.
_cached_store = _runtime.store


class RecordingSender:
    """A Sender (``wschat.delivery.base.Sender``) that records posts instead of sending them.

    Tell it which connections are ``gone`` (410, API Gateway already closed them) or
    ``failing`` (any other delivery error, with its reason).
    """

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        self.deleted: list[str] = []
        self.gone: set[str] = set()
        self.failing: dict[str, str] = {}

    def post(self, connection_id: str, data: bytes) -> None:
        if connection_id in self.gone:
            raise GoneConnection(connection_id)
        if connection_id in self.failing:
            raise DeliveryError(self.failing[connection_id])
        self.posts.append((connection_id, bytes(data)))

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> FanoutResult:
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

    def get(self, connection_id: str) -> ConnectionInfo:
        if connection_id in self.gone:
            raise GoneConnection(connection_id)
        return ConnectionInfo(
            connected_at="2024-11-25T01:35:12.345Z",
            last_active_at="2024-11-25T01:35:25.120Z",
            source_ip="203.0.113.25",
            user_agent=None,
        )

    def delete(self, connection_id: str) -> None:
        if connection_id in self.gone:
            raise GoneConnection(connection_id)
        self.deleted.append(connection_id)

    def received(self, connection_id: str) -> list[dict[str, Any]]:
        """The events posted to one connection, decoded."""
        return [json.loads(data) for cid, data in self.posts if cid == connection_id]

    def recipients(self) -> set[str]:
        return {cid for cid, _ in self.posts}


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Points the handlers at a fresh SQLite store (WSCHAT_STORE=sqlite) and drops the store
    they cached, before and after the test, so no test sees another's connections."""
    path = tmp_path / "wschat.sqlite3"
    monkeypatch.setenv("WSCHAT_STORE", "sqlite")
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(path))
    _drop_cached_store()
    yield path
    _drop_cached_store()


def _drop_cached_store() -> None:
    if _cached_store.cache_info().currsize:
        _cached_store().close()
    _cached_store.cache_clear()


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


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads the JSON log lines written to stdout since the last read."""
    handler: Any = get_logger().registered_handler
    previous = handler.stream
    # Assigned, not setStream(): that flushes the old stream, which capsys may have closed.
    handler.stream = _CurrentStdout()

    def read() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    yield read
    if not getattr(previous, "closed", False):
        handler.stream = previous

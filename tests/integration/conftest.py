"""Gateway fixtures: a Gateway running in-process on port 0, and ``wschat serve`` as a process.

``running_gateway(config)`` starts a ``Gateway`` on its own event loop in a background thread,
so tests stay plain synchronous functions and talk to it the way any client would: websockets'
sync client on 127.0.0.1, boto3, raw sockets. Every wait in these helpers has a deadline.

``ServeProcess`` runs the ``wschat`` command and reads the URLs it prints. Both come from
``wschat.testing``, the harness the benchmarks use too; this module adds what only the tests
need (the inspector app, bounded waits that fail the test).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.sync.client import ClientConnection

from wschat.gateway import core
from wschat.gateway.server import Gateway, GatewayConfig
from wschat.gateway.template import load_api
from wschat.testing import gateway as testing_gateway
from wschat.testing import serve
from wschat.testing.gateway import REGION, LogCapture, captured_logs, ws_connect
from wschat.testing.serve import ServeFailed, ServeProcess, free_port, wschat_command

__all__ = [  # what test modules import from here
    "REGION",
    "LogCapture",
    "ServeFailed",
    "ServeProcess",
    "captured_logs",
    "free_port",
    "ws_connect",
    "wschat_command",
]

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "fixtures" / "apps"
INSPECTOR = APPS / "inspector"
PROJECT_TEMPLATE = REPO / "template.yaml"

# Each wait in a test is bounded by this unless it says otherwise.
TIMEOUT = 5.0

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = TIMEOUT, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(
    ws: ClientConnection, predicate: Callable[[Any], bool], timeout: float = TIMEOUT
) -> Any:
    """The first JSON message matching ``predicate``, skipping others (presence events...)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        try:
            message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            pytest.fail(f"no matching message within {timeout}s; got {seen!r}")
        if predicate(message):
            return message
        seen.append(message)


def drain(ws: ClientConnection, quiet: float = 0.3) -> list[Any]:
    """Every JSON message that arrives until none has for ``quiet`` seconds (at most 20)."""
    messages = []
    while len(messages) < 20:
        try:
            messages.append(json.loads(ws.recv(timeout=quiet)))
        except TimeoutError:
            break
    return messages


class EventsLog:
    """The JSON lines the inspector app's handlers append (``EVENTS_LOG``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(
        self, kind: str | None = None, connection_id: str | None = None
    ) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = [json.loads(line) for line in lines if line.strip()]
        return [
            record
            for record in records
            if (kind is None or record["kind"] == kind)
            and (
                connection_id is None
                or record["event"]["requestContext"]["connectionId"] == connection_id
            )
        ]

    def wait(
        self, kind: str, connection_id: str | None = None, count: int = 1, timeout: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        """At least ``count`` records of ``kind`` (for one connection), within ``timeout``."""
        return wait_for(
            lambda: (found := self.records(kind, connection_id)) and len(found) >= count and found,
            timeout,
            f"{count} {kind} record(s) for {connection_id or 'any connection'}",
        )


@dataclass
class RunningGateway(testing_gateway.RunningGateway):
    """wschat.testing's running gateway, with what the tests keep beside it: the inspector
    app's events log, and the connection id of a socket asked of its echo route."""

    events: EventsLog | None = None

    def connection_id(self, ws: ClientConnection) -> str:
        """The API Gateway connection id of ``ws``, asked of the inspector's echo route."""
        ws.send(json.dumps({"action": "echo"}))
        reply = recv_json(ws)
        return str(reply["event"]["requestContext"]["connectionId"])


@contextlib.contextmanager
def running_gateway(
    config: GatewayConfig,
    events: Path | None = None,
    *,
    prepare: Callable[[Gateway], None] | None = None,
) -> Iterator[RunningGateway]:
    """Start ``config``'s gateway (port 0 picks a free port) on a loop thread; stop it on exit."""
    with testing_gateway.running_gateway(config, RunningGateway, prepare=prepare) as running:
        running.events = EventsLog(events) if events else None
        yield running


def inspector_config(events: Path, **limits: Any) -> GatewayConfig:
    """The inspector app from its template, with ``limits`` lowered for the test at hand."""
    api = load_api(INSPECTOR / "template.yaml", parameters={"EventsLog": str(events)})
    # 3 s rather than 29 s keeps the integration timeout test short while leaving a loaded
    # machine's cold starts well inside it.
    defaults: dict[str, Any] = {"integration_timeout": 3.0}
    return GatewayConfig(
        api=api,
        port=0,
        limits=core.Limits(**{**defaults, **limits}),
        shutdown_timeout=5.0,
    )


@contextlib.contextmanager
def inspector_gateway(tmp: Path, **limits: Any) -> Iterator[RunningGateway]:
    events = tmp / "events.jsonl"
    with running_gateway(inspector_config(events, **limits), events) as running:
        yield running


@pytest.fixture(scope="session")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The inspector app with API Gateway's own limits (integration timeout lowered to 3 s),
    shared by every test that needs no special configuration."""
    with inspector_gateway(tmp_path_factory.mktemp("inspector")) as running:
        yield running


# --- `wschat serve` as a process ---------------------------------------------------------------


@contextlib.contextmanager
def wschat_serve(
    args: list[str], directory: Path, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    """``wschat serve --port 0 ARGS`` run from the repository, killed on exit."""
    with serve.wschat_serve(args, directory, env, cwd=REPO) as server:
        yield server


def raw_upgrade(url: str, timeout: float = TIMEOUT) -> socket.socket:
    """A TCP socket that completed the WebSocket handshake and nothing else (for abrupt drops)."""
    host_port, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = host_port.partition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(
        (
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock

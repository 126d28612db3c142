"""Gateway fixtures: a Gateway running in-process on port 0, and ``wschat serve`` as a process.

``running_gateway(config)`` starts a ``Gateway`` on its own event loop in a background thread,
so tests stay plain synchronous functions and talk to it the way any client would: websockets'
sync client on 127.0.0.1, boto3, raw sockets. Every wait in these helpers has a deadline.

``ServeProcess`` runs the ``wschat`` command and reads the URLs it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.sync.client import ClientConnection, connect

from wschat.gateway import core
from wschat.gateway.server import Gateway, GatewayConfig
from wschat.gateway.template import load_api

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "fixtures" / "apps"
INSPECTOR = APPS / "inspector"
PROJECT_TEMPLATE = REPO / "template.yaml"
REGION = "ap-northeast-2"

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


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    """websockets' sync client with bounded waits and no proxy from the environment."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", 2)
    kwargs.setdefault("proxy", None)
    return connect(url, **kwargs)


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


class LogCapture(logging.Handler):
    """The gateway's log (``wschat.gateway``) and its functions' output (``wschat.functions``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def captured_logs() -> Iterator[LogCapture]:
    logger = logging.getLogger("wschat")
    capture = LogCapture()
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)


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
class RunningGateway:
    """A started Gateway and the loop thread that runs it."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    logs: LogCapture
    events: EventsLog | None = None
    client_ssl: Any = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return self.gateway.websocket_url

    @property
    def management_url(self) -> str:
        return self.gateway.management_url

    def call(self, function: Callable[[], T], timeout: float = TIMEOUT) -> T:
        """Run ``function`` on the gateway's loop (to read its state safely); return its value."""

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def connect(
        self,
        query: str = "",
        *,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        user_agent: str | None = "wschat-tests/1.0",
        **kwargs: Any,
    ) -> ClientConnection:
        """A websockets sync client connected to the stage (``query`` starts with ``?``)."""
        kwargs.setdefault("ping_interval", None)  # only the test's own frames
        # ws:// only: the sync client reads and writes one SSLSocket from two threads, which
        # now and then loses the handshake request under TLS 1.3 (see test_gateway_tls).
        assert self.client_ssl is None, "use websockets' asyncio client for wss://"
        return ws_connect(
            self.url + query,
            additional_headers=headers,
            user_agent_header=user_agent,
            **kwargs,
        )

    def connection_id(self, ws: ClientConnection) -> str:
        """The API Gateway connection id of ``ws``, asked of the inspector's echo route."""
        ws.send(json.dumps({"action": "echo"}))
        reply = recv_json(ws)
        return str(reply["event"]["requestContext"]["connectionId"])

    def management_client(self, **kwargs: Any) -> Any:
        """boto3's apigatewaymanagementapi client pointed at this gateway's @connections URL."""
        import boto3

        kwargs.setdefault("verify", self.client_verify)
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.management_url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            **kwargs,
        )

    @property
    def client_verify(self) -> str | bool:
        ca = self.gateway.config.ca_bundle
        return str(ca) if ca is not None else True

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        asyncio.run_coroutine_threadsafe(self.gateway.shutdown(), self.loop).result(30)


@contextlib.contextmanager
def running_gateway(config: GatewayConfig, events: Path | None = None) -> Iterator[RunningGateway]:
    """Start ``config``'s gateway (port 0 picks a free port) on a loop thread; stop it on exit."""
    config.port = 0
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    gateway = Gateway(config)
    with captured_logs() as logs:
        running = RunningGateway(gateway, loop, logs, EventsLog(events) if events else None)
        if config.ssl_context is not None and config.ca_bundle is not None:
            import ssl

            running.client_ssl = ssl.create_default_context(cafile=str(config.ca_bundle))
        try:
            asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(30)
            yield running
        finally:
            try:
                running.stop()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
                if not thread.is_alive():
                    loop.close()


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

_URL_LINE = re.compile(r"^\s+(WebSocket|@connections|Chat page|Health|CA bundle):\s+(\S+)")


def wschat_command() -> list[str]:
    script = Path(sys.executable).with_name("wschat")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "wschat.cli"]


class ServeProcess:
    """``wschat serve --port 0 ...`` in a process of its own; ``urls`` holds what it printed.

    stdout is read by a thread (the test never blocks on a pipe); stderr goes to a file shown
    when the test fails.
    """

    def __init__(self, args: list[str], directory: Path, env: dict[str, str] | None = None):
        self.directory = directory
        self.stderr_path = directory / "serve.stderr"
        self.stdout_lines: list[str] = []
        self.urls: dict[str, str] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [*wschat_command(), "serve", "--port", "0", *args],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"wschat serve printed no ready line in {timeout}s\n{self.stderr}")
            if line is None:
                pytest.fail(f"wschat serve exited ({self.process.poll()})\n{self.stderr}")
            self.stdout_lines.append(line)
            match = _URL_LINE.match(line)
            if match:
                self.urls[match.group(1)] = match.group(2)
            if line.startswith("Press Ctrl+C"):
                return self

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def websocket_url(self) -> str:
        return self.urls["WebSocket"]

    @property
    def management_url(self) -> str:
        # Printed as ".../{stage}/@connections/{connectionId}"; boto3 wants ".../{stage}".
        return self.urls["@connections"].split("/@connections", 1)[0]

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` and return the exit code (fails the test if it does not exit)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            pytest.fail(f"wschat serve did not exit within {timeout}s of {signum}\n{self.stderr}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._stderr.close()


@contextlib.contextmanager
def wschat_serve(
    args: list[str], directory: Path, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    server = ServeProcess(args, directory, env)
    try:
        yield server.wait_ready()
    finally:
        server.close()


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

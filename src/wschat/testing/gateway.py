"""A ``Gateway`` in this process, on an event loop of its own in a background thread, so a
test stays a plain synchronous function and talks to it the way any client would: websockets'
sync client on 127.0.0.1, boto3, raw sockets.

``running_gateway(config)`` starts it on a free port and stops it (every ``$disconnect`` run)
on exit; ``RunningGateway.call`` reads its state on its own loop. The gateway's log and its
functions' output are captured meanwhile (``logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.sync.client import ClientConnection, connect

from wschat.gateway.server import Gateway, GatewayConfig

TIMEOUT = 5.0
REGION = "ap-northeast-2"

T = TypeVar("T")


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    """websockets' sync client with bounded waits and no proxy from the environment."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", 2)
    kwargs.setdefault("proxy", None)
    connection: ClientConnection = connect(url, **kwargs)
    return connection


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


@dataclass
class RunningGateway:
    """A started Gateway and the loop thread that runs it."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    logs: LogCapture
    client_ssl: ssl.SSLContext | None = None
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


R = TypeVar("R", bound=RunningGateway)


@contextlib.contextmanager
def running_gateway(
    config: GatewayConfig,
    kind: type[R] = RunningGateway,  # type: ignore[assignment]
    *,
    prepare: Callable[[Gateway], None] | None = None,
) -> Iterator[R]:
    """Start ``config``'s gateway (on a free port) on a loop thread; stop it on exit.
    ``kind`` is the RunningGateway (sub)class to hand back; ``prepare`` sees the gateway
    before it starts (to mount HTTP handlers, as ``wschat serve`` mounts the chat page)."""
    config.port = 0
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    gateway = Gateway(config)
    if prepare is not None:
        prepare(gateway)
    with captured_logs() as logs:
        running = kind(gateway, loop, logs)
        if config.ssl_context is not None and config.ca_bundle is not None:
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

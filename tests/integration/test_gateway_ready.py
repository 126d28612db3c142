"""A gateway that is starting refuses nobody: its port opens before its functions are warm (the
slow_start app takes 1.5 s to import), and a handshake that arrives then is held until they
are, then served — as scripts and health checks that wait for the port expect. Only a gateway
that is shutting down answers 503."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.integration.conftest import APPS
from tests.support.moto_server import free_port
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from wschat.gateway import core
from wschat.gateway.server import Gateway, GatewayConfig
from wschat.gateway.template import load_api

pytestmark = pytest.mark.integration

CLIENTS = 50


def _wait_for_port(port: int, timeout: float = 20.0) -> float:
    """Poll until the port accepts a TCP connection, as a script would; when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.monotonic()
        except OSError:
            time.sleep(0.005)
    raise AssertionError(f"port {port} never opened")


def _handshake(url: str) -> int:
    try:
        with connect(url, open_timeout=20, close_timeout=2):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_handshakes_the_moment_the_port_opens_are_all_served() -> None:
    port = free_port()
    config = GatewayConfig(
        api=load_api(APPS / "slow_start" / "template.yaml"),
        port=port,
        limits=core.Limits(integration_timeout=20.0),
        shutdown_timeout=5.0,
    )
    gateway = Gateway(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(gateway.start(), loop)
    try:
        _wait_for_port(port)
        was_ready = gateway.ready.is_set()
        url = f"ws://127.0.0.1:{port}/{config.stage}"
        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(_handshake, [url] * CLIENTS))
        started.result(30)
        assert not was_ready, "the functions were warm before the port opened: nothing tested"
        assert statuses == [101] * CLIENTS
    finally:
        asyncio.run_coroutine_threadsafe(gateway.shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

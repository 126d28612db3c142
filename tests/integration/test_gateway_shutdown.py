"""Graceful shutdown of ``wschat serve``: SIGTERM or SIGINT closes every client with 1001, runs
$disconnect for each (the connections store ends empty) and the process exits 0."""

from __future__ import annotations

import signal
import sqlite3
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from tests.integration.conftest import (
    PROJECT_TEMPLATE,
    TIMEOUT,
    inspector_gateway,
    wait_for,
    ws_connect,
    wschat_serve,
)
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.integration


def _stored_ids(database: Path) -> set[str]:
    if not database.exists():
        return set()
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute('SELECT connectionId FROM "websocket-connections"')}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_clients_with_1001_runs_disconnect_and_exits_0(
    tmp_path: Path, signum: int
) -> None:
    database = tmp_path / "wschat.sqlite3"
    args = ["--template", str(PROJECT_TEMPLATE), "--store", "sqlite", "--data-dir", str(tmp_path)]
    with wschat_serve(args, tmp_path) as server, ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(server.websocket_url)) for _ in range(3)]
        wait_for(lambda: len(_stored_ids(database)) == 3, what="three stored connections")

        exit_code = server.signal(signum)

        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # skip whatever arrived before the close (presence events)
                    ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None, "closed without a close frame"
            codes.append(closed.value.rcvd.code)
    assert exit_code == 0, server.stderr
    assert codes == [1001, 1001, 1001]
    assert _stored_ids(database) == set()  # every $disconnect ran before the exit
    assert server.stderr.count("$disconnect DisconnectFunction 200") == 3
    assert "gateway stopped" in server.stderr


def test_signal_with_no_clients_exits_0_promptly(tmp_path: Path) -> None:
    args = ["--template", str(PROJECT_TEMPLATE), "--data-dir", str(tmp_path)]
    with wschat_serve(args, tmp_path) as server:
        assert server.signal(signal.SIGTERM, timeout=10) == 0, server.stderr


def test_shutdown_during_connect_still_runs_disconnect(tmp_path: Path) -> None:
    """A client whose $connect is running when the gateway stops is let in, closed with 1001
    like the others, and its $disconnect runs: what $connect stored is cleaned up."""
    outcome: dict[str, object] = {}
    with inspector_gateway(tmp_path) as gateway:
        events = gateway.events
        assert events is not None

        def slow_client() -> None:
            with gateway.connect("?sleep=1") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=TIMEOUT)
                outcome["code"] = closed.value.rcvd.code if closed.value.rcvd else None

        client = threading.Thread(target=slow_client)
        client.start()
        events.wait("connect")  # $connect is running (it sleeps 1 s)
        gateway.stop()
        client.join(TIMEOUT)
        assert not client.is_alive()
        connects, disconnects = events.records("connect"), events.records("disconnect")
    assert outcome == {"code": 1001}
    assert len(connects) == 1
    assert [d["event"]["requestContext"]["connectionId"] for d in disconnects] == [
        connects[0]["event"]["requestContext"]["connectionId"]
    ]

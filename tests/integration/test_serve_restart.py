"""A restarted `wschat serve` starts with no connections: records that a killed gateway left
behind (its $disconnect never ran) are forgotten, while message history is kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.integration.conftest import wschat_serve

from wschat.storage.base import Connection, NewMessage
from wschat.storage.sqlite import SqliteStore

pytestmark = pytest.mark.integration


def test_stale_connections_are_forgotten_and_history_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "wschat.sqlite3")
    now = int(time.time() * 1000)
    store.put_connection(
        Connection.opened("stale-1", now, name="ghost", rooms=frozenset({"lobby"}))
    )
    store.append_message(NewMessage("lobby", "ghost", "still here", now, now // 1000 + 3600))
    store.close()

    with wschat_serve(["--data-dir", str(data)], tmp_path):
        store = SqliteStore(data / "wschat.sqlite3")
        try:
            assert store.get_connection("stale-1") is None
            assert store.room_members("lobby") == []
            assert [m.text for m in store.message_history("lobby").messages] == ["still here"]
        finally:
            store.close()

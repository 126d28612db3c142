"""Code reload: a real edit to a function's file is picked up by its next invocation while
the WebSocket connection stays open; a syntax error in the new code is that invocation's init
error and the gateway keeps serving; the fix after it is picked up too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.integration.conftest import running_gateway, wait_for

from wschat.gateway import core
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import api_from_routes

pytestmark = pytest.mark.integration

APP = """
import os

VERSION = {version!r}


def on_default(event, context):
    with open(os.environ["SEEN_LOG"], "a") as log:
        log.write(VERSION + "\\n")
    return {{"statusCode": 200}}
"""


def _write(path: Path, text: str) -> None:
    # Written whole and renamed, as editors save: the watcher never sees half a file.
    partial = path.with_suffix(".tmp")
    partial.write_text(text)
    partial.replace(path)


def _seen(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_an_edit_is_picked_up_by_the_next_invocation_with_the_connection_kept(
    tmp_path: Path,
) -> None:
    code, log = tmp_path / "code", tmp_path / "seen.log"
    code.mkdir()
    _write(code / "app.py", APP.format(version="v1"))
    api = api_from_routes(
        ["$default=app.on_default"],
        environment={"SEEN_LOG": str(log)},
        code_dir=code,
        timeout=5.0,
    )
    config = GatewayConfig(api=api, reload=True, limits=core.Limits(integration_timeout=5.0))
    with running_gateway(config) as running:
        [pool] = running.gateway.pools.values()
        with running.connect() as ws:

            def send_and_see(expected: str) -> None:
                ws.send(json.dumps({"action": "anything"}))
                wait_for(lambda: _seen(log)[-1:] == [expected], 10, f"{expected} to run")

            def edit(text: str) -> None:
                generation = pool.generation
                _write(code / "app.py", text)
                wait_for(lambda: pool.generation > generation, 10, "the reload")

            send_and_see("v1")
            edit(APP.format(version="v2"))
            send_and_see("v2")

            edit(APP.format(version="v3") + "\ndef broken(:\n")
            ws.send(json.dumps({"action": "anything"}))
            error = json.loads(ws.recv(timeout=10))
            assert error["message"] == "Internal server error"
            assert _seen(log)[-1] == "v2"  # the broken code never ran

            edit(APP.format(version="v4"))
            send_and_see("v4")
        assert "reloaded: its code changed" in running.logs.text


def test_without_reload_an_edit_changes_nothing_until_a_restart(tmp_path: Path) -> None:
    code, log = tmp_path / "code", tmp_path / "seen.log"
    code.mkdir()
    _write(code / "app.py", APP.format(version="v1"))
    api = api_from_routes(
        ["$default=app.on_default"], environment={"SEEN_LOG": str(log)}, code_dir=code, timeout=5.0
    )
    with running_gateway(GatewayConfig(api=api)) as running, running.connect() as ws:
        ws.send(json.dumps({"action": "a"}))
        wait_for(lambda: _seen(log) == ["v1"], 10, "v1 to run")
        _write(code / "app.py", APP.format(version="v2"))
        time.sleep(0.5)  # what a watcher would need to notice; there is none
        ws.send(json.dumps({"action": "a"}))
        wait_for(lambda: len(_seen(log)) == 2, 10, "the second invocation")
    assert _seen(log) == ["v1", "v1"]

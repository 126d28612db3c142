"""``wschat serve --debug``: a real DAP client (tests/support/dap.py, as VS Code speaks to
debugpy) attaches to a function's worker over TCP, stops at a breakpoint in a handler invoked
through a WebSocket message, and sits there longer than the function's timeout (1 s) and the
integration timeout (2 s here): the caller still gets the handler's reply (a handshake held at
a breakpoint in the ``$connect`` authorizer still opens). Without a debugger
both timeouts fire, and the port listens again on the replaced worker; a code reload listens
on the same port; ``--debug-wait`` holds the import until the debugger is there."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import (
    APPS,
    REPO,
    TIMEOUT,
    recv_json,
    running_gateway,
    wait_for,
    ws_connect,
    wschat_command,
    wschat_serve,
)
from tests.support.dap import DapClient
from tests.support.moto_server import free_port

from wschat.gateway import core
from wschat.gateway.debugging import parse_targets
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import load_api

pytestmark = pytest.mark.integration

APP = APPS / "debuggable"
INTEGRATION_TIMEOUT = 2.0
# Longer than DefaultFunction's Timeout (1 s) and the integration timeout above.
PAUSE = INTEGRATION_TIMEOUT + 1.0


def _line_of(path: Path, marker: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if marker in line)


def _config(app: Path, debug: list[str], *, wait: bool = False, **options: Any) -> GatewayConfig:
    return GatewayConfig(
        api=load_api(app / "template.yaml"),
        limits=core.Limits(integration_timeout=INTEGRATION_TIMEOUT),
        debug=parse_targets(debug, wait=wait),
        shutdown_timeout=5.0,
        **options,
    )


def _stop_and_resume(dap: DapClient, ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    """Send ``message``, wait at the breakpoint for PAUSE seconds, continue; the reply."""
    ws.send(json.dumps(message))
    stopped = dap.event("stopped", timeout=TIMEOUT)
    assert stopped["body"]["reason"] == "breakpoint", stopped
    time.sleep(PAUSE)
    dap.resume(stopped["body"]["threadId"])
    reply: dict[str, Any] = recv_json(ws)
    return reply


def test_a_breakpoint_outlasts_the_function_and_integration_timeouts() -> None:
    port = free_port()
    breakpoint_line = _line_of(APP / "app.py", "# BREAKPOINT")
    with running_gateway(_config(APP, [f"DefaultFunction:{port}"])) as running:
        with DapClient("127.0.0.1", port) as dap, running.connect() as ws:
            dap.attach({str(APP / "app.py"): [breakpoint_line]})
            reply = _stop_and_resume(dap, ws, {"say": "hello"})
            # The handler's own answer, not "Endpoint request timed out" or the error a
            # killed worker leaves; and its context's clock stopped at the breakpoint too.
            assert reply.get("say") == "hello", reply
            assert 500 < reply["remaining_ms"] <= 1000, reply
        pool = running.gateway.pools["DefaultFunction"]
        assert pool.cold_starts == 1  # the paused worker was never killed
        # The debugger gone, the function's timeout applies again.
        wait_for(lambda: pool.debugger is not None and not pool.debugger.holding)
        with running.connect() as ws:
            ws.send(json.dumps({"say": "late", "sleep": 1.5}))
            assert recv_json(ws)["message"] == core.INTERNAL_SERVER_ERROR


def test_without_a_debugger_the_timeouts_fire_and_the_port_listens_again() -> None:
    default_port, slow_port = free_port(), free_port()
    debug = [f"DefaultFunction:{default_port}", f"SlowFunction:{slow_port}"]
    breakpoint_line = _line_of(APP / "app.py", "# BREAKPOINT")
    with running_gateway(_config(APP, debug)) as running, running.connect() as ws:
        ws.send(json.dumps({"say": "late", "sleep": 1.5}))
        assert recv_json(ws)["message"] == core.INTERNAL_SERVER_ERROR
        wait_for(lambda: "Sandbox.Timedout" in running.logs.text, what="the function's timeout")
        started = time.monotonic()
        ws.send(json.dumps({"action": "slow", "say": "late", "sleep": 3}))
        assert recv_json(ws)["message"] == core.TIMED_OUT
        assert time.monotonic() - started < 3
        # The timed-out worker was replaced by one that listens on the same port.
        with DapClient("127.0.0.1", default_port) as dap:
            dap.attach({str(APP / "app.py"): [breakpoint_line]})
            assert _stop_and_resume(dap, ws, {"say": "again"}).get("say") == "again"


def test_a_code_reload_listens_again_on_the_same_port(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    source = app / "app.py"
    port = free_port()
    breakpoint_line = _line_of(source, "# BREAKPOINT")
    config = _config(app, [f"DefaultFunction:{port}"], reload=True)
    with running_gateway(config) as running, running.connect() as ws:
        with DapClient("127.0.0.1", port) as dap:
            dap.attach({})
            edited = source.read_text().replace('VERSION = "v1"', 'VERSION = "v2"')
            partial = source.with_suffix(".tmp")
            partial.write_text(edited)
            partial.replace(source)  # as editors save
            dap.event("terminated", timeout=TIMEOUT)  # its worker retired with the old code
        # The next worker started at once, without waiting for an invocation, and listens.
        pool = running.gateway.pools["DefaultFunction"]
        wait_for(lambda: running.call(lambda: pool.cold_starts) == 2, what="the next worker")
        with DapClient("127.0.0.1", port) as dap:
            dap.attach({str(source): [breakpoint_line]})
            reply = _stop_and_resume(dap, ws, {"say": "new code"})
        assert reply.get("version") == "v2", reply


def test_debug_wait_imports_the_handler_only_once_the_debugger_is_there() -> None:
    port = free_port()
    module_line = _line_of(APP / "app.py", 'VERSION = "v1"')
    config = _config(APP, [f"DefaultFunction:{port}"], wait=True)
    with running_gateway(config) as running, running.connect() as ws:
        ws.send(json.dumps({"say": "first"}))
        # Held for the debugger: neither the integration timeout nor an answer.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=INTEGRATION_TIMEOUT + 0.5)
        with DapClient("127.0.0.1", port) as dap:
            dap.attach({str(APP / "app.py"): [module_line]})
            stopped = dap.event("stopped", timeout=TIMEOUT)  # in module code: imported now
            dap.resume(stopped["body"]["threadId"])
            assert recv_json(ws).get("say") == "first"


def test_a_breakpoint_in_the_connect_authorizer_holds_the_handshake(tmp_path: Path) -> None:
    app = APPS / "authorized"
    port = free_port()
    api = load_api(app / "template.yaml", parameters={"SeenLog": str(tmp_path / "seen.jsonl")})
    config = GatewayConfig(
        api=api,
        limits=core.Limits(integration_timeout=INTEGRATION_TIMEOUT),
        debug=parse_targets([f"AuthorizerFunction:{port}"]),
        shutdown_timeout=5.0,
    )
    first_line = _line_of(app / "app.py", '_seen({"route": "authorizer"')
    handshake: list[Any] = []
    with running_gateway(config) as running, DapClient("127.0.0.1", port) as dap:
        dap.attach({str(app / "app.py"): [first_line]})

        def connect() -> None:
            try:
                with running.connect("?token=allow-ada", open_timeout=30) as ws:
                    handshake.append(ws.response.status_code)
            except Exception as exc:
                handshake.append(exc)

        client = threading.Thread(target=connect)
        client.start()
        stopped = dap.event("stopped", timeout=TIMEOUT)
        time.sleep(3.5)  # past the authorizer's Timeout (3 s) and the integration timeout
        dap.resume(stopped["body"]["threadId"])
        client.join(TIMEOUT)
    assert handshake == [101]


# --- wschat serve --debug as a process -------------------------------------------------------


def test_serve_prints_the_port_and_a_debugger_attaches(tmp_path: Path) -> None:
    port = free_port()
    breakpoint_line = _line_of(APP / "app.py", "# BREAKPOINT")
    args = [
        "--template",
        str(APP / "template.yaml"),
        "--data-dir",
        str(tmp_path),
        "--integration-timeout",
        str(INTEGRATION_TIMEOUT),
        "--debug",
        f"DefaultFunction:{port}",
    ]
    with wschat_serve(args, tmp_path) as server:
        expected = f"Debugger for DefaultFunction: attach to 127.0.0.1:{port}"
        assert expected in server.stdout_lines, server.stdout_lines
        with DapClient("127.0.0.1", port) as dap, ws_connect(server.websocket_url) as ws:
            dap.attach({str(APP / "app.py"): [breakpoint_line]})
            assert _stop_and_resume(dap, ws, {"say": "cli"}).get("say") == "cli"


def test_serve_refuses_an_unknown_function_naming_the_known_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *wschat_command(),
            "serve",
            "--template",
            str(APP / "template.yaml"),
            "--data-dir",
            str(tmp_path),
            "--debug",
            "NoSuchFunction",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "NoSuchFunction" in done.stderr
    assert "DefaultFunction, SlowFunction" in done.stderr


def test_serve_refuses_to_debug_a_nodejs_function_saying_how(tmp_path: Path) -> None:
    template = REPO / "tests" / "fixtures" / "apps" / "node_inspector" / "template.yaml"
    args = ["serve", "--template", str(template), "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*wschat_command(), *args, "--debug", "CountFunction"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "CountFunction is nodejs20.x" in done.stderr
    assert "node --inspect" in done.stderr

"""Failures the caller sees as API Gateway shows them: a raising handler, the integration
timeout, a function timeout (the execution environment is replaced)."""

from __future__ import annotations

import json
import time

import pytest
from tests.integration.conftest import RunningGateway, recv_json

pytestmark = pytest.mark.integration


def test_raising_handler_replies_internal_server_error_to_the_caller_only(
    inspector: RunningGateway,
) -> None:
    with inspector.connect() as caller, inspector.connect() as bystander:
        connection_id = inspector.connection_id(caller)
        caller.send(json.dumps({"action": "boom"}))
        reply = recv_json(caller)
        with pytest.raises(TimeoutError):
            bystander.recv(timeout=0.3)
    assert set(reply) == {"message", "connectionId", "requestId"}
    assert reply["message"] == "Internal server error"
    assert reply["connectionId"] == connection_id
    assert reply["requestId"]


def test_raising_handler_traceback_goes_to_the_gateway_log(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "boom"}))
        recv_json(ws)
    log = inspector.logs.text
    assert "Traceback (most recent call last)" in log
    assert "ValueError: boom: the handler failed on purpose" in log
    assert "app.py" in log  # the frame in the handler's own file


def test_the_error_reply_names_the_request_that_failed(inspector: RunningGateway) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "boom"}))
        first = recv_json(ws)
        ws.send(json.dumps({"action": "boom"}))
        second = recv_json(ws)
    assert first["requestId"] != second["requestId"]
    # The function's record of the failed invocation carries the same request id.
    assert inspector.events is not None
    request_ids = {
        r["event"]["requestContext"]["requestId"]
        for r in inspector.events.records("message", first["connectionId"])
    }
    assert {first["requestId"], second["requestId"]} <= request_ids


def test_integration_timeout_replies_endpoint_request_timed_out(
    inspector: RunningGateway,
) -> None:
    # The inspector gateway waits 3 s for an integration; LingerFunction's own timeout is 10 s.
    with inspector.connect() as ws:
        connection_id = inspector.connection_id(ws)
        started = time.monotonic()
        ws.send(json.dumps({"action": "linger", "seconds": 6}))
        reply = recv_json(ws, timeout=5.5)  # before the function could have answered
        waited = time.monotonic() - started
    assert reply["message"] == "Endpoint request timed out"
    assert reply["connectionId"] == connection_id
    assert reply["requestId"]
    assert waited >= 2.9


def test_function_timeout_replaces_the_worker_and_later_invocations_work(
    inspector: RunningGateway,
) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "sleep", "seconds": 0}))
        before = recv_json(ws)
        started = time.monotonic()
        ws.send(json.dumps({"action": "sleep", "seconds": 4}))  # SleepFunction's Timeout is 1 s
        failed = recv_json(ws, timeout=4)
        waited = time.monotonic() - started
        ws.send(json.dumps({"action": "sleep", "seconds": 0}))
        after = recv_json(ws)
    # Lambda's timeout (1 s), not the integration timeout (3 s, "Endpoint request timed out").
    assert failed["message"] == "Internal server error"
    assert waited >= 0.9
    assert after["slept"] == 0
    assert after["pid"] != before["pid"]  # a new execution environment
    assert "Task timed out after 1.00 seconds" in inspector.logs.text


def test_crashed_runtime_replies_internal_server_error_and_is_replaced(
    inspector: RunningGateway,
) -> None:
    with inspector.connect() as ws:
        ws.send(json.dumps({"action": "sleep", "seconds": 0}))
        before = recv_json(ws)
        ws.send(json.dumps({"action": "crash"}))
        crashed = recv_json(ws)
        ws.send(json.dumps({"action": "sleep", "seconds": 0}))
        after = recv_json(ws)
    assert crashed["message"] == "Internal server error"
    assert after["pid"] != before["pid"]

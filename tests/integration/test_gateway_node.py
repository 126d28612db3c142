"""Node.js handlers in the local gateway, from their own SAM templates.

``node_chat`` is a third-party chat in Node.js (AWS SDK for JavaScript v3, DynamoDB on the
session's moto server, @connections through the gateway), installed from npm by
``node_chat_modules`` when its node_modules is missing. ``node_inspector`` has no dependencies:
its handlers show warm state, Lambda's context object, errors, timeouts, callback handlers and
init errors, each as the client and the gateway's log see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.integration.conftest import (
    APPS,
    REGION,
    RunningGateway,
    recv_json,
    running_gateway,
    wait_for,
    ws_connect,
    wschat_serve,
)
from websockets.asyncio.client import connect

from wschat.gateway import core, tls
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import load_api

pytestmark = pytest.mark.integration

NODE_CHAT = APPS / "node_chat"
NODE_INSPECTOR = APPS / "node_inspector"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- the Node.js chat's packages --------------------------------------------------------------


def npm_ci(app: Path, timeout: float = 100.0) -> None:
    """``npm ci`` in ``app`` unless its node_modules matches its package-lock.json already; one
    install at a time across processes (parallel test workers share the directory)."""
    installed = app / "node_modules" / ".package-lock.json"  # written by npm at the end
    lock_path = Path(tempfile.gettempdir()) / f"wschat-npm-{app.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lockfile = app / "package-lock.json"
        if installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime:
            return
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not on PATH: cannot install {app.name}'s packages")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=app,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {app} did not finish within {timeout:.0f} s")
        if done.returncode != 0:
            pytest.fail(f"npm ci in {app} failed ({done.returncode}):\n{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def node_chat_modules() -> Path:
    npm_ci(NODE_CHAT)
    return NODE_CHAT / "node_modules"


@pytest.fixture
def connections_table(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    """A connections table of the test's own on moto, as the template declares it."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"node-chat-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client, name
    client.delete_table(TableName=name)


def stored_connections(table: tuple[Any, str]) -> set[str]:
    client, name = table
    return {item["connectionId"]["S"] for item in client.scan(TableName=name)["Items"]}


def function_aws_env(moto_endpoint: str) -> dict[str, str]:
    """What points the Node.js SDK's DynamoDB client at moto (it reads AWS_ENDPOINT_URL_*)."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


# --- the chat, two clients ----------------------------------------------------------------------


def test_two_clients_chat_through_the_node_app(
    node_chat_modules: Path, connections_table: tuple[Any, str], moto_endpoint: str
) -> None:
    client, table = connections_table
    api = load_api(NODE_CHAT / "template.yaml", parameters={"ConnectionsTableName": table})
    config = GatewayConfig(
        api=api, function_env=function_aws_env(moto_endpoint), shutdown_timeout=5.0
    )
    with running_gateway(config) as gateway, gateway.connect() as alice, gateway.connect() as bob:
        # $connect stored both (the handshake completes after it answers).
        assert len(stored_connections(connections_table)) == 2
        # A client that left without a $disconnect: posting to it is 410, and it is forgotten.
        client.put_item(TableName=table, Item={"connectionId": {"S": "GoneConnId="}})
        alice.send(json.dumps({"action": "sendmessage", "data": "hello from alice"}))
        assert alice.recv(timeout=10) == "hello from alice"
        assert bob.recv(timeout=10) == "hello from alice"
        wait_for(
            lambda: "GoneConnId=" not in stored_connections(connections_table),
            10,
            "the gone connection's row deleted",
        )
        # The SDK posted over HTTP to AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI (the gateway).
        assert gateway.gateway.management_http_requests >= 3
        bob.close()
        wait_for(
            lambda: len(stored_connections(connections_table)) == 1, 10, "$disconnect's delete"
        )
    assert "[SendMessageFunction]" in gateway.logs.text
    assert "stale connection GoneConnId=, deleting it" in gateway.logs.text


def test_wschat_serve_runs_the_node_chat_from_its_template(
    node_chat_modules: Path,
    connections_table: tuple[Any, str],
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    _, table = connections_table
    args = [
        *("--template", str(NODE_CHAT / "template.yaml")),
        *("--parameter", f"ConnectionsTableName={table}"),
        *("--data-dir", str(tmp_path / "data")),
        # @connections requests must be signed: the JavaScript SDK's SigV4 has to pass.
        *("--management-credentials", "AKIDNODECHAT:node-chat-secret"),
        "--no-reload",
    ]
    with (
        wschat_serve(args, tmp_path, env=function_aws_env(moto_endpoint)) as server,
        ws_connect(server.websocket_url) as alice,
        ws_connect(server.websocket_url) as bob,
    ):
        bob.send(json.dumps({"action": "sendmessage", "data": {"text": "hi", "from": "bob"}}))
        for ws in (alice, bob):
            assert json.loads(ws.recv(timeout=15)) == {"text": "hi", "from": "bob"}


def test_with_tls_the_sdk_trusts_the_local_ca(
    node_chat_modules: Path,
    connections_table: tuple[Any, str],
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    # @connections is https:// now: the SDK's posts verify only with NODE_EXTRA_CA_CERTS.
    _, table = connections_table
    files = tls.ensure_certificates(tmp_path / "tls")
    config = GatewayConfig(
        api=load_api(NODE_CHAT / "template.yaml", parameters={"ConnectionsTableName": table}),
        function_env=function_aws_env(moto_endpoint),
        ssl_context=files.server_context(),
        ca_bundle=files.ca_cert,
        shutdown_timeout=5.0,
    )

    async def chat(url: str, client_ssl: ssl.SSLContext) -> list[str | bytes]:
        # websockets' asyncio client: see test_gateway_tls for why not the sync one over TLS.
        options: dict[str, Any] = {"ssl": client_ssl, "open_timeout": 5, "proxy": None}
        async with connect(url, **options) as alice, connect(url, **options) as bob:
            await alice.send(json.dumps({"action": "sendmessage", "data": "over https"}))
            return [await asyncio.wait_for(ws.recv(), 10) for ws in (alice, bob)]

    with running_gateway(config) as gateway:
        assert gateway.management_url.startswith("https://")
        assert asyncio.run(chat(gateway.url, gateway.client_ssl)) == ["over https"] * 2


# --- the inspector: one gateway for the module ---------------------------------------------------


@pytest.fixture(scope="module")
def node_inspector() -> Iterator[RunningGateway]:
    config = GatewayConfig(
        api=load_api(NODE_INSPECTOR / "template.yaml"),
        # Above SlowFunction's 1 s Timeout, so a slow handler meets the function's timeout.
        limits=core.Limits(integration_timeout=5.0),
        shutdown_timeout=5.0,
    )
    with running_gateway(config) as running:
        yield running


def ask(ws: Any, action: str, timeout: float = 5.0, **fields: Any) -> Any:
    """Send ``action`` to a two-way route; the decoded JSON body that comes back."""
    ws.send(json.dumps({"action": action, **fields}))
    return recv_json(ws, timeout)


def test_module_state_survives_between_invocations(node_inspector: RunningGateway) -> None:
    with node_inspector.connect() as ws:
        first = ask(ws, "count")
        second = ask(ws, "count")
    assert second["count"] == first["count"] + 1
    assert (second["pid"], second["loadedAt"]) == (first["pid"], first["loadedAt"])


def test_console_lines_reach_the_log_as_lambda_writes_them(
    node_inspector: RunningGateway,
) -> None:
    with node_inspector.connect() as ws:
        count = ask(ws, "count")["count"]
    line = wait_for(
        lambda: next(
            (
                text
                for text in node_inspector.logs.lines
                if f"INFO\tinvocation {count} " in text and "[CountFunction]" in text
            ),
            None,
        ),
        what="the handler's console.log line",
    )
    # "[CountFunction] 2024-05-01T12:00:00.000Z\t<request id>\tINFO\tinvocation 3 { then: null }"
    stamp, request_id, level, message = line.split("[CountFunction] ", 1)[1].split("\t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert UUID.match(request_id)
    assert (level, message) == ("INFO", f"invocation {count} {{ then: null }}")


def test_context_is_lambdas(node_inspector: RunningGateway) -> None:
    with node_inspector.connect() as ws:
        first = ask(ws, "context")
        second = ask(ws, "context")
    assert UUID.match(first["awsRequestId"])
    assert first["awsRequestId"] != second["awsRequestId"]
    assert first["requestId"] != first["awsRequestId"]  # API Gateway's id is another
    assert first["functionName"] == "ContextFunction"
    assert first["functionVersion"] == "$LATEST"
    assert re.fullmatch(
        r"arn:aws:lambda:[a-z0-9-]+:\d{12}:function:ContextFunction", first["invokedFunctionArn"]
    )
    assert first["memoryLimitInMB"] == "256"  # the template's MemorySize, as a string
    assert first["logGroupName"] == "/aws/lambda/ContextFunction"
    assert first["logStreamName"]
    assert first["callbackWaitsForEmptyEventLoop"] is True
    assert 0 < first["remaining"] <= 5000  # the Globals' Timeout: 5
    assert first["routeKey"] == "context"
    assert first["cwd"] == str(NODE_INSPECTOR)  # the code directory, as /var/task
    assert first["env"] == {
        "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x",
        "AWS_LAMBDA_FUNCTION_NAME": "ContextFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": node_inspector.management_url,
        "worker": [],  # the worker's settings are gone before user code loads
    }


def test_thrown_error_is_internal_server_error_and_the_gateway_keeps_serving(
    node_inspector: RunningGateway,
) -> None:
    with node_inspector.connect() as ws:
        failed = ask(ws, "boom")
        after = ask(ws, "count")
    assert failed["message"] == "Internal server error"
    assert failed["requestId"]
    assert after["count"] >= 1
    log = node_inspector.logs.text
    assert "BoomFunction failed: RangeError: boom: the handler failed on purpose" in log
    assert "index.mjs" in log  # the stack's frame in the handler's own file


@pytest.mark.parametrize(
    ("then", "error"),
    [
        ("reject", "Runtime.UnhandledPromiseRejection: Error: nobody awaits this"),
        ("throw", "TypeError: thrown from a timer"),
    ],
)
def test_uncaught_error_fails_the_invocation_and_replaces_the_environment(
    node_inspector: RunningGateway, then: str, error: str
) -> None:
    with node_inspector.connect() as ws:
        before = ask(ws, "count")
        failed = ask(ws, "count", then=then)
        after = ask(ws, "count")
    assert failed["message"] == "Internal server error"
    assert after["pid"] != before["pid"]  # a new execution environment...
    assert after["count"] == 1  # ...with its module state new too
    assert f"CountFunction failed: {error}" in node_inspector.logs.text


def test_function_timeout_replaces_the_worker_and_later_invocations_work(
    node_inspector: RunningGateway,
) -> None:
    with node_inspector.connect() as ws:
        before = ask(ws, "slow", seconds=0)
        started = time.monotonic()
        failed = ask(ws, "slow", seconds=4)  # SlowFunction's Timeout is 1 s
        waited = time.monotonic() - started
        after = ask(ws, "slow", seconds=0)
    # The function's timeout, not the integration timeout (5 s, "Endpoint request timed out").
    assert failed["message"] == "Internal server error"
    assert 0.9 <= waited < 4
    assert after["slept"] == 0
    assert after["pid"] != before["pid"]
    assert "Task timed out after 1.00 seconds" in node_inspector.logs.text


def test_import_error_is_an_init_error_and_the_gateway_keeps_serving(
    node_inspector: RunningGateway,
) -> None:
    with node_inspector.connect() as ws:
        failed = ask(ws, "broken")
        again = ask(ws, "broken")
        after = ask(ws, "count")
    assert failed["message"] == again["message"] == "Internal server error"
    assert after["count"] >= 1
    log = node_inspector.logs.text
    assert "function BrokenFunction failed to initialise" in log
    assert "BrokenFunction failed: Runtime.ImportModuleError: Error: Cannot find package " in log
    assert "'no-such-package'" in log


def test_missing_export_is_handler_not_found(node_inspector: RunningGateway) -> None:
    with node_inspector.connect() as ws:
        failed = ask(ws, "missing")
    assert failed["message"] == "Internal server error"
    assert (
        "MissingFunction failed: Runtime.HandlerNotFound: index.nope is undefined or not exported"
        in node_inspector.logs.text
    )


def test_callback_handler_answers_once_the_event_loop_is_empty(
    node_inspector: RunningGateway,
) -> None:
    with node_inspector.connect() as ws:
        started = time.monotonic()
        waited = ask(ws, "callback", linger=700)
        waited_for = time.monotonic() - started
        started = time.monotonic()
        at_once = ask(ws, "callback", linger=700, wait=False)
        at_once_for = time.monotonic() - started
        failed = ask(ws, "callback", fail=True)
    assert waited["style"] == at_once["style"] == "callback"
    # callbackWaitsForEmptyEventLoop (the default): the answer waits for the pending timer.
    assert waited_for >= 0.65
    assert at_once_for < 0.6
    assert at_once["pid"] == waited["pid"]
    assert failed["message"] == "Internal server error"
    assert "CallbackFunction failed: Error: the callback says it failed" in (
        node_inspector.logs.text
    )


def test_missing_node_is_a_clear_error_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(os.devnull).parent))  # /dev: no node there
    config = GatewayConfig(api=load_api(NODE_INSPECTOR / "template.yaml"), shutdown_timeout=5.0)
    with running_gateway(config) as running, contextlib.suppress(Exception):
        ws = ws_connect(running.url)  # $connect cannot run: the handshake is refused
        ws.close()
    assert (
        "function CountFunction could not start: function CountFunction needs Node.js"
        " (nodejs20.x): no `node` on PATH" in running.logs.text
    )


# --- code reload ----------------------------------------------------------------------------

RELOAD_TEMPLATE = """
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $default
      RouteResponseSelectionExpression: $default
      Target: !Sub "integrations/${Integration}"
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/\\
        functions/${Fn.Arn}/invocations"
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: code, Handler: app.handler, Runtime: nodejs20.x}
"""
RELOAD_APP = 'export const handler = async () => ({ statusCode: 200, body: "%s" });\n'


def test_an_edit_to_a_node_handler_is_picked_up_and_a_syntax_error_is_an_init_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "template.yaml").write_text(RELOAD_TEMPLATE)
    app = tmp_path / "code" / "app.mjs"

    def edit(pool: Any, text: str) -> None:
        generation = pool.generation
        partial = app.with_suffix(".tmp")  # written whole and renamed, as editors save
        partial.write_text(text)
        partial.replace(app)
        wait_for(lambda: pool.generation > generation, 10, "the reload")

    app.write_text(RELOAD_APP % "v1")
    config = GatewayConfig(
        api=load_api(tmp_path / "template.yaml"),
        reload=True,
        limits=core.Limits(integration_timeout=5.0),
        shutdown_timeout=5.0,
    )
    with running_gateway(config) as running, running.connect() as ws:
        [pool] = running.gateway.pools.values()
        ws.send("{}")
        assert ws.recv(timeout=5) == "v1"
        edit(pool, RELOAD_APP % "v2")
        ws.send("{}")
        assert ws.recv(timeout=5) == "v2"
        edit(pool, "export const handler = async () => { return 1 +; };\n")
        ws.send("{}")
        assert json.loads(ws.recv(timeout=5))["message"] == "Internal server error"
        edit(pool, RELOAD_APP % "v3")
        ws.send("{}")
        assert ws.recv(timeout=5) == "v3"
    assert "Fn failed: Runtime.UserCodeSyntaxError: SyntaxError: Unexpected token" in (
        running.logs.text
    )
    assert f"in {app}" in running.logs.text  # the file at fault is named

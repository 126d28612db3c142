"""``wschat serve`` as people run it: the URLs it prints, the chat page, ``--route`` with its own
route selection expression, a third-party app from its own template, and npm's ``wscat`` (the
client API Gateway's docs use) talking to the project's handlers."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pexpect
import pytest
from tests.integration.conftest import (
    APPS,
    INSPECTOR,
    PROJECT_TEMPLATE,
    REGION,
    REPO,
    TIMEOUT,
    EventsLog,
    ServeProcess,
    wait_for,
    ws_connect,
    wschat_command,
    wschat_serve,
)

pytestmark = pytest.mark.integration

WSCAT = REPO / "node_modules" / ".bin" / "wscat"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``wschat serve`` with the project's template and its embedded SQLite store."""
    directory = tmp_path_factory.mktemp("serve-project")
    args = ["--template", str(PROJECT_TEMPLATE), "--store", "sqlite", "--data-dir", str(directory)]
    with wschat_serve(args, directory) as server:
        yield server


def _get(server: ServeProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` sent exactly as written (no client-side normalisation of ``..``)."""
    address = urlsplit(server.urls["Chat page"])
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _management(server: ServeProcess) -> Any:
    import boto3

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.management_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


# --- what it prints -------------------------------------------------------------------------------


def test_serve_prints_websocket_connections_and_page_urls(project: ServeProcess) -> None:
    websocket = urlsplit(project.urls["WebSocket"])
    connections = project.urls["@connections"]
    page = urlsplit(project.urls["Chat page"])
    assert websocket.scheme == "ws"
    assert websocket.hostname == "127.0.0.1"
    assert websocket.port and websocket.port > 0  # --port 0 printed the port it got
    assert websocket.path == "/local"
    assert connections == f"http://127.0.0.1:{websocket.port}/local/@connections/{{connectionId}}"
    assert (page.scheme, page.port, page.path) == ("http", websocket.port, "/")
    assert "CA bundle" not in project.urls  # only with --tls


def test_tls_prints_wss_https_and_the_ca_bundle(tmp_path: Path) -> None:
    args = ["--template", str(PROJECT_TEMPLATE), "--data-dir", str(tmp_path), "--tls"]
    with wschat_serve(args, tmp_path) as server:
        assert server.urls["WebSocket"].startswith("wss://127.0.0.1:")
        assert server.urls["@connections"].startswith("https://127.0.0.1:")
        assert server.urls["Chat page"].startswith("https://127.0.0.1:")
        assert Path(server.urls["CA bundle"]) == tmp_path / "tls" / "ca.pem"


# --- the chat page ------------------------------------------------------------------------------


def test_get_root_serves_the_chat_page(project: ServeProcess) -> None:
    status, headers, body = _get(project, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<html" in body.lower()


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/../../../pyproject.toml",
        "/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/..%2f..%2f..%2fpyproject.toml",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/index.html/../../../../pyproject.toml",
        "/..%5c..%5c..%5cpyproject.toml",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
    ],
)
def test_path_traversal_is_not_found(project: ServeProcess, path: str) -> None:
    status, _, body = _get(project, path)
    assert status == 404
    assert b"[project]" not in body and b"root:" not in body


# --- --route with its own route selection expression ---------------------------------------------


def test_route_options_with_a_nested_route_selection_expression(tmp_path: Path) -> None:
    events = EventsLog(tmp_path / "events.jsonl")
    args = [
        "--route",
        "$connect=app.on_connect",
        "--route",
        "inspect=app.on_message",
        "--route",
        "$default=app.on_message",
        "--route-selection-expression",
        "$request.body.meta.kind",
        "--code-dir",
        str(INSPECTOR),
        "--env",
        f"EVENTS_LOG={events.path}",
        "--data-dir",
        str(tmp_path),
    ]
    with wschat_serve(args, tmp_path) as server:
        with ws_connect(server.websocket_url) as ws:
            ws.send(json.dumps({"meta": {"kind": "inspect"}, "n": 1}))
            ws.send(json.dumps({"action": "inspect", "n": 2}))  # no meta.kind: $default
            ws.send(json.dumps({"meta": {"kind": "elsewhere"}, "n": 3}))
            records = events.wait("message", count=3)
            # The printed @connections URL is what boto3 takes as endpoint_url.
            (connected,) = events.wait("connect")
            _management(server).post_to_connection(
                ConnectionId=connected["event"]["requestContext"]["connectionId"],
                Data=b"from boto3",
            )
            assert ws.recv(timeout=TIMEOUT) == "from boto3"
        routes = {
            json.loads(r["event"]["body"])["n"]: r["event"]["requestContext"]["routeKey"]
            for r in records
        }
    assert routes == {1: "inspect", 2: "$default", 3: "$default"}
    # --route functions are named by their handler.
    assert {r["context"]["function_name"] for r in records} == {"app.on_message"}


def test_a_route_response_sends_a_route_option_handlers_body_back(tmp_path: Path) -> None:
    events = EventsLog(tmp_path / "events.jsonl")
    args = ["--route", "$connect=app.on_connect", "--route", "count=app.on_message"]
    args += ["--route", "whisper=app.on_message", "--route-response", "count"]
    args += ["--code-dir", str(INSPECTOR), "--env", f"EVENTS_LOG={events.path}"]
    args += ["--data-dir", str(tmp_path)]
    with wschat_serve(args, tmp_path) as server, ws_connect(server.websocket_url) as ws:
        ws.send(json.dumps({"action": "whisper"}))  # one-way: its body stays with the gateway
        ws.send(json.dumps({"action": "count"}))
        reply = json.loads(ws.recv(timeout=TIMEOUT))
        assert set(reply) == {"count", "pid"}  # the first frame back is count's
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # and whisper's body never comes
    assert [json.loads(r["event"]["body"])["action"] for r in events.records("message")] == [
        "whisper",
        "count",
    ]


def test_a_route_response_needs_route_options(tmp_path: Path) -> None:
    result = subprocess.run(
        [*wschat_command(), "serve", "--route-response", "ping", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--route-response is for --route routes" in result.stderr


# --- a third-party app from its own template ------------------------------------------------------


def test_third_party_app_from_its_own_template_with_two_clients(tmp_path: Path) -> None:
    connections = tmp_path / "connections.json"
    args = [
        "--template",
        str(APPS / "chat_json" / "template.yaml"),
        "--parameter",
        f"ConnectionsFile={connections}",
        "--data-dir",
        str(tmp_path),
    ]
    with wschat_serve(args, tmp_path) as server, ExitStack() as stack:
        alice = stack.enter_context(ws_connect(server.websocket_url))
        bob = stack.enter_context(ws_connect(server.websocket_url))
        wait_for(
            lambda: connections.exists() and len(json.loads(connections.read_text())) == 2,
            what="both connections in the app's own JSON file",
        )
        bob.send(json.dumps({"action": "sendmessage", "data": "hello alice"}))
        assert alice.recv(timeout=TIMEOUT) == "hello alice"
        assert bob.recv(timeout=TIMEOUT) == "hello alice"
        alice.close()
        wait_for(
            lambda: len(json.loads(connections.read_text())) == 1,
            what="alice's $disconnect to forget her",
        )
        bob.send(json.dumps({"action": "sendmessage", "data": "anyone?"}))
        assert bob.recv(timeout=TIMEOUT) == "anyone?"
    assert "chat-json" in server.stdout_lines[0]  # the API's own Name


# --- wscat ---------------------------------------------------------------------------------------


def _wscat() -> Path:
    if not WSCAT.exists():
        subprocess.run(
            ["bash", str(REPO / "scripts" / "test-deps.sh")], cwd=REPO, timeout=120, check=False
        )
    if not WSCAT.exists():
        pytest.fail(
            f"npm's wscat is not installed at {WSCAT}: run `bash scripts/test-deps.sh` "
            "(needs node and npm on PATH)"
        )
    return WSCAT


def test_two_wscat_clients_chat_through_the_project_handlers(project: ServeProcess) -> None:
    wscat = _wscat()
    clients = []
    try:
        for _ in range(2):
            client = pexpect.spawn(
                str(wscat),
                ["-c", project.websocket_url],
                encoding="utf-8",
                timeout=TIMEOUT * 2,
                dimensions=(40, 400),
            )
            client.expect("Connected")
            clients.append(client)
        clients[0].sendline('{"action":"sendMessage","message":"hi"}')
        for client in clients:
            # wscat prints each received message behind "< ".
            client.expect(r'< \{"type":"message"[^\r\n]*"text":"hi"')
    finally:
        for client in clients:
            client.terminate(force=True)


def test_third_party_app_with_an_sqs_worker_from_its_own_template(tmp_path: Path) -> None:
    # A WebSocket route queues, an AWS::Lambda::EventSourceMapping worker broadcasts, a poison
    # record is reported failed until the redrive policy moves it to the dead-letter queue.
    connections = tmp_path / "connections.json"
    args = [
        "--template",
        str(APPS / "push_sqs" / "template.yaml"),
        "--parameter",
        f"ConnectionsFile={connections}",
        "--data-dir",
        str(tmp_path),
    ]
    with wschat_serve(args, tmp_path) as server, ExitStack() as stack:
        [sqs_line] = [line for line in server.stdout_lines if line.strip().startswith("SQS:")]
        sqs_endpoint = sqs_line.split()[1]
        alice = stack.enter_context(ws_connect(server.websocket_url))
        bob = stack.enter_context(ws_connect(server.websocket_url))
        wait_for(
            lambda: connections.exists() and len(json.loads(connections.read_text())) == 2,
            what="both connections in the app's own JSON file",
        )
        bob.send(json.dumps({"action": "push", "data": "poison"}))
        bob.send(json.dumps({"action": "push", "data": "hello"}))
        for ws in (alice, bob):
            assert json.loads(ws.recv(timeout=TIMEOUT))["data"] == "hello"

        sqs = boto3.client(
            "sqs",
            endpoint_url=sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        [dlq_url] = [url for url in sqs.list_queues()["QueueUrls"] if "PushDeadLetters" in url]

        def dead_letters() -> list[Any]:
            messages = sqs.receive_message(QueueUrl=dlq_url, VisibilityTimeout=0)
            return list(messages.get("Messages", []))

        [dead] = wait_for(dead_letters, 15, "the poison record in the dead-letter queue")
        assert json.loads(dead["Body"]) == {"data": "poison"}
        with pytest.raises(TimeoutError):  # nobody was sent the poison
            alice.recv(timeout=0.2)


def test_a_queue_store_that_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "queues.sqlite3").mkdir()  # where the queue file would go
    completed = subprocess.run(
        [*wschat_command(), "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip() == (
        f"wschat serve: the queue store {tmp_path / 'queues.sqlite3'}: unable to open database file"
    )

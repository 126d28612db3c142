"""The ConnectionStore contract, run against every adapter: SQLite on a file, DynamoDB over real
HTTP on a moto server. The same test passing for both is what lets the local gateway stand in for
AWS. DynamoDB-only behaviour (errors, configuration from the environment) follows the contract."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from wschat.storage import (
    CONNECTION_TTL_SECONDS,
    Connection,
    ConnectionStore,
    StoreError,
    StoreUnavailable,
    open_store_from_env,
)
from wschat.storage.dynamodb import DynamoDBStore, ensure_connections_table
from wschat.storage.sqlite import SqliteStore

pytestmark = pytest.mark.integration

PAGE_SIZE = 100
CONNECTED_AT_MS = 1_700_000_000_123

# Connection ids as API Gateway hands them out: 16 characters of base64, '=' padded, and the
# alphabet includes '+' and '/'.
API_GATEWAY_IDS = ["L0SM9cOFvHcCIhw=", "a+b/CdefGhIjKlM=", "Zz0+/9cOFvHcCIh=", "AAAAAAAAAAAAAAA="]


def unique_table_name() -> str:
    return f"websocket-connections-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dynamodb_table(dynamodb_client: Any) -> Iterator[str]:
    """A fresh connections table on the moto server, dropped afterwards."""
    name = unique_table_name()
    ensure_connections_table(dynamodb_client, name)
    yield name
    dynamodb_client.delete_table(TableName=name)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectionStore]:
    """A fresh, empty store of each kind, scanning in pages of PAGE_SIZE."""
    opened: ConnectionStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "wschat.sqlite3", scan_page_size=PAGE_SIZE)
    else:
        # Looked up lazily so `-k sqlite` runs never start the moto server.
        client = request.getfixturevalue("dynamodb_client")
        table = request.getfixturevalue("dynamodb_table")
        opened = DynamoDBStore(client, table, scan_page_size=PAGE_SIZE)
    yield opened
    opened.close()


# The contract: every adapter.


def test_put_then_get_returns_the_same_record(store: ConnectionStore) -> None:
    connection = Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS)
    store.put_connection(connection)

    stored = store.get_connection("L0SM9cOFvHcCIhw=")

    assert stored == connection
    assert stored == Connection(
        connection_id="L0SM9cOFvHcCIhw=",
        connected_at=CONNECTED_AT_MS,
        expires_at=CONNECTED_AT_MS // 1000 + CONNECTION_TTL_SECONDS,
    )


def test_putting_a_connection_again_overwrites_it(store: ConnectionStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))
    reconnected = Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS + 60_000)
    store.put_connection(reconnected)

    assert store.get_connection("L0SM9cOFvHcCIhw=") == reconnected
    assert list(store.scan_connection_ids()) == ["L0SM9cOFvHcCIhw="]


def test_delete_forgets_only_that_connection(store: ConnectionStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))
    store.put_connection(Connection.opened("a+b/CdefGhIjKlM=", CONNECTED_AT_MS))

    store.delete_connection("L0SM9cOFvHcCIhw=")

    assert store.get_connection("L0SM9cOFvHcCIhw=") is None
    assert store.get_connection("a+b/CdefGhIjKlM=") is not None
    assert list(store.scan_connection_ids()) == ["a+b/CdefGhIjKlM="]


def test_deleting_an_unknown_connection_is_not_an_error(store: ConnectionStore) -> None:
    store.delete_connection("never-connected=")

    assert list(store.scan_connection_ids()) == []


def test_get_of_an_unknown_connection_returns_none(store: ConnectionStore) -> None:
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    assert store.get_connection("never-connected=") is None


def test_scan_of_an_empty_store_yields_nothing(store: ConnectionStore) -> None:
    assert list(store.scan_connection_ids()) == []


def test_scan_returns_every_id_exactly_once_across_pages(store: ConnectionStore) -> None:
    ids = [f"conn-{n:04d}-{uuid.uuid4().hex[:6]}=" for n in range(2 * PAGE_SIZE + 50)]
    for connection_id in ids:
        store.put_connection(Connection.opened(connection_id, CONNECTED_AT_MS))

    scanned = list(store.scan_connection_ids())

    assert len(scanned) == len(ids)  # no id twice across page boundaries
    assert sorted(scanned) == sorted(ids)


def test_api_gateway_connection_ids_round_trip(store: ConnectionStore) -> None:
    for n, connection_id in enumerate(API_GATEWAY_IDS):
        store.put_connection(Connection.opened(connection_id, CONNECTED_AT_MS + n))

    for n, connection_id in enumerate(API_GATEWAY_IDS):
        assert store.get_connection(connection_id) == Connection.opened(
            connection_id, CONNECTED_AT_MS + n
        )
    assert sorted(store.scan_connection_ids()) == sorted(API_GATEWAY_IDS)

    for connection_id in API_GATEWAY_IDS:
        store.delete_connection(connection_id)
    assert list(store.scan_connection_ids()) == []


# DynamoDB: the table as template.yaml declares it, and the seed's paginated Scan.


def test_dynamodb_items_use_the_tables_attribute_names_and_types(
    dynamodb_client: Any, dynamodb_table: str
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_table)
    store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    item = dynamodb_client.get_item(
        TableName=dynamodb_table, Key={"connectionId": {"S": "L0SM9cOFvHcCIhw="}}
    )["Item"]

    assert item == {
        "connectionId": {"S": "L0SM9cOFvHcCIhw="},
        "connectedAt": {"N": str(CONNECTED_AT_MS)},
        "expiresAt": {"N": str(CONNECTED_AT_MS // 1000 + CONNECTION_TTL_SECONDS)},
    }


def test_ensure_connections_table_is_idempotent_and_enables_ttl(dynamodb_client: Any) -> None:
    name = unique_table_name()
    try:
        ensure_connections_table(dynamodb_client, name)
        ensure_connections_table(dynamodb_client, name)

        table = dynamodb_client.describe_table(TableName=name)["Table"]
        ttl = dynamodb_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    finally:
        dynamodb_client.delete_table(TableName=name)

    assert table["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_dynamodb_scan_asks_for_pages_of_the_configured_size(
    dynamodb_client: Any, dynamodb_table: str
) -> None:
    store = DynamoDBStore(dynamodb_client, dynamodb_table, scan_page_size=PAGE_SIZE)
    for n in range(2 * PAGE_SIZE + 50):
        store.put_connection(Connection.opened(f"conn-{n:04d}=", CONNECTED_AT_MS))
    scan_requests: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        scan_requests.append(dict(params))

    dynamodb_client.meta.events.register("provide-client-params.dynamodb.Scan", record)
    try:
        count = sum(1 for _ in store.scan_connection_ids())
    finally:
        dynamodb_client.meta.events.unregister("provide-client-params.dynamodb.Scan", record)

    assert count == 2 * PAGE_SIZE + 50
    assert len(scan_requests) == 3
    assert all(r["Limit"] == PAGE_SIZE for r in scan_requests)
    assert all(r["ProjectionExpression"] == "connectionId" for r in scan_requests)


# DynamoDB: what callers see when the table or the service is not there.


def _every_operation(store: DynamoDBStore) -> dict[str, Any]:
    return {
        "put": lambda: store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", 1)),
        "get": lambda: store.get_connection("L0SM9cOFvHcCIhw="),
        "delete": lambda: store.delete_connection("L0SM9cOFvHcCIhw="),
        "scan": lambda: list(store.scan_connection_ids()),
    }


@pytest.mark.parametrize("operation", ["put", "get", "delete", "scan"])
def test_missing_table_raises_store_error(dynamodb_client: Any, operation: str) -> None:
    store = DynamoDBStore(dynamodb_client, unique_table_name())

    with pytest.raises(StoreError) as raised:
        _every_operation(store)[operation]()

    assert not isinstance(raised.value, StoreUnavailable)  # retrying will not create the table
    assert isinstance(raised.value.__cause__, ClientError)
    assert raised.value.__cause__.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound, so nothing else takes it, but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("operation", ["put", "get", "delete", "scan"])
def test_unreachable_endpoint_raises_store_unavailable_quickly(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, closed_port: int, operation: str
) -> None:
    # The production client (from_environment: retries, timeouts), pointed at a dead endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port}")
    store = DynamoDBStore.from_environment("websocket-connections")

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        _every_operation(store)[operation]()
    elapsed = time.monotonic() - started
    store.close()

    assert isinstance(raised.value.__cause__, BotoCoreError)
    assert elapsed < 5.0  # three refused attempts with standard-mode backoff, never a hang


class _ErrorAnsweringDynamoDB(BaseHTTPRequestHandler):
    """Answers every request the way DynamoDB reports an error: status and JSON ``__type``."""

    status = 400
    code = "ValidationException"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": "injected"}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def dynamodb_answering(status: int, code: str) -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that fails every DynamoDB call with ``code``."""
    handler = type("Handler", (_ErrorAnsweringDynamoDB,), {"status": status, "code": code})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ProvisionedThroughputExceededException", StoreUnavailable),
        (400, "ThrottlingException", StoreUnavailable),
        (400, "RequestLimitExceeded", StoreUnavailable),
        (500, "InternalServerError", StoreUnavailable),
        (503, "ServiceUnavailable", StoreUnavailable),
        (400, "ValidationException", StoreError),
        (400, "AccessDeniedException", StoreError),
    ],
)
def test_dynamodb_errors_map_to_store_errors(
    aws_env: None, status: int, code: str, expected: type[StoreError]
) -> None:
    with dynamodb_answering(status, code) as endpoint:
        client = boto3.client(
            "dynamodb", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 1})
        )
        store = DynamoDBStore(client, "websocket-connections")

        with pytest.raises(StoreError) as raised:
            store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))

    assert type(raised.value) is expected
    assert isinstance(raised.value.__cause__, ClientError)


# Configuration from the environment, as a Lambda function gets it.


def test_open_store_from_env_reaches_dynamodb_named_by_the_environment(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    dynamodb_client: Any,
    dynamodb_table: str,
) -> None:
    monkeypatch.setenv("WSCHAT_STORE", "dynamodb")
    monkeypatch.setenv("WEBSOCKET_TABLE", dynamodb_table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)

    store = open_store_from_env()
    try:
        store.put_connection(Connection.opened("L0SM9cOFvHcCIhw=", CONNECTED_AT_MS))
        assert store.get_connection("L0SM9cOFvHcCIhw=") == Connection.opened(
            "L0SM9cOFvHcCIhw=", CONNECTED_AT_MS
        )
        assert list(store.scan_connection_ids()) == ["L0SM9cOFvHcCIhw="]
        # The record is in the table WEBSOCKET_TABLE names, on the moto server.
        assert "Item" in dynamodb_client.get_item(
            TableName=dynamodb_table, Key={"connectionId": {"S": "L0SM9cOFvHcCIhw="}}
        )
        store.delete_connection("L0SM9cOFvHcCIhw=")
        assert store.get_connection("L0SM9cOFvHcCIhw=") is None
    finally:
        store.close()

"""DynamoDB adapter: the connections table of the AWS deployment (``websocket-connections``).

Items keep the seed's partition key ``connectionId`` (S) and add ``connectedAt`` (N, epoch
milliseconds) and ``expiresAt`` (N, epoch seconds), the table's TTL attribute. The adapter takes
an injected boto3 client, so tests and the local tooling can point it at any DynamoDB-compatible
endpoint; ``from_environment`` builds the client a Lambda uses.

botocore's errors stop here (see ``wschat.storage.base``)::

    ClientError: throttling, capacity, 5xx    -> StoreUnavailable  (retrying later may work)
    BotoCoreError: cannot connect, timed out  -> StoreUnavailable
    ClientError: anything else (no table, ...) -> StoreError
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from wschat.storage.base import Connection, StoreError, StoreUnavailable

# Error codes DynamoDB answers when it is overloaded or failing, not when the request is wrong.
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Run a DynamoDB call, turning botocore's exceptions into the store's."""
    try:
        yield
    except ClientError as exc:
        if _error_code(exc) in _UNAVAILABLE_CODES:
            raise StoreUnavailable(f"DynamoDB {what}: {exc}") from exc
        raise StoreError(f"DynamoDB {what}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB {what}: {exc}") from exc


class DynamoDBStore:
    """The ConnectionStore port over one DynamoDB table."""

    def __init__(self, client: Any, table_name: str, *, scan_page_size: int | None = None) -> None:
        self._client = client
        self.table_name = table_name
        self._scan_page_size = scan_page_size
        self._owns_client = False

    @classmethod
    def from_environment(cls, table_name: str) -> DynamoDBStore:
        """A store over a client configured the standard boto3 way (region, credentials and
        ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` from the environment)."""
        import boto3
        from botocore.config import Config

        # Short timeouts and few retries: an API Gateway integration gives up after 29 s, and a
        # store that cannot be reached should fail the invocation quickly rather than hang.
        config = Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        store = cls(boto3.client("dynamodb", config=config), table_name)
        store._owns_client = True
        return store

    def _key(self, connection_id: str) -> dict[str, Any]:
        return {"connectionId": {"S": connection_id}}

    def put_connection(self, connection: Connection) -> None:
        with _translated(f"PutItem {connection.connection_id}"):
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "connectionId": {"S": connection.connection_id},
                    "connectedAt": {"N": str(connection.connected_at)},
                    "expiresAt": {"N": str(connection.expires_at)},
                },
            )

    def delete_connection(self, connection_id: str) -> None:
        with _translated(f"DeleteItem {connection_id}"):
            self._client.delete_item(TableName=self.table_name, Key=self._key(connection_id))

    def get_connection(self, connection_id: str) -> Connection | None:
        with _translated(f"GetItem {connection_id}"):
            # Strongly consistent: a record put a moment ago (by $connect) must be readable now,
            # as it is in the SQLite store.
            reply = self._client.get_item(
                TableName=self.table_name, Key=self._key(connection_id), ConsistentRead=True
            )
        item = reply.get("Item")
        if item is None:
            return None
        return Connection(
            connection_id=item["connectionId"]["S"],
            connected_at=int(item["connectedAt"]["N"]),
            expires_at=int(item["expiresAt"]["N"]),
        )

    def scan_connection_ids(self) -> Iterator[str]:
        pagination: dict[str, int] = {}
        if self._scan_page_size is not None:
            pagination["PageSize"] = self._scan_page_size
        # The seed's paginated Scan, reading only the key. Pages are fetched as the caller
        # iterates, so errors surface during iteration; they are translated there too.
        with _translated("Scan"):
            pages = self._client.get_paginator("scan").paginate(
                TableName=self.table_name,
                ProjectionExpression="connectionId",
                PaginationConfig=pagination,
            )
            for page in pages:
                for item in page.get("Items", []):
                    yield item["connectionId"]["S"]

    def close(self) -> None:
        # An injected client belongs to whoever made it; only our own is closed.
        if self._owns_client:
            self._client.close()


def ensure_connections_table(client: Any, table_name: str) -> None:
    """Create the connections table if it is missing, as template.yaml declares it (on-demand,
    key ``connectionId``, TTL on ``expiresAt``). For development against DynamoDB-compatible
    servers and for tests; safe to call again on an existing table."""
    with _translated(f"CreateTable {table_name}"):
        try:
            client.create_table(
                TableName=table_name,
                AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        ttl = client.describe_time_to_live(TableName=table_name)
        if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in {
            "ENABLED",
            "ENABLING",
        }:
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
            )

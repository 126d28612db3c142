"""DynamoDB adapter: the ``ChatStore`` port over the five tables of the AWS deployment.

The tables, their keys and the items the store writes are in ``wschat.storage.dynamodb_tables``
(and docs/dynamodb.md). This module holds connections and memberships, and the botocore
boundary every request goes through; messages are in ``wschat.storage.dynamodb_messages``,
rooms and room users in ``wschat.storage.dynamodb_rooms`` (mixins sending through
``wschat.storage.dynamodb_records.Records``, which this store implements).

A connection's rooms are kept twice: as the ``rooms`` set on its record (read by
``get_connection`` and ``remove_connection``) and as one membership item per room (read by
``room_members``, a Query by room); every write that changes one changes the other in the same
transaction. Writes that read first (rate-limit buckets, message ids, deletes) are optimistic: a
conditional write that fails because another invocation got there first is tried again on fresh
data a bounded number of times, then reported as ``StoreUnavailable``.

The adapter takes an injected boto3 client, so tests and the local tooling can point it at any
DynamoDB-compatible endpoint; ``from_environment`` builds the client a Lambda uses.
``ensure_tables`` creates the tables for development and tests (on AWS, template.yaml does).

botocore's errors stop here (see ``wschat.storage.base``)::

    ClientError: throttling, capacity, 5xx     -> StoreUnavailable  (retrying later may work)
    BotoCoreError: cannot connect, timed out   -> StoreUnavailable
    transaction cancelled by contention        -> StoreUnavailable  (after a few tries)
    batch items left unprocessed               -> StoreUnavailable  (after a few tries)
    ClientError: anything else (no table, ...) -> StoreError

A failed condition is not an error: it is the answer (``join_room`` returns False) or a lost race
(``append_message`` reads again and retries).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from wschat.storage import dynamodb_tables as schema
from wschat.storage.base import (
    Connection,
    Member,
    RateLimit,
    StoreError,
    StoreUnavailable,
    TableNames,
)
from wschat.storage.dynamodb_messages import MessageRecords
from wschat.storage.dynamodb_records import OPTIMISTIC_ATTEMPTS as _OPTIMISTIC_ATTEMPTS
from wschat.storage.dynamodb_records import pause as _pause
from wschat.storage.dynamodb_rooms import RoomRecords

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
# Cancellation reasons of a transaction that may commit when tried again.
_CONTENTION_REASONS = frozenset(
    {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"}
)
_CONDITION_FAILED = "ConditionalCheckFailed"  # a cancellation reason
_TRANSACT_MAX_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
_BATCH_MAX_ITEMS = 25  # and per BatchWriteItem
_BATCH_GET_MAX_KEYS = 100  # and per BatchGetItem
_CONFLICT_ATTEMPTS = 3  # tries of a transaction that conflicting transactions cancel


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


def _transact(client: Any, what: str, items: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """TransactWriteItems, tried again while conflicting transactions cancel it.

    Returns () when it committed, or one cancellation reason per item when a condition failed
    (``ConditionalCheckFailed`` on the failing items, ``None`` on the others).
    """
    for attempt in range(_CONFLICT_ATTEMPTS):
        with _translated(what):
            try:
                client.transact_write_items(TransactItems=list(items))
                return ()
            except ClientError as exc:
                if _error_code(exc) != "TransactionCanceledException":
                    raise
                cancelled = exc
        reasons = cancelled.response.get("CancellationReasons", [])
        codes = tuple(str(reason.get("Code", "None")) for reason in reasons)
        if _CONDITION_FAILED in codes:
            return codes
        if not codes or not set(codes) <= _CONTENTION_REASONS | {"None"}:
            # A malformed item (ValidationError), or no reasons to go by: retrying cannot help.
            raise StoreError(f"DynamoDB {what}: {cancelled}") from cancelled
        if attempt + 1 < _CONFLICT_ATTEMPTS:
            _pause(attempt)
    raise StoreUnavailable(f"DynamoDB {what}: {cancelled}") from cancelled


def _conditional(client: Any, operation: str, what: str, **request: Any) -> dict[str, Any] | None:
    """A write (``update_item``, ``delete_item``, ...) with a ConditionExpression: its reply,
    or None when the condition failed."""
    with _translated(what):
        try:
            reply: dict[str, Any] = getattr(client, operation)(**request)
            return reply
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            return None


def _batch_write(client: Any, table: str, requests: Sequence[dict[str, Any]]) -> None:
    """BatchWriteItem in chunks of 25, sending unprocessed items again with backoff."""
    for start in range(0, len(requests), _BATCH_MAX_ITEMS):
        pending = list(requests[start : start + _BATCH_MAX_ITEMS])
        for attempt in range(_OPTIMISTIC_ATTEMPTS):
            with _translated(f"BatchWriteItem {table}"):
                reply = client.batch_write_item(RequestItems={table: pending})
            pending = reply.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
            _pause(attempt)
        else:
            raise StoreUnavailable(
                f"DynamoDB BatchWriteItem {table}: {len(pending)} items left unprocessed"
            )


def _batch_get(
    client: Any, table: str, keys: Sequence[dict[str, Any]], **options: Any
) -> list[dict[str, Any]]:
    """BatchGetItem in chunks of 100 keys, asking for unprocessed keys again with backoff."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), _BATCH_GET_MAX_KEYS):
        pending = list(keys[start : start + _BATCH_GET_MAX_KEYS])
        for attempt in range(_OPTIMISTIC_ATTEMPTS):
            with _translated(f"BatchGetItem {table}"):
                reply = client.batch_get_item(RequestItems={table: {"Keys": pending, **options}})
            found += reply.get("Responses", {}).get(table, [])
            pending = reply.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not pending:
                break
            _pause(attempt)
        else:
            raise StoreUnavailable(
                f"DynamoDB BatchGetItem {table}: {len(pending)} keys left unprocessed"
            )
    return found


class DynamoDBStore(MessageRecords, RoomRecords):
    """The ChatStore port over five DynamoDB tables, through an injected boto3 client."""

    def __init__(
        self, client: Any, tables: TableNames, *, scan_page_size: int | None = None
    ) -> None:
        self._client = client
        self.tables = tables
        self._scan_page_size = scan_page_size
        self._owns_client = False

    @classmethod
    def from_environment(cls, tables: TableNames) -> DynamoDBStore:
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
        store = cls(boto3.client("dynamodb", config=config), tables)
        store._owns_client = True
        return store

    # --- the requests of the record modules (dynamodb_records.Records) ----------------------

    def _call(self, operation: str, what: str, **request: Any) -> dict[str, Any]:
        with _translated(what):
            reply: dict[str, Any] = getattr(self._client, operation)(**request)
            return reply

    def _conditional(self, operation: str, what: str, **request: Any) -> dict[str, Any] | None:
        return _conditional(self._client, operation, what, **request)

    def _transact(self, what: str, items: Sequence[dict[str, Any]]) -> tuple[str, ...]:
        return _transact(self._client, what, items)

    def _batch_get(
        self, table: str, keys: Sequence[dict[str, Any]], **options: Any
    ) -> list[dict[str, Any]]:
        return _batch_get(self._client, table, keys, **options)

    # --- connections -------------------------------------------------------------------------

    def put_connection(self, connection: Connection) -> None:
        what = f"PutItem {connection.connection_id}"
        record = schema.connection_item(connection)
        if not connection.rooms:
            # The seed's put_item of the connection, nothing more.
            with _translated(what):
                self._client.put_item(TableName=self.tables.connections, Item=record)
            return
        memberships = [
            schema.member_item(
                room, connection.connection_id, connection.name, connection.expires_at
            )
            for room in sorted(connection.rooms)
        ]
        first = _TRANSACT_MAX_ITEMS - 1
        _transact(
            self._client,
            f"TransactWriteItems {connection.connection_id}",
            [{"Put": {"TableName": self.tables.connections, "Item": record}}]
            + [{"Put": {"TableName": self.tables.members, "Item": m}} for m in memberships[:first]],
        )
        # More rooms than one transaction holds: plain puts, which have no condition to fail.
        _batch_write(
            self._client,
            self.tables.members,
            [{"PutRequest": {"Item": m}} for m in memberships[first:]],
        )

    def delete_connection(self, connection_id: str) -> None:
        with _translated(f"DeleteItem {connection_id}"):
            self._client.delete_item(
                TableName=self.tables.connections, Key=schema.connection_key(connection_id)
            )

    def get_connection(self, connection_id: str) -> Connection | None:
        with _translated(f"GetItem {connection_id}"):
            # Strongly consistent: a record put a moment ago (by $connect) must be readable now,
            # as it is in the SQLite store.
            reply = self._client.get_item(
                TableName=self.tables.connections,
                Key=schema.connection_key(connection_id),
                ConsistentRead=True,
            )
        item = reply.get("Item")
        return None if item is None else schema.connection_from(item)

    def scan_connection_ids(self) -> Iterator[str]:
        pagination: dict[str, int] = {}
        if self._scan_page_size is not None:
            pagination["PageSize"] = self._scan_page_size
        # The seed's paginated Scan, reading only the key. Pages are fetched as the caller
        # iterates, so errors surface during iteration; they are translated there too.
        with _translated("Scan"):
            pages = self._client.get_paginator("scan").paginate(
                TableName=self.tables.connections,
                ProjectionExpression="connectionId",
                PaginationConfig=pagination,
            )
            for page in pages:
                for item in page.get("Items", []):
                    yield item["connectionId"]["S"]

    def rename_connection(self, connection_id: str, name: str) -> Connection | None:
        # An index key cannot be "": a nameless connection has no name attribute at all.
        if name:
            change: dict[str, Any] = {
                "UpdateExpression": "SET #name = :name",
                "ExpressionAttributeValues": {":name": schema.s(name)},
            }
        else:
            change = {"UpdateExpression": "REMOVE #name"}
        reply = _conditional(
            self._client,
            "update_item",
            f"UpdateItem {connection_id}",
            TableName=self.tables.connections,
            Key=schema.connection_key(connection_id),
            ConditionExpression="attribute_exists(connectionId)",
            ExpressionAttributeNames={"#name": "name"},
            ReturnValues="ALL_NEW",
            **change,
        )
        if reply is None:
            return None
        connection = schema.connection_from(reply["Attributes"])
        for room in sorted(connection.rooms):
            # Conditional, so a membership that a concurrent leave_room removed stays removed.
            _conditional(
                self._client,
                "update_item",
                f"UpdateItem {room}/{connection_id}",
                TableName=self.tables.members,
                Key=schema.member_key(room, connection_id),
                UpdateExpression="SET #name = :name",
                ConditionExpression="attribute_exists(connectionId)",
                ExpressionAttributeNames={"#name": "name"},
                ExpressionAttributeValues={":name": schema.s(name)},
            )
        return connection

    def connection_ids_named(self, name: str) -> list[str]:
        if not name:
            return []  # nameless connections are not in the index (see rename_connection)
        with _translated(f"Query {schema.NAME_INDEX}"):
            pages = self._client.get_paginator("query").paginate(
                TableName=self.tables.connections,
                IndexName=schema.NAME_INDEX,
                KeyConditionExpression="#name = :name",
                ExpressionAttributeNames={"#name": "name"},
                ExpressionAttributeValues={":name": schema.s(name)},
            )
            return [item["connectionId"]["S"] for page in pages for item in page.get("Items", [])]

    def take_token(self, connection_id: str, now_ms: int, limit: RateLimit) -> bool:
        return self._admit(connection_id, now_ms, limit, "connectionId, tokens, tokensAt")[1]

    def admit(
        self, connection_id: str, now_ms: int, limit: RateLimit
    ) -> tuple[Connection | None, bool]:
        # One GetItem of the whole record where get_connection + take_token read it twice.
        return self._admit(connection_id, now_ms, limit, None)

    def _admit(
        self, connection_id: str, now_ms: int, limit: RateLimit, projection: str | None
    ) -> tuple[Connection | None, bool]:
        key = schema.connection_key(connection_id)
        read: dict[str, Any] = {"TableName": self.tables.connections, "Key": key}
        if projection is not None:
            read["ProjectionExpression"] = projection
        for attempt in range(_OPTIMISTIC_ATTEMPTS):
            with _translated(f"GetItem {connection_id}"):
                item = self._client.get_item(ConsistentRead=True, **read).get("Item")
            if item is None:
                return None, True  # not stored (e.g. $connect still running): nothing to limit
            connection = schema.connection_from(item) if projection is None else None
            tokens, tokens_at = item.get("tokens"), item.get("tokensAt")
            level = limit.level(
                None if tokens is None else float(tokens["N"]),
                None if tokens_at is None else int(tokens_at["N"]),
                now_ms,
            )
            if level < 1:
                return connection, False
            # Written only if the bucket is still as read. Both attributes are compared: two
            # takers in the same millisecond leave tokensAt as it was.
            condition = ["attribute_exists(connectionId)"]
            values = {":tokens": schema.n(level - 1), ":now": schema.n(now_ms)}
            for attribute, seen in (("tokens", tokens), ("tokensAt", tokens_at)):
                if seen is None:
                    condition.append(f"attribute_not_exists({attribute})")
                else:
                    condition.append(f"{attribute} = :seen_{attribute}")
                    values[f":seen_{attribute}"] = seen
            taken = _conditional(
                self._client,
                "update_item",
                f"UpdateItem {connection_id}",
                TableName=self.tables.connections,
                Key=key,
                UpdateExpression="SET tokens = :tokens, tokensAt = :now",
                ConditionExpression=" AND ".join(condition),
                ExpressionAttributeValues=values,
            )
            if taken is not None:
                return connection, True
            _pause(attempt)  # another taker came first, or the record went: read again
        raise StoreUnavailable(f"DynamoDB take_token {connection_id}: too many concurrent takers")

    # --- memberships -------------------------------------------------------------------------

    def join_room(self, room: str, connection_id: str, name: str, expires_at: int) -> bool:
        cancelled = _transact(
            self._client,
            f"TransactWriteItems join {room}/{connection_id}",
            [
                {
                    "Put": {
                        "TableName": self.tables.members,
                        "Item": schema.member_item(room, connection_id, name, expires_at),
                        "ConditionExpression": "attribute_not_exists(connectionId)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.tables.connections,
                        "Key": schema.connection_key(connection_id),
                        "UpdateExpression": "ADD rooms :room",
                        # Without it the update would make a record for a closed connection.
                        "ConditionExpression": "attribute_exists(connectionId)",
                        "ExpressionAttributeValues": {":room": {"SS": [room]}},
                    }
                },
            ],
        )
        return not cancelled  # already a member, or the connection is gone

    def leave_room(self, room: str, connection_id: str) -> bool:
        membership = {
            "TableName": self.tables.members,
            "Key": schema.member_key(room, connection_id),
            "ConditionExpression": "attribute_exists(connectionId)",
        }
        cancelled = _transact(
            self._client,
            f"TransactWriteItems leave {room}/{connection_id}",
            [
                {"Delete": membership},
                {
                    "Update": {
                        "TableName": self.tables.connections,
                        "Key": schema.connection_key(connection_id),
                        "UpdateExpression": "DELETE rooms :room",
                        "ConditionExpression": "attribute_exists(connectionId)",
                        "ExpressionAttributeValues": {":room": {"SS": [room]}},
                    }
                },
            ],
        )
        if not cancelled:
            return True
        if cancelled[0] == _CONDITION_FAILED:
            return False  # not a member
        # A member whose record is gone (its $disconnect came first): the membership still goes.
        deleted = _conditional(
            self._client, "delete_item", f"DeleteItem {room}/{connection_id}", **membership
        )
        return deleted is not None

    def room_members(self, room: str, *, limit: int | None = None) -> list[Member]:
        if limit is not None and limit <= 0:
            return []
        request: dict[str, Any] = {
            "TableName": self.tables.members,
            "KeyConditionExpression": "room = :room",
            "ExpressionAttributeValues": {":room": schema.s(room)},
            "ConsistentRead": True,
        }
        if limit is not None:
            # DynamoDB's Limit: the first Query reads no more than asked for.
            request["PaginationConfig"] = {"MaxItems": limit, "PageSize": limit}
        with _translated(f"Query {self.tables.members} {room}"):
            pages = self._client.get_paginator("query").paginate(**request)
            members = []
            for page in pages:
                for item in page.get("Items", []):
                    members.append(Member(room, item["connectionId"]["S"], item["name"]["S"]))
                    if limit is not None and len(members) >= limit:
                        return members  # no further page is read
            return members

    def room_member_ids(self, room: str, *, after: str | None = None, limit: int) -> list[str]:
        if limit <= 0:
            return []
        request: dict[str, Any] = {
            "TableName": self.tables.members,
            "KeyConditionExpression": "room = :room",
            "ExpressionAttributeValues": {":room": schema.s(room)},
            "ProjectionExpression": "connectionId",
            "ConsistentRead": True,
            "Limit": limit,
        }
        if after is not None:
            request["ExclusiveStartKey"] = {"room": schema.s(room), "connectionId": schema.s(after)}
        ids: list[str] = []
        with _translated(f"Query {self.tables.members} {room}"):
            # Limit caps the items a Query evaluates, and a page may stop short of it at 1 MB
            # (~40,000 ids): go on from LastEvaluatedKey until the page is full or the room ends.
            while len(ids) < limit:
                page = self._client.query(**request)
                ids.extend(item["connectionId"]["S"] for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
                request["Limit"] = limit - len(ids)
        return ids

    def remove_connection(
        self, connection_id: str, *, connected_before: int | None = None
    ) -> Connection | None:
        # The record first: once it is gone a concurrent join_room's condition fails, so no
        # membership can be added behind this one's back. Memberships left by a failure here
        # expire with the members table's TTL.
        request: dict[str, Any] = {
            "TableName": self.tables.connections,
            "Key": schema.connection_key(connection_id),
            "ReturnValues": "ALL_OLD",
        }
        if connected_before is not None:
            request["ConditionExpression"] = "connectedAt < :before"
            request["ExpressionAttributeValues"] = {":before": {"N": str(connected_before)}}
        reply = _conditional(self._client, "delete_item", f"DeleteItem {connection_id}", **request)
        old = None if reply is None else reply.get("Attributes")
        if not old:
            return None
        connection = schema.connection_from(old)
        _batch_write(
            self._client,
            self.tables.members,
            [
                {"DeleteRequest": {"Key": schema.member_key(room, connection_id)}}
                for room in sorted(connection.rooms)
            ],
        )
        return connection

    def close(self) -> None:
        # An injected client belongs to whoever made it; only our own is closed.
        if self._owns_client:
            self._client.close()


# --- tables ---------------------------------------------------------------------------------

_INDEX_WAIT_SECONDS = 600  # an index on a large table takes minutes to build


def ensure_tables(client: Any, tables: TableNames) -> None:
    """Create whichever of the five tables are missing, wait until they are active, and make
    sure of their indexes (``name-index``, ``public-index``) and of TTL on ``expiresAt``."""
    definitions = schema.table_definitions(tables)
    for definition in definitions:
        with _translated(f"CreateTable {definition['TableName']}"):
            try:
                client.create_table(**definition)
            except ClientError as exc:
                if _error_code(exc) != "ResourceInUseException":
                    raise
    for definition in definitions:
        with _translated(f"DescribeTable {definition['TableName']}"):
            client.get_waiter("table_exists").wait(
                TableName=definition["TableName"], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
    for table, index, attributes in schema.indexes(tables):
        _ensure_index(client, table, index, attributes)
    for table in schema.ttl_tables(tables):
        _ensure_ttl(client, table)


def _ensure_index(
    client: Any, table: str, index: dict[str, Any], attributes: list[dict[str, str]]
) -> None:
    """Add ``index`` to a table made before it, and wait until it is active."""
    name = index["IndexName"]
    deadline = time.monotonic() + _INDEX_WAIT_SECONDS
    while True:
        with _translated(f"DescribeTable {table}"):
            description = client.describe_table(TableName=table)["Table"]
        indexes = {
            index["IndexName"]: index.get("IndexStatus", "ACTIVE")
            for index in description.get("GlobalSecondaryIndexes", [])
        }
        status = indexes.get(name)
        if status == "ACTIVE":
            return
        if status is None:
            with _translated(f"UpdateTable {table}"):
                client.update_table(
                    TableName=table,
                    AttributeDefinitions=attributes,
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )
        elif time.monotonic() > deadline:
            raise TimeoutError(f"{table}: {name} is still {status}")
        else:
            time.sleep(2)


def _ensure_ttl(client: Any, table: str) -> None:
    with _translated(f"UpdateTimeToLive {table}"):
        ttl = client.describe_time_to_live(TableName=table)
        if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") not in {
            "ENABLED",
            "ENABLING",
        }:
            client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE},
            )

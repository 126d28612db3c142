"""The four DynamoDB tables: their definitions and the store's records as their items.

Pure data, no I/O: ``wschat.storage.dynamodb`` sends these (``ensure_tables``, the adapter's
requests). The tables template.yaml declares on AWS must have the same keys, index and TTL::

    websocket-connections  connectionId (S)            connectedAt N, expiresAt N (TTL),
                                                       name S, rooms SS, tokens N, tokensAt N;
                                                       GSI name-index: name (S), KEYS_ONLY
    chat-members           room (S), connectionId (S)  name S, expiresAt N (TTL)
    chat-messages          room (S), id (S)            sender S, text S, ts N, clientId S,
                                                       recipient S, expiresAt N (TTL)
    chat-rooms             room (S)                    lastId S

All on-demand. A connection's ``name`` is left out while it is "" (an index key cannot be empty)
and its ``rooms`` while there are none (a set cannot be empty); a message's ``clientId`` and
``recipient`` while they are None. Attribute values are in the low-level client's format.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from wschat.storage.base import Connection, NewMessage, StoredMessage, TableNames

NAME_INDEX = "name-index"  # connections by name: partition key name (S), keys only
TTL_ATTRIBUTE = "expiresAt"


def _keys(*keys: tuple[str, str]) -> dict[str, Any]:
    """AttributeDefinitions and KeySchema of (name, HASH|RANGE) string keys."""
    return {
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
        "KeySchema": [{"AttributeName": key, "KeyType": kind} for key, kind in keys],
    }


NAME_INDEX_SPEC = {
    "IndexName": NAME_INDEX,
    "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
    "Projection": {"ProjectionType": "KEYS_ONLY"},
}


def table_definitions(tables: TableNames) -> list[dict[str, Any]]:
    """CreateTable requests for the four tables, all on-demand."""
    connections = _keys(("connectionId", "HASH"))
    connections["AttributeDefinitions"].append({"AttributeName": "name", "AttributeType": "S"})
    return [
        {
            "TableName": tables.connections,
            **connections,
            "GlobalSecondaryIndexes": [NAME_INDEX_SPEC],
            "BillingMode": "PAY_PER_REQUEST",
        },
        {
            "TableName": tables.members,
            **_keys(("room", "HASH"), ("connectionId", "RANGE")),
            "BillingMode": "PAY_PER_REQUEST",
        },
        {
            "TableName": tables.messages,
            **_keys(("room", "HASH"), ("id", "RANGE")),
            "BillingMode": "PAY_PER_REQUEST",
        },
        {
            "TableName": tables.rooms,
            **_keys(("room", "HASH")),
            "BillingMode": "PAY_PER_REQUEST",
        },
    ]


def ttl_tables(tables: TableNames) -> list[str]:
    """The tables whose items expire by ``expiresAt`` (a room's lastId must never expire)."""
    return [tables.connections, tables.members, tables.messages]


# --- items ----------------------------------------------------------------------------------


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    # Floats as the shortest decimal that reads back as the same float (repr), in fixed point
    # without trailing zeros: DynamoDB numbers take no exponent and 19.0 is stored as 19.
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": format(Decimal(repr(value)).normalize(), "f")}


def connection_key(connection_id: str) -> dict[str, Any]:
    return {"connectionId": s(connection_id)}


def member_key(room: str, connection_id: str) -> dict[str, Any]:
    return {"room": s(room), "connectionId": s(connection_id)}


def room_key(room: str) -> dict[str, Any]:
    return {"room": s(room)}


def connection_item(connection: Connection) -> dict[str, Any]:
    item: dict[str, Any] = {
        **connection_key(connection.connection_id),
        "connectedAt": n(connection.connected_at),
        "expiresAt": n(connection.expires_at),
    }
    if connection.name:
        item["name"] = s(connection.name)
    if connection.rooms:
        item["rooms"] = {"SS": sorted(connection.rooms)}
    return item


def connection_from(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item["connectionId"]["S"],
        connected_at=int(item["connectedAt"]["N"]),
        expires_at=int(item["expiresAt"]["N"]),
        name=item.get("name", {}).get("S", ""),
        rooms=frozenset(item.get("rooms", {}).get("SS", ())),
    )


def member_item(room: str, connection_id: str, name: str, expires_at: int) -> dict[str, Any]:
    return {**member_key(room, connection_id), "name": s(name), "expiresAt": n(expires_at)}


def message_item(message: NewMessage, message_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        **room_key(message.room),
        "id": s(message_id),
        "sender": s(message.sender),
        "text": s(message.text),
        "ts": n(message.ts),
        "expiresAt": n(message.expires_at),
    }
    if message.client_id is not None:
        item["clientId"] = s(message.client_id)
    if message.to is not None:
        item["recipient"] = s(message.to)
    return item


def message_from(item: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        room=item["room"]["S"],
        id=item["id"]["S"],
        sender=item["sender"]["S"],
        text=item["text"]["S"],
        ts=int(item["ts"]["N"]),
        client_id=item["clientId"]["S"] if "clientId" in item else None,
        to=item["recipient"]["S"] if "recipient" in item else None,
    )

"""The five DynamoDB tables: their definitions and the store's records as their items.

Pure data, no I/O: ``wschat.storage.dynamodb`` sends these (``ensure_tables``, the adapter's
requests). The tables template.yaml declares on AWS must have the same keys, indexes and TTL
(docs/dynamodb.md says which access pattern each serves)::

    websocket-connections  connectionId (S)            connectedAt N, expiresAt N (TTL),
                                                       name S, rooms SS, tokens N, tokensAt N;
                                                       GSI name-index: name (S), KEYS_ONLY
    chat-members           room (S), connectionId (S)  name S, expiresAt N (TTL)
    chat-messages          room (S), id (S)            sender S, text S, ts N, clientId S,
                                                       recipient S, expiresAt N (TTL),
                                                       editedAt N, deletedAt N, emojis SS,
                                                       "r:<emoji>" SS (one per emoji: users)
    chat-rooms             room (S)                    lastId S, owner S, topic S,
                                                       private BOOL, createdAt N, listed S;
                                                       GSI public-index: listed (S), room (S),
                                                       INCLUDE owner, topic, createdAt
    chat-room-users        room (S), user (S)          role S, invited BOOL, mutedUntil N,
                                                       lastRead S

All on-demand. A connection's ``name`` is left out while it is "" (an index key cannot be empty)
and its ``rooms`` while there are none (a set cannot be empty); a message's ``clientId`` and
``recipient`` while they are None; a message's ``emojis`` and reaction sets while nobody reacted
(``deletedAt`` present means deleted); a room's ``listed`` unless it is created and public (the
index is sparse: it holds public rooms only); a room user's attributes while unset. Attribute
values are in the low-level client's format.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from wschat.storage.base import (
    Connection,
    NewMessage,
    RoomInfo,
    RoomUser,
    StoredMessage,
    TableNames,
    parse_role,
)

NAME_INDEX = "name-index"  # connections by name: partition key name (S), keys only
PUBLIC_INDEX = "public-index"  # public rooms by name: partition key listed (S), sort key room
PUBLIC = "public"  # the one value of ``listed``: every public room in one index partition
TTL_ATTRIBUTE = "expiresAt"
REACTION_PREFIX = "r:"  # a message's reactions with one emoji: attribute "r:<emoji>", users SS


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


# Public rooms in name order. The projection leaves lastId out: it changes with every message,
# and a change to an attribute the index does not hold writes nothing to it, so the one index
# partition ("public") takes a write per room created or topic set, not per message.
PUBLIC_INDEX_SPEC = {
    "IndexName": PUBLIC_INDEX,
    "KeySchema": [
        {"AttributeName": "listed", "KeyType": "HASH"},
        {"AttributeName": "room", "KeyType": "RANGE"},
    ],
    "Projection": {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["owner", "topic", "createdAt"],
    },
}


def indexes(tables: TableNames) -> list[tuple[str, dict[str, Any], list[dict[str, str]]]]:
    """Each table's GSI: (table, index spec, the attribute definitions it adds), for adding
    an index to a table made before it."""
    return [
        (tables.connections, NAME_INDEX_SPEC, [{"AttributeName": "name", "AttributeType": "S"}]),
        (tables.rooms, PUBLIC_INDEX_SPEC, [{"AttributeName": "listed", "AttributeType": "S"}]),
    ]


def table_definitions(tables: TableNames) -> list[dict[str, Any]]:
    """CreateTable requests for the five tables, all on-demand."""
    connections = _keys(("connectionId", "HASH"))
    connections["AttributeDefinitions"].append({"AttributeName": "name", "AttributeType": "S"})
    rooms = _keys(("room", "HASH"))
    rooms["AttributeDefinitions"].append({"AttributeName": "listed", "AttributeType": "S"})
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
            **rooms,
            "GlobalSecondaryIndexes": [PUBLIC_INDEX_SPEC],
            "BillingMode": "PAY_PER_REQUEST",
        },
        {
            "TableName": tables.room_users,
            **_keys(("room", "HASH"), ("user", "RANGE")),
            "BillingMode": "PAY_PER_REQUEST",
        },
    ]


def ttl_tables(tables: TableNames) -> list[str]:
    """The tables whose items expire by ``expiresAt`` (a room's lastId must never expire, and
    a user's role and read mark outlive their connections)."""
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


def message_key(room: str, message_id: str) -> dict[str, Any]:
    return {"room": s(room), "id": s(message_id)}


def room_user_key(room: str, user: str) -> dict[str, Any]:
    return {"room": s(room), "user": s(user)}


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
    deleted = "deletedAt" in item
    reactions = {
        emoji: tuple(sorted(item[REACTION_PREFIX + emoji]["SS"]))
        for emoji in sorted(item.get("emojis", {}).get("SS", ()))
        if REACTION_PREFIX + emoji in item and not deleted
    }
    return StoredMessage(
        room=item["room"]["S"],
        id=item["id"]["S"],
        sender=item["sender"]["S"],
        text="" if deleted else item["text"]["S"],
        ts=int(item["ts"]["N"]),
        client_id=item["clientId"]["S"] if "clientId" in item else None,
        to=item["recipient"]["S"] if "recipient" in item else None,
        edited_at=int(item["editedAt"]["N"]) if "editedAt" in item else None,
        deleted=deleted,
        reactions=reactions,
    )


def message_live(item: dict[str, Any], now: int) -> bool:
    """Whether a message item has not expired (TTL deletes within days, not at once)."""
    return int(item["expiresAt"]["N"]) > now


# A room record's attributes besides its key: append_message rewrites the whole record
# (PutItem) on the condition that each is as it read them.
ROOM_ATTRIBUTES = ("lastId", "owner", "topic", "private", "createdAt", "listed")


def room_from(item: dict[str, Any]) -> RoomInfo | None:
    """A room record (of the table or of the public index) as RoomInfo; None if not created."""
    if "owner" not in item:
        return None
    return RoomInfo(
        room=item["room"]["S"],
        owner=item["owner"]["S"],
        topic=item.get("topic", {}).get("S", ""),
        private=bool(item.get("private", {}).get("BOOL", False)),
        created_at=int(item["createdAt"]["N"]),
    )


def room_user_from(item: dict[str, Any]) -> RoomUser:
    return RoomUser(
        room=item["room"]["S"],
        user=item["user"]["S"],
        role=parse_role(item.get("role", {}).get("S")),
        invited=bool(item.get("invited", {}).get("BOOL", False)),
        muted_until=int(item["mutedUntil"]["N"]) if "mutedUntil" in item else None,
        last_read=item["lastRead"]["S"] if "lastRead" in item else None,
    )

"""DynamoDB adapter, rooms and room users: the ``chat-rooms`` records and ``chat-room-users``.

A room's record is the item that holds its ``lastId`` (``dynamodb_messages``); creating the room
adds its owner, topic, visibility and creation time to that item, and ``listed`` = "public" for
a public room: the sparse ``public-index`` holds exactly those, by name, so listing public rooms
is a Query, never a Scan. A room's member count is a Query of the members table that counts
(``Select COUNT``) and returns no items.

A room user is one item per (room, user name), holding what outlives connections: the role, an
invitation, a mute, the read mark. Each setter is one UpdateItem; those that can race (``invite``
and ``mark_read``) are conditional, and a read mark only ever moves forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wschat.storage import dynamodb_tables as schema
from wschat.storage.base import Role, RoomInfo, RoomUser
from wschat.storage.dynamodb_records import Records


class RoomRecords(Records):
    """The room and room user methods of ``DynamoDBStore``."""

    # --- rooms ---------------------------------------------------------------------------------

    def create_room(
        self, room: str, *, owner: str, topic: str, private: bool, created_at: int
    ) -> bool:
        values: dict[str, Any] = {
            ":owner": schema.s(owner),
            ":topic": schema.s(topic),
            ":private": {"BOOL": private},
            ":at": schema.n(created_at),
        }
        update = "SET #owner = :owner, #topic = :topic, #private = :private, createdAt = :at"
        if not private:
            update += ", listed = :public"
            values[":public"] = schema.s(schema.PUBLIC)
        # The record may exist already, holding lastId alone: a room with messages that nobody
        # created. Only an owner makes it created.
        reply = self._conditional(
            "update_item",
            f"UpdateItem {self.tables.rooms} {room}",
            TableName=self.tables.rooms,
            Key=schema.room_key(room),
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(#owner)",
            ExpressionAttributeNames={"#owner": "owner", "#topic": "topic", "#private": "private"},
            ExpressionAttributeValues=values,
        )
        return reply is not None

    def get_room(self, room: str) -> RoomInfo | None:
        item = self._call(
            "get_item",
            f"GetItem {self.tables.rooms} {room}",
            TableName=self.tables.rooms,
            Key=schema.room_key(room),
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else schema.room_from(item)

    def set_topic(self, room: str, topic: str) -> bool:
        reply = self._conditional(
            "update_item",
            f"UpdateItem {self.tables.rooms} {room}",
            TableName=self.tables.rooms,
            Key=schema.room_key(room),
            UpdateExpression="SET #topic = :topic",
            ConditionExpression="attribute_exists(#owner)",
            ExpressionAttributeNames={"#owner": "owner", "#topic": "topic"},
            ExpressionAttributeValues={":topic": schema.s(topic)},
        )
        return reply is not None

    def public_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        if limit <= 0:
            return []
        values: dict[str, Any] = {":public": schema.s(schema.PUBLIC)}
        condition = "listed = :public"
        if after is not None:
            condition += " AND room > :after"
            values[":after"] = schema.s(after)
        request: dict[str, Any] = {
            "TableName": self.tables.rooms,
            "IndexName": schema.PUBLIC_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        rooms: list[RoomInfo] = []
        while len(rooms) < limit:
            request["Limit"] = limit - len(rooms)
            reply = self._call("query", f"Query {schema.PUBLIC_INDEX}", **request)
            rooms += [
                info for info in map(schema.room_from, reply.get("Items", [])) if info is not None
            ]
            if "LastEvaluatedKey" not in reply:
                break
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return rooms[:limit]

    def room_member_count(self, room: str, *, limit: int | None = None) -> int:
        if limit is not None and limit <= 0:
            return 0
        request: dict[str, Any] = {
            "TableName": self.tables.members,
            "KeyConditionExpression": "room = :room",
            "ExpressionAttributeValues": {":room": schema.s(room)},
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        count = 0
        # A page counts up to 1 MB of items, a big room takes several; with a limit, Limit
        # caps what a page counts, and pages are read only while the count is short of it.
        while limit is None or count < limit:
            if limit is not None:
                request["Limit"] = limit - count
            reply = self._call("query", f"Query {self.tables.members} {room}", **request)
            count += int(reply.get("Count", 0))
            if "LastEvaluatedKey" not in reply:
                break
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return count if limit is None else min(count, limit)

    # --- room users ----------------------------------------------------------------------------

    def _room_user_item(self, room: str, user: str) -> dict[str, Any] | None:
        item = self._call(
            "get_item",
            f"GetItem {self.tables.room_users} {room}/{user}",
            TableName=self.tables.room_users,
            Key=schema.room_user_key(room, user),
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else dict(item)

    def get_room_user(self, room: str, user: str) -> RoomUser | None:
        item = self._room_user_item(room, user)
        return None if item is None else schema.room_user_from(item)

    def room_users(self, room: str, *, after: str | None = None, limit: int) -> list[RoomUser]:
        if limit <= 0:
            return []
        request: dict[str, Any] = {
            "TableName": self.tables.room_users,
            "KeyConditionExpression": "room = :room",
            "ExpressionAttributeValues": {":room": schema.s(room)},
            "ConsistentRead": True,
        }
        if after is not None:
            request["ExclusiveStartKey"] = schema.room_user_key(room, after)
        users: list[RoomUser] = []
        while len(users) < limit:
            request["Limit"] = limit - len(users)
            reply = self._call("query", f"Query {self.tables.room_users} {room}", **request)
            users += [schema.room_user_from(item) for item in reply.get("Items", [])]
            if "LastEvaluatedKey" not in reply:
                break
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return users

    def _set_or_clear(self, room: str, user: str, attribute: str, value: Any | None) -> None:
        """SET one attribute of a room user (making the record if need be), or REMOVE it: a
        clear does not make a record for a user who has none."""
        request: dict[str, Any] = {
            "TableName": self.tables.room_users,
            "Key": schema.room_user_key(room, user),
            "ExpressionAttributeNames": {"#a": attribute},
        }
        what = f"UpdateItem {self.tables.room_users} {room}/{user}"
        if value is None:
            request["ExpressionAttributeNames"]["#user"] = "user"
            self._conditional(
                "update_item",
                what,
                UpdateExpression="REMOVE #a",
                ConditionExpression="attribute_exists(#user)",
                **request,
            )
        else:
            self._call(
                "update_item",
                what,
                UpdateExpression="SET #a = :value",
                ExpressionAttributeValues={":value": value},
                **request,
            )

    def set_role(self, room: str, user: str, role: Role | None) -> None:
        self._set_or_clear(room, user, "role", None if role is None else schema.s(role))

    def set_muted(self, room: str, user: str, until_ms: int | None) -> None:
        value = None if until_ms is None else schema.n(until_ms)
        self._set_or_clear(room, user, "mutedUntil", value)

    def invite(self, room: str, user: str) -> bool:
        reply = self._conditional(
            "update_item",
            f"UpdateItem {self.tables.room_users} {room}/{user}",
            TableName=self.tables.room_users,
            Key=schema.room_user_key(room, user),
            UpdateExpression="SET invited = :yes",
            ConditionExpression="attribute_not_exists(invited) OR invited = :no",
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":no": {"BOOL": False}},
        )
        return reply is not None

    def mark_read(self, room: str, user: str, up_to: str) -> str:
        moved = self._conditional(
            "update_item",
            f"UpdateItem {self.tables.room_users} {room}/{user}",
            TableName=self.tables.room_users,
            Key=schema.room_user_key(room, user),
            UpdateExpression="SET lastRead = :mark",
            ConditionExpression="attribute_not_exists(lastRead) OR lastRead < :mark",
            ExpressionAttributeValues={":mark": schema.s(up_to)},
        )
        if moved is not None:
            return up_to
        # The mark was already at or past up_to, and marks never go back: it still is.
        item = self._room_user_item(room, user) or {}
        return str(item.get("lastRead", {}).get("S", up_to))

    def read_marks(self, user: str, rooms: Sequence[str]) -> dict[str, str]:
        keys = [schema.room_user_key(room, user) for room in dict.fromkeys(rooms)]
        items = self._batch_get(
            self.tables.room_users,
            keys,
            ProjectionExpression="room, lastRead",
            ConsistentRead=True,
        )
        return {item["room"]["S"]: item["lastRead"]["S"] for item in items if "lastRead" in item}

"""DynamoDB adapter, messages: the ``chat-messages`` items and the room's ``lastId``.

A message is one item keyed by (room, id). Storing one moves its room's ``lastId`` in the same
transaction (ids increase in the order a room stores them). Every later change is one
conditional UpdateItem on the item, whose condition is everything the change assumes: that the
message is there, has not expired and is not deleted, and (edits, own deletes) whose it is.

Reactions live on the message item, as top-level attributes only (``ADD`` and ``DELETE`` of set
elements and ``size()`` are all defined on top-level sets, with no parent to create first):

* ``emojis`` (SS): the distinct emojis that have at least one reaction. ``size(emojis)`` is what
  the cap on distinct emojis is checked against, in the condition of the write that adds one.
* ``r:<emoji>`` (SS), one per emoji: the users who reacted with it. DynamoDB drops a set that
  becomes empty, so the last user's removal also takes the emoji out of ``emojis``, in the same
  write, on the condition that the user is still the only one.

A map of sets (``reactions.#emoji``) would need the map to exist before the first reaction and
cannot be created and added to in one expression; one set of "emoji user" pairs cannot be
counted by emoji in a condition.
"""

from __future__ import annotations

import time
from typing import Any

from wschat import ids
from wschat.storage import dynamodb_tables as schema
from wschat.storage.base import HistoryPage, NewMessage, StoredMessage, StoreUnavailable
from wschat.storage.dynamodb_records import OPTIMISTIC_ATTEMPTS, Records, pause

# What every change of a stored message assumes; ``:now`` is epoch seconds.
_CHANGEABLE = "attribute_exists(id) AND expiresAt > :now AND attribute_not_exists(deletedAt)"


def _now() -> int:
    return int(time.time())


class MessageRecords(Records):
    """The message methods of ``DynamoDBStore``."""

    def append_message(self, message: NewMessage) -> StoredMessage:
        what = f"TransactWriteItems append {message.room}"
        room_key = schema.room_key(message.room)
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            room = self._call(
                "get_item",
                f"GetItem {self.tables.rooms} {message.room}",
                TableName=self.tables.rooms,
                Key=room_key,
                ConsistentRead=True,
            ).get("Item", {})
            last_id: str | None = room["lastId"]["S"] if "lastId" in room else None
            message_id = ids.next_id(last_id, message.ts)
            # The room record is written whole (a PutItem: what this code path may do), and
            # only if every attribute is still as read: lastId moves only from the value read,
            # in the transaction that stores the message, so ids in a room increase in the
            # order its messages are stored; and a create_room or set_topic in between is
            # not overwritten (this tries again on fresh data instead).
            names: dict[str, str] = {}
            values: dict[str, Any] = {}
            condition = []
            for n, attribute in enumerate(schema.ROOM_ATTRIBUTES):
                names[f"#a{n}"] = attribute
                if attribute in room:
                    condition.append(f"#a{n} = :a{n}")
                    values[f":a{n}"] = room[attribute]
                else:
                    condition.append(f"attribute_not_exists(#a{n})")
            advance: dict[str, Any] = {
                "TableName": self.tables.rooms,
                "Item": {**room, **room_key, "lastId": schema.s(message_id)},
                "ConditionExpression": " AND ".join(condition),
                "ExpressionAttributeNames": names,
            }
            if values:
                advance["ExpressionAttributeValues"] = values
            store = {
                "TableName": self.tables.messages,
                "Item": schema.message_item(message, message_id),
            }
            if not self._transact(what, [{"Put": advance}, {"Put": store}]):
                return message.stored_as(message_id)
            pause(attempt)  # another message took the room's next id first: read again
        raise StoreUnavailable(f"DynamoDB {what}: too many concurrent writers")

    def message_history(
        self,
        room: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        now = _now()
        values: dict[str, Any] = {":room": schema.s(room)}
        if after is not None:
            condition, forward = "room = :room AND id > :edge", True
            values[":edge"] = schema.s(after)
        elif before is not None:
            condition, forward = "room = :room AND id < :edge", False
            values[":edge"] = schema.s(before)
        else:
            condition, forward = "room = :room", False
        # One more than asked tells whether there is more. Expired messages (TTL deletes them
        # within days, not at once) are dropped and do not count, so read on past them.
        wanted = limit + 1
        live: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(live) < wanted:
            request: dict[str, Any] = {
                "TableName": self.tables.messages,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": forward,
                "Limit": wanted - len(live),
                "ConsistentRead": True,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            reply = self._call("query", f"Query {self.tables.messages} {room}", **request)
            live += [item for item in reply.get("Items", []) if schema.message_live(item, now)]
            start = reply.get("LastEvaluatedKey")
            if start is None:
                break
        messages = [schema.message_from(item) for item in live[:limit]]
        if not forward:
            messages.reverse()
        return HistoryPage(messages, more=len(live) > limit)

    def _message_item(self, room: str, message_id: str) -> dict[str, Any] | None:
        """The live item of a message (a tombstone included), or None."""
        item = self._call(
            "get_item",
            f"GetItem {self.tables.messages} {room}/{message_id}",
            TableName=self.tables.messages,
            Key=schema.message_key(room, message_id),
            ConsistentRead=True,
        ).get("Item")
        if item is None or not schema.message_live(item, _now()):
            return None
        return dict(item)

    def get_message(self, room: str, message_id: str) -> StoredMessage | None:
        item = self._message_item(room, message_id)
        return None if item is None else schema.message_from(item)

    def _change(
        self, room: str, message_id: str, condition: str, **request: Any
    ) -> StoredMessage | None:
        """One conditional UpdateItem of a message (``_CHANGEABLE`` and ``condition``): the
        message after, or None when the condition failed."""
        request.setdefault("ExpressionAttributeValues", {})[":now"] = schema.n(_now())
        reply = self._conditional(
            "update_item",
            f"UpdateItem {self.tables.messages} {room}/{message_id}",
            TableName=self.tables.messages,
            Key=schema.message_key(room, message_id),
            ConditionExpression=" AND ".join(filter(None, [_CHANGEABLE, condition])),
            ReturnValues="ALL_NEW",
            **request,
        )
        return None if reply is None else schema.message_from(reply["Attributes"])

    def edit_message(
        self, room: str, message_id: str, *, author: str, text: str, edited_at: int
    ) -> StoredMessage | None:
        return self._change(
            room,
            message_id,
            "sender = :author",
            UpdateExpression="SET #text = :text, editedAt = :at",
            ExpressionAttributeNames={"#text": "text"},
            ExpressionAttributeValues={
                ":author": schema.s(author),
                ":text": schema.s(text),
                ":at": schema.n(edited_at),
            },
        )

    def delete_message(
        self, room: str, message_id: str, *, deleted_at: int, author: str | None
    ) -> StoredMessage | None:
        # Read first to learn which reaction attributes to remove; the write then holds only
        # if the message still has exactly those emojis (a reaction to a new one in between
        # sends this round again). Who reacted within an emoji does not matter: it all goes.
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            item = self._message_item(room, message_id)
            if item is None or "deletedAt" in item:
                return None
            if author is not None and item["sender"]["S"] != author:
                return None
            emojis = sorted(item.get("emojis", {}).get("SS", ()))
            names = {"#text": "text"}
            values: dict[str, Any] = {":empty": schema.s(""), ":at": schema.n(deleted_at)}
            condition = []
            if author is not None:
                condition.append("sender = :author")
                values[":author"] = schema.s(author)
            remove = []
            if emojis:
                remove.append("emojis")
                condition.append("size(emojis) = :count")
                values[":count"] = schema.n(len(emojis))
                for n, emoji in enumerate(emojis):
                    names[f"#r{n}"] = schema.REACTION_PREFIX + emoji
                    values[f":e{n}"] = schema.s(emoji)
                    condition.append(f"contains(emojis, :e{n})")
                    remove.append(f"#r{n}")
            else:
                condition.append("attribute_not_exists(emojis)")
            update = "SET #text = :empty, deletedAt = :at"
            if remove:
                update += " REMOVE " + ", ".join(remove)
            deleted = self._change(
                room,
                message_id,
                " AND ".join(condition),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            if deleted is not None:
                return deleted
            pause(attempt)  # changed since read (or deleted meanwhile: the read says so)
        raise StoreUnavailable(f"DynamoDB delete_message {room}/{message_id}: kept changing")

    def react(
        self, room: str, message_id: str, *, user: str, emoji: str, on: bool, max_emojis: int
    ) -> StoredMessage | None:
        if not user or not emoji:
            raise ValueError("a reaction needs a user and an emoji")
        names = {"#r": schema.REACTION_PREFIX + emoji}
        user_set = {"SS": [user]}
        if on:
            # Already one of the message's emojis, or room for one more.
            values: dict[str, Any] = {":user": user_set, ":emoji": {"SS": [emoji]}}
            values[":e"] = schema.s(emoji)
            room_for_it = "contains(emojis, :e)"
            if max_emojis > 0:
                room_for_it += " OR attribute_not_exists(emojis) OR size(emojis) < :max"
                values[":max"] = schema.n(max_emojis)
            return self._change(
                room,
                message_id,
                f"({room_for_it})",
                UpdateExpression="ADD #r :user, emojis :emoji",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            item = self._message_item(room, message_id)
            if item is None or "deletedAt" in item:
                return None
            reacted = item.get(names["#r"], {}).get("SS", [])
            if user not in reacted:
                return schema.message_from(item)  # nothing to remove
            values = {":user": user_set, ":u": schema.s(user), ":one": schema.n(1)}
            if len(reacted) == 1:  # the last one: the emoji goes too, on that condition
                update, alone = "DELETE #r :user, emojis :emoji", "size(#r) = :one"
                values[":emoji"] = {"SS": [emoji]}
            else:
                update, alone = "DELETE #r :user", "size(#r) > :one"
            removed = self._change(
                room,
                message_id,
                f"contains(#r, :u) AND {alone}",
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            if removed is not None:
                return removed
            pause(attempt)  # someone else reacted or un-reacted meanwhile: read again
        raise StoreUnavailable(f"DynamoDB react {room}/{message_id}: kept changing")

    def unread_count(self, room: str, *, after: str | None, limit: int) -> int:
        if limit <= 0:
            return 0
        values: dict[str, Any] = {":room": schema.s(room), ":now": schema.n(_now())}
        condition = "room = :room"
        if after is not None:
            condition += " AND id > :after"
            values[":after"] = schema.s(after)
        request: dict[str, Any] = {
            "TableName": self.tables.messages,
            "KeyConditionExpression": condition,
            "FilterExpression": "expiresAt > :now AND attribute_not_exists(deletedAt)",
            "ExpressionAttributeValues": values,
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        # Limit caps the items a page evaluates (before the filter): never read more than
        # ``limit`` past the mark, and read on only while the count is short of it.
        count = 0
        while count < limit:
            request["Limit"] = limit - count
            reply = self._call("query", f"Query {self.tables.messages} {room}", **request)
            count += int(reply.get("Count", 0))
            if "LastEvaluatedKey" not in reply:
                break
            request["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return min(count, limit)

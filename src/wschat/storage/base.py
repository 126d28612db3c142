"""Storage ports: what the chat needs from a store, whatever backs it (SQLite or DynamoDB).

One adapter class per backend implements all of it (``ChatStore``), record by record:

* connections: the seed's ``websocket-connections`` table, keyed by ``connectionId``, plus each
  connection's name, rooms and rate-limit bucket; connections by name (``ConnectionStore`` is
  the seed's part alone).
* memberships: one record per (room, connection), read by room with a Query.
* messages: by room, ids allocated in the same atomic step that stores them; edits, deletes
  (a tombstone, the text gone) and reactions change a message in one conditional write.
* rooms: each room's last message id and, once someone creates it, its owner, topic and
  whether it is private; public rooms are listed in name order.
* room users: per (room, user name) state: role, invitation, mute, read mark.

Exception tree::

    StoreError                 anything the store could not do
    └── StoreUnavailable       the backing service cannot be reached; retrying later may work

Adapters turn their driver's errors into these with ``raise ... from exc`` so callers never see
``botocore`` or ``sqlite3`` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

# API Gateway closes every connection after 2 hours; records live a little longer so a missed
# $disconnect (a crashed Lambda, a throttled invocation) is cleaned up by the table's TTL.
CONNECTION_TTL_SECONDS = 2 * 60 * 60 + 10 * 60
DEFAULT_MESSAGE_TTL_SECONDS = 30 * 24 * 60 * 60
LOBBY = "lobby"


@dataclass(frozen=True, slots=True)
class Connection:
    """One open WebSocket connection as the store keeps it."""

    connection_id: str
    connected_at: int  # epoch milliseconds, as API Gateway's requestContext.connectedAt
    expires_at: int  # epoch seconds: the TTL attribute
    name: str = ""
    rooms: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def opened(
        cls,
        connection_id: str,
        connected_at_ms: int,
        *,
        name: str = "",
        rooms: frozenset[str] = frozenset(),
    ) -> Connection:
        return cls(
            connection_id=connection_id,
            connected_at=connected_at_ms,
            expires_at=connected_at_ms // 1000 + CONNECTION_TTL_SECONDS,
            name=name,
            rooms=rooms,
        )


@dataclass(frozen=True, slots=True)
class Member:
    room: str
    connection_id: str
    name: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message before the store gives it an id."""

    room: str  # a room name, or a direct conversation's key (see ``direct_room``)
    sender: str
    text: str
    ts: int  # epoch milliseconds
    expires_at: int  # epoch seconds: the TTL attribute
    client_id: str | None = None
    to: str | None = None  # direct messages: the recipient's name

    def stored_as(self, message_id: str) -> StoredMessage:
        """This message as the store keeps it, under ``message_id``."""
        return StoredMessage(
            self.room, message_id, self.sender, self.text, self.ts, self.client_id, self.to
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored. A deleted one is a tombstone: ``deleted``, its text "" and no
    reactions (the store keeps neither)."""

    room: str
    id: str
    sender: str
    text: str
    ts: int
    client_id: str | None = None
    to: str | None = None
    edited_at: int | None = None  # epoch milliseconds of the last edit
    deleted: bool = False
    # emoji -> the users who reacted with it, sorted; emojis in sorted order, none without users
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[StoredMessage]  # oldest first
    more: bool  # older messages exist (newest page, before=...) or newer ones (after=...)


Role = Literal["owner", "moderator", "member"]
ROLES: tuple[Role, ...] = ("owner", "moderator", "member")


def parse_role(value: object) -> Role | None:
    """A stored role as a ``Role``; None for none (or for one this version does not know)."""
    return next((role for role in ROLES if role == value), None)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A created room's record (rooms that only have messages have none)."""

    room: str
    owner: str
    topic: str
    private: bool
    created_at: int  # epoch milliseconds


@dataclass(frozen=True, slots=True)
class RoomUser:
    """One user's state in one room, by user name (not connection): it outlives connections."""

    room: str
    user: str
    role: Role | None = None
    invited: bool = False
    muted_until: int | None = None  # epoch milliseconds
    last_read: str | None = None  # the id of the last message the user has read


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` tokens, refilled at ``rate_per_second``."""

    rate_per_second: float = 10.0
    burst: int = 20

    def level(self, tokens: float | None, tokens_at: int | None, now_ms: int) -> float:
        """The bucket's level at ``now_ms``: full when never used, else refilled at the rate."""
        if tokens is None or tokens_at is None:
            return float(self.burst)
        elapsed = max(0, now_ms - int(tokens_at)) / 1000
        return min(float(self.burst), float(tokens) + elapsed * self.rate_per_second)


@dataclass(frozen=True, slots=True)
class TableNames:
    """The five tables, named by environment variables (the seed's WEBSOCKET_TABLE first)."""

    connections: str = "websocket-connections"
    members: str = "chat-members"
    messages: str = "chat-messages"
    rooms: str = "chat-rooms"
    room_users: str = "chat-room-users"

    ENV: ClassVar[dict[str, str]] = {
        "connections": "WEBSOCKET_TABLE",
        "members": "MEMBERS_TABLE",
        "messages": "MESSAGES_TABLE",
        "rooms": "ROOMS_TABLE",
        "room_users": "ROOM_USERS_TABLE",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TableNames:
        defaults = cls()
        return cls(
            **{field: env.get(var, getattr(defaults, field)) for field, var in cls.ENV.items()}
        )


def direct_room(a: str, b: str) -> str:
    """The conversation key of two users' direct messages; room names cannot contain ':'."""
    first, second = sorted((a, b))
    return f"dm:{first}:{second}"


class StoreError(Exception):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The backing service cannot be reached or refused for capacity; retrying later may work."""


class ConnectionStore(Protocol):
    """The table of open connections (``websocket-connections``, keyed by ``connectionId``)."""

    def put_connection(self, connection: Connection) -> None:
        """Store (or overwrite) a connection record."""

    def delete_connection(self, connection_id: str) -> None:
        """Forget a connection record; forgetting an unknown one is not an error."""

    def get_connection(self, connection_id: str) -> Connection | None:
        """The record of one connection, or None."""

    def scan_connection_ids(self) -> Iterator[str]:
        """Every stored connection id, read page by page (the seed's paginated Scan)."""

    def close(self) -> None:
        """Release connections and files."""


class ChatStore(ConnectionStore, Protocol):
    """Everything the chat service needs: connections, memberships, messages, rooms and
    room users."""

    # --- connections ---

    def rename_connection(self, connection_id: str, name: str) -> Connection | None:
        """Set a connection's name, on its record and on its memberships; None if unknown."""

    def connection_ids_named(self, name: str) -> list[str]:
        """Every open connection using ``name`` (an index Query, not a Scan)."""

    def take_token(self, connection_id: str, now_ms: int, limit: RateLimit) -> bool:
        """Take one token from the connection's bucket; False when it is empty.

        Atomic across concurrent invocations (a conditional write), so two Lambdas handling
        the same connection cannot both spend the last token.
        """

    def admit(
        self, connection_id: str, now_ms: int, limit: RateLimit
    ) -> tuple[Connection | None, bool]:
        """``get_connection`` and ``take_token`` in one go, as every frame needs them: the
        record (None if unknown, and then nothing is taken) and whether a token was taken."""

    # --- memberships ---

    def join_room(self, room: str, connection_id: str, name: str, expires_at: int) -> bool:
        """Add a membership (and the room to the connection's rooms); False if already in."""

    def leave_room(self, room: str, connection_id: str) -> bool:
        """Remove a membership; False if the connection was not in the room."""

    def room_members(self, room: str, *, limit: int | None = None) -> list[Member]:
        """The room's memberships (a Query by room); at most ``limit`` of them when given (which
        ones is the store's choice), so a caller that only needs to know whether a room is
        bigger than N reads N + 1, not the whole room."""

    def room_member_ids(self, room: str, *, after: str | None = None, limit: int) -> list[str]:
        """A page of the room's connection ids, in connectionId order, those after ``after``
        (the last id of the page before) only: a Query projecting the key alone, so paging
        through a room of 100,000 for delivery reads ids, not names."""

    def remove_connection(
        self, connection_id: str, *, connected_before: int | None = None
    ) -> Connection | None:
        """Delete the connection's record and all its memberships; returns what was removed.

        With ``connected_before`` (epoch ms), a record that connected at or after it is kept
        and None returned: the check and the delete are one atomic step.
        """

    # --- messages ---

    def append_message(self, message: NewMessage) -> StoredMessage:
        """Store a message under an id greater than every id already in its room."""

    def message_history(
        self,
        room: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        """A page of the room's messages: just after ``after``, just before ``before``, or the
        newest; always oldest first. Deleted messages are in it as tombstones."""

    def get_message(self, room: str, message_id: str) -> StoredMessage | None:
        """One message (a tombstone if deleted); None if there is none or it has expired."""

    def edit_message(
        self, room: str, message_id: str, *, author: str, text: str, edited_at: int
    ) -> StoredMessage | None:
        """Replace the text of ``author``'s own message; the message after, or None (and nothing
        changed) when it is missing, expired, deleted or someone else's. One conditional
        write: an edit racing a delete either lands before it or not at all."""

    def delete_message(
        self, room: str, message_id: str, *, deleted_at: int, author: str | None
    ) -> StoredMessage | None:
        """Turn a message into a tombstone: its text and reactions are removed from the store.
        With ``author``, only that author's own message; with None, anyone's (a moderator's
        delete: the caller checks the permission). The tombstone, or None when the message is
        missing, expired, someone else's or already deleted (of two racing deletes one wins)."""

    def react(
        self, room: str, message_id: str, *, user: str, emoji: str, on: bool, max_emojis: int
    ) -> StoredMessage | None:
        """Add (``on``) or remove ``user``'s ``emoji`` reaction, at most one per user per emoji;
        the message after. None (nothing changed) when the message is missing, expired or
        deleted, or ``on`` would make it carry more than ``max_emojis`` distinct emojis.
        Removing a reaction that is not there changes nothing and returns the message."""

    def unread_count(self, room: str, *, after: str | None, limit: int) -> int:
        """How many messages the room holds after the id ``after`` (all of them with None), at
        most ``limit``: a count, reading no texts. Expired and deleted messages do not count;
        the user's own messages do (the store does not know whose mark it is)."""

    # --- rooms ---

    def create_room(
        self, room: str, *, owner: str, topic: str, private: bool, created_at: int
    ) -> bool:
        """Give the room an owner, topic and visibility; False (nothing changed) if it already
        has an owner. A room that has messages but was never created can be."""

    def get_room(self, room: str) -> RoomInfo | None:
        """The room's record; None while nobody has created it."""

    def set_topic(self, room: str, topic: str) -> bool:
        """Change a created room's topic; False if the room was never created."""

    def public_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Up to ``limit`` created public rooms, in room name order, those after ``after`` only
        (the last name of the page before). An index, never a Scan; on DynamoDB eventually
        consistent (a room created a moment ago may be missing for a moment)."""

    def room_member_count(self, room: str, *, limit: int | None = None) -> int:
        """How many memberships (connections) the room has, at most ``limit`` when given
        (counting stops there): a count, reading no names."""

    # --- room users ---

    def get_room_user(self, room: str, user: str) -> RoomUser | None:
        """The user's state in the room; None if nothing was ever set for them there."""

    def room_users(self, room: str, *, after: str | None = None, limit: int) -> list[RoomUser]:
        """A page of the room's user records in user name order, those after ``after`` only."""

    def set_role(self, room: str, user: str, role: Role | None) -> None:
        """Set (or with None clear) the user's role in the room; the last write wins."""

    def invite(self, room: str, user: str) -> bool:
        """Mark the user invited to the room; False if they already were."""

    def set_muted(self, room: str, user: str, until_ms: int | None) -> None:
        """Mute the user in the room until ``until_ms`` (epoch ms), or unmute with None."""

    def mark_read(self, room: str, user: str, up_to: str) -> str:
        """Move the user's read mark in the room forward to the message id ``up_to``, never
        back (one conditional write: of racing marks the greatest wins); the mark after."""

    def read_marks(self, user: str, rooms: Sequence[str]) -> dict[str, str]:
        """The user's read mark in each of ``rooms`` that has one (batched reads)."""


def members_within(store: ChatStore, room: str, limit: int) -> list[Member] | None:
    """The room's members when it has at most ``limit`` (presence events' size limit), else
    None (also for a limit of 0: presence events off). A count comes first, so a room over
    the limit costs a count, not ``limit`` + 1 members read and built."""
    if limit <= 0 or store.room_member_count(room, limit=limit + 1) > limit:
        return None
    members = store.room_members(room, limit=limit + 1)
    return None if len(members) > limit else members  # it grew meanwhile


def member_names(members: Sequence[Member]) -> list[str]:
    """The names present in a room, sorted, each once."""
    return sorted({member.name for member in members})

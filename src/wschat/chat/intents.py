"""Delivery intents: what a use case wants sent, as data, for the deliverer to run in order
(in the spirit of websockets' ``data_to_send``). A use case never posts itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wschat.storage.base import Member

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """One event to one connection (the caller, usually); never taken for a departure."""

    connection_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class ToRoom:
    """An event to every member of a room; ``ack`` goes to the caller first, in the same post.
    ``members``: the room's connection ids, when the use case has just read them. ``exclude``:
    connections that get the event another way (the subject of a moderation act)."""

    room: str
    event: Event
    ack: Reply | None = None
    members: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToConnections:
    """An event to these connections (a direct message's two users), ``ack`` first."""

    connection_ids: tuple[str, ...]
    event: Event
    ack: Reply | None = None


@dataclass(frozen=True, slots=True)
class Announce:
    """A presence change to a room: ``make_event(names)`` with the room's names, unless the room
    is over the presence limit or ``quiet_if(members)`` (a second tab of someone there).
    ``echo_to`` (the connection that changed) gets the event even when the room does not, or
    when it is no member any more."""

    room: str
    make_event: Callable[[list[str]], Event]
    quiet_if: Callable[[list[Member]], bool] | None = None
    echo_to: str | None = None


Intent = Reply | ToRoom | ToConnections | Announce

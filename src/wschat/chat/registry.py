"""One row per action: its command (the frame's parser), its use case, the function group
that serves it and what its use case asks of the store. Everything else derives from here:

- each action handler's allowed actions (``actions_of``), and ``$default``'s list of them;
- the local gateway's routes without a template (``routes``, the CLI's ``OWN_ROUTES``);
- the template's routes and each function's IAM (``store_needs``), checked by
  tests/unit/test_template.py against template.yaml;
- the store a use case may reach at run time (``ScopedStore``), so a row cannot lie.

A new action is a row here, its command and use case, and its route in template.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wschat import protocol
from wschat.chat import (
    deliverer,
    directory,
    edits,
    lifecycle,
    messages,
    moderation,
    reading,
    rooms,
    typing,
)
from wschat.chat.context import Context
from wschat.chat.intents import Intent

# What running any action asks of the store before its use case: the caller's record and a
# rate-limit token.
HANDLE_NEEDS = frozenset({"admit"})


@dataclass(frozen=True)
class Action:
    name: str
    command: type[protocol.CommandParser]
    run: Callable[[Context, Any], list[Intent]]
    function: str  # the function group: the handler module wschat.handlers.<function>
    store: frozenset[str]  # the store methods the use case calls
    fans_out: bool  # may post to others than the caller: delivery's needs come with it


def _row(
    command: type[Any],
    run: Callable[[Context, Any], list[Intent]],
    function: str,
    store: set[str],
    *,
    fans_out: bool,
) -> Action:
    return Action(command.ACTION, command, run, function, frozenset(store), fans_out)


ACTIONS: dict[str, Action] = {
    row.name: row
    for row in (
        _row(protocol.SendMessage, messages.send_message, "send_message",
             {"append_message", "get_room_user"}, fans_out=True),
        _row(protocol.Direct, messages.direct, "send_message",
             {"connection_ids_named", "append_message"}, fans_out=True),
        _row(protocol.Join, rooms.join, "rooms",
             {"join_room", "room_members", "message_history", "get_room", "get_room_user"},
             fans_out=True),
        _row(protocol.Leave, rooms.leave, "rooms", {"leave_room"}, fans_out=True),
        _row(protocol.SetName, rooms.set_name, "rooms", {"rename_connection"}, fans_out=True),
        _row(protocol.Who, rooms.who, "rooms", {"room_members"}, fans_out=False),
        _row(protocol.Hello, reading.hello, "rooms", {"read_marks", "unread_count"},
             fans_out=False),
        _row(protocol.History, messages.history, "history", {"message_history"}, fans_out=False),
        _row(typing.Typing, typing.typing, "send_message",
             {"room_members", "room_member_count", "connection_ids_named"}, fans_out=True),
        _row(edits.Edit, edits.edit, "send_message",
             {"get_message", "edit_message", "connection_ids_named", "get_room_user"},
             fans_out=True),
        _row(edits.Delete, edits.delete, "send_message",
             {"get_message", "delete_message", "get_room_user", "connection_ids_named"},
             fans_out=True),
        _row(edits.React, edits.react, "send_message",
             {"get_message", "react", "connection_ids_named", "get_room_user"}, fans_out=True),
        _row(reading.Read, reading.read, "rooms",
             {"mark_read", "connection_ids_named"}, fans_out=True),
        _row(directory.ListRooms, directory.list_rooms, "rooms",
             {"public_rooms", "room_member_count"}, fans_out=False),
        _row(directory.CreateRoom, directory.create_room, "rooms",
             {"create_room", "set_role", "join_room", "room_members", "message_history",
              "get_room", "get_room_user"}, fans_out=True),
        _row(directory.Invite, directory.invite, "rooms",
             {"get_room", "get_room_user", "invite", "connection_ids_named"}, fans_out=True),
        _row(moderation.SetRole, moderation.set_role, "rooms",
             {"get_room_user", "set_role", "connection_ids_named"}, fans_out=True),
        _row(moderation.Kick, moderation.kick, "rooms",
             {"get_room_user", "connection_ids_named", "leave_room"}, fans_out=True),
        _row(moderation.Mute, moderation.mute, "rooms",
             {"get_room_user", "set_muted", "connection_ids_named"}, fans_out=True),
    )
}  # fmt: skip
COMMANDS: dict[str, type[protocol.CommandParser]] = {
    name: row.command for name, row in ACTIONS.items()
}
NAMES = tuple(ACTIONS)

# The routes that are no action, their function groups, and what they ask of the store.
LIFECYCLE = {
    "$connect": ("connect", lifecycle.CONNECT_NEEDS | deliverer.STORE_NEEDS),
    "$disconnect": ("disconnect", lifecycle.FORGET_NEEDS | deliverer.STORE_NEEDS),
    "$default": ("default", frozenset()),  # no store: it names the actions there are
}
# The fan-out queue's function: delivery, nothing else.
QUEUE_FUNCTIONS = {"deliver": deliverer.STORE_NEEDS}


def actions_of(function: str) -> tuple[str, ...]:
    """The actions the function group ``function`` serves (its handler's allowed actions)."""
    return tuple(name for name, row in ACTIONS.items() if row.function == function)


def handler_of(function: str) -> str:
    return f"wschat.handlers.{function}.lambda_handler"


def routes() -> dict[str, str]:
    """Route key -> handler, for every route of the chat."""
    table = {name: handler_of(row.function) for name, row in ACTIONS.items()}
    table.update({key: handler_of(function) for key, (function, _) in LIFECYCLE.items()})
    return table


def store_needs(function: str) -> frozenset[str]:
    """What the function group ``function`` may ask of the store and the queue (``queue.*``):
    its rows' use cases, the prelude of every action, and delivery's needs where a row
    fans out. The template grants each function the IAM of exactly this."""
    for group, needs in LIFECYCLE.values():
        if group == function:
            return needs
    if function in QUEUE_FUNCTIONS:
        return QUEUE_FUNCTIONS[function]
    rows = [row for row in ACTIONS.values() if row.function == function]
    if not rows:
        raise KeyError(f"no function group {function!r}")
    wanted = set(HANDLE_NEEDS)
    for row in rows:
        wanted |= row.store
        if row.fans_out:
            wanted |= deliverer.STORE_NEEDS
    return frozenset(wanted)

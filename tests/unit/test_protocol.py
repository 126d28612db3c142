"""The chat wire protocol (docs/protocol.md): frames in, commands, validation and limits,
events out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from wschat import protocol
from wschat.chat import edits, registry
from wschat.chat.typing import typing_event
from wschat.protocol import (
    Direct,
    Hello,
    History,
    Join,
    Leave,
    ProtocolError,
    SendMessage,
    SetName,
    Who,
    parse_command,
    parse_frame,
)
from wschat.storage.base import StoredMessage

SEED_FRAME = '{"action":"sendMessage","message":"hi"}'
PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the first table under ``## heading`` in docs/protocol.md, cells unquoted."""
    section = PROTOCOL_DOC.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


def refusal(body: str, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_command(body, **kwargs)
    return caught.value


def test_error_codes_are_the_ones_the_doc_lists() -> None:
    documented = [row[0] for row in doc_table("Errors")]

    assert documented == [
        protocol.INVALID_JSON,
        protocol.UNKNOWN_ACTION,
        protocol.BAD_REQUEST,
        protocol.TOO_LONG,
        protocol.NOT_IN_ROOM,
        protocol.NO_SUCH_USER,
        protocol.RATE_LIMITED,
        protocol.UNAUTHORIZED,
        protocol.NO_SUCH_MESSAGE,
        protocol.FORBIDDEN,
        protocol.TOO_MANY_REACTIONS,
        "private_room",
        "muted",
        "room_exists",
        protocol.UNAVAILABLE,
    ]
    assert protocol.MAX_MESSAGE_CHARS == 4000


def test_actions_are_the_ones_the_doc_lists() -> None:
    documented = [row[0] for row in doc_table("Client → server")]

    assert sorted(documented) == sorted(registry.NAMES)


def test_protocol_version_is_1() -> None:
    assert protocol.PROTOCOL_VERSION == 1


# --- parse_frame ------------------------------------------------------------------------------


def test_seed_frame_parses_to_its_object() -> None:
    assert parse_frame(SEED_FRAME) == {"action": "sendMessage", "message": "hi"}


def test_frame_keeps_fields_it_does_not_know() -> None:
    assert parse_frame('{"action":"sendMessage","message":"hi","room":"lobby"}')["room"] == "lobby"


@pytest.mark.parametrize("body", [None, ""], ids=["none", "empty"])
def test_empty_frame_is_invalid_json_and_shows_an_example(body: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(body)

    assert caught.value.code == protocol.INVALID_JSON
    assert "sendMessage" in caught.value.message


@pytest.mark.parametrize(
    "body", ["hi", "{", '{"action": "sendMessage",}', "{'action': 'sendMessage'}", "\x00"]
)
def test_text_that_is_not_json_is_invalid_json(body: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(body)

    assert caught.value.code == protocol.INVALID_JSON


@pytest.mark.parametrize("body", ["[]", '["sendMessage"]', '"hi"', "42", "1.5", "null", "false"])
def test_json_that_is_not_an_object_is_invalid_json(body: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(body)

    assert caught.value.code == protocol.INVALID_JSON
    assert "object" in caught.value.message


def test_deeply_nested_json_is_invalid_json_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame("[" * 100_000 + "]" * 100_000)

    assert caught.value.code == protocol.INVALID_JSON


def test_object_nested_deeper_than_any_chat_frame_is_bad_request() -> None:
    body = '{"action":"sendMessage","message":"hi","x":' + "[" * 40 + "]" * 40 + "}"

    with pytest.raises(ProtocolError) as caught:
        parse_frame(body)

    assert caught.value.code == protocol.BAD_REQUEST


def test_frame_errors_name_no_action() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame("nope")

    assert caught.value.action is None
    assert "action" not in caught.value.to_event()


# --- action_of --------------------------------------------------------------------------------


def test_action_of_reads_the_action() -> None:
    assert protocol.action_of({"action": "sendMessage"}) == "sendMessage"


@pytest.mark.parametrize("payload", [{}, {"action": None}, {"action": 1}, {"action": ["x"]}])
def test_action_of_a_frame_without_a_string_action_is_none(payload: dict[str, Any]) -> None:
    assert protocol.action_of(payload) is None


# --- SendMessage ------------------------------------------------------------------------------


def test_send_message_keeps_the_text_as_sent() -> None:
    text = "  안녕, <b>world</b>\n"

    assert SendMessage.parse({"action": "sendMessage", "message": text}) == SendMessage(text)


def test_seed_frame_is_a_send_message_to_lobby() -> None:
    assert parse_command(SEED_FRAME) == SendMessage("hi", "lobby", None)


def test_send_message_takes_room_and_client_id() -> None:
    body = json.dumps(
        {"action": "sendMessage", "message": "hi", "room": "general", "clientId": "c-1"}
    )

    assert parse_command(body) == SendMessage("hi", "general", "c-1")


@pytest.mark.parametrize(
    "fields",
    [
        {"room": "General"},
        {"room": ""},
        {"room": 7},
        {"clientId": 7},
        {"clientId": "c" * (protocol.MAX_CLIENT_ID_CHARS + 1)},
    ],
    ids=["uppercase-room", "empty-room", "number-room", "number-client-id", "long-client-id"],
)
def test_send_message_with_a_bad_room_or_client_id_is_bad_request(fields: dict[str, Any]) -> None:
    error = refusal(json.dumps({"action": "sendMessage", "message": "hi", **fields}))

    assert (error.code, error.action) == (protocol.BAD_REQUEST, "sendMessage")


def test_missing_message_is_bad_request() -> None:
    with pytest.raises(ProtocolError) as caught:
        SendMessage.parse({"action": "sendMessage"})

    assert caught.value.code == protocol.BAD_REQUEST
    assert caught.value.action == "sendMessage"


@pytest.mark.parametrize("value", [None, 0, 1.5, True, [], ["hi"], {}, {"text": "hi"}])
def test_message_that_is_not_a_string_is_bad_request(value: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        SendMessage.parse({"action": "sendMessage", "message": value})

    assert caught.value.code == protocol.BAD_REQUEST


@pytest.mark.parametrize("text", ["", " ", "\t\n\r ", "\u3000\u00a0"], ids=repr)
def test_empty_or_whitespace_message_is_bad_request(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        SendMessage.parse({"action": "sendMessage", "message": text})

    assert caught.value.code == protocol.BAD_REQUEST


def test_message_of_exactly_the_limit_is_accepted() -> None:
    text = "x" * protocol.MAX_MESSAGE_CHARS

    assert SendMessage.parse({"message": text}).text == text


def test_message_one_over_the_limit_is_too_long() -> None:
    with pytest.raises(ProtocolError) as caught:
        SendMessage.parse({"message": "x" * (protocol.MAX_MESSAGE_CHARS + 1)})

    assert caught.value.code == protocol.TOO_LONG
    assert caught.value.action == "sendMessage"
    assert "4001" in caught.value.message and "4000" in caught.value.message


def test_limit_counts_characters_not_utf8_bytes() -> None:
    text = "한" * protocol.MAX_MESSAGE_CHARS  # 12,000 bytes in UTF-8

    assert SendMessage.parse({"message": text}).text == text


def test_limit_can_be_lowered() -> None:
    with pytest.raises(ProtocolError) as caught:
        SendMessage.parse({"message": "abcd"}, max_chars=3)

    assert caught.value.code == protocol.TOO_LONG


def test_limit_applies_to_direct_messages_too() -> None:
    error = refusal(json.dumps({"action": "direct", "to": "jun", "message": "abcd"}), max_chars=3)

    assert (error.code, error.action) == (protocol.TOO_LONG, "direct")


# --- parse_command: which action ------------------------------------------------------------


def test_unknown_action_is_named_and_the_known_ones_listed() -> None:
    error = refusal('{"action": "shout"}')

    assert (error.code, error.action) == (protocol.UNKNOWN_ACTION, "shout")
    for action in registry.NAMES:
        assert action in error.message


def test_unknown_action_is_named_at_most_64_chars() -> None:
    error = refusal(json.dumps({"action": "a" * 1000}))

    assert error.action == "a" * 64
    assert len(error.message) < 400


@pytest.mark.parametrize("body", ['{"message": "hi"}', '{"action": null}', '{"action": 1}'])
def test_frame_without_a_string_action_is_bad_request(body: str) -> None:
    error = refusal(body)

    assert error.code == protocol.BAD_REQUEST
    assert "action" in error.message


def test_action_names_are_case_sensitive() -> None:
    assert refusal('{"action": "SendMessage", "message": "hi"}').code == protocol.UNKNOWN_ACTION


# --- the other commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ({"action": "join", "room": "general"}, Join("general")),
        ({"action": "leave", "room": "general"}, Leave("general")),
        ({"action": "setName", "name": "Kim.Minji_2-b"}, SetName("Kim.Minji_2-b")),
        ({"action": "who"}, Who("lobby")),
        ({"action": "who", "room": "general"}, Who("general")),
        ({"action": "hello"}, Hello()),
        ({"action": "history", "room": "lobby"}, History("lobby")),
        (
            {"action": "history", "room": "lobby", "before": "01ABC", "limit": 5},
            History("lobby", before="01ABC", limit=5),
        ),
        (
            {"action": "history", "room": "lobby", "after": "01ABC", "limit": 100},
            History("lobby", after="01ABC", limit=100),
        ),
        ({"action": "history", "with": "jun"}, History(None, with_user="jun")),
        ({"action": "direct", "to": "jun", "message": "hi"}, Direct("jun", "hi")),
        (
            {"action": "direct", "to": "jun", "message": "hi", "clientId": "d-1"},
            Direct("jun", "hi", "d-1"),
        ),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else "",
)
def test_frame_parses_to_its_command(frame: dict[str, Any], command: protocol.Command) -> None:
    assert parse_command(json.dumps(frame)) == command


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "join"},
        {"action": "join", "room": "Lobby"},
        {"action": "join", "room": "dm:a:b"},
        {"action": "join", "room": "_x"},
        {"action": "join", "room": "a" * 33},
        {"action": "leave"},
        {"action": "setName"},
        {"action": "setName", "name": ""},
        {"action": "setName", "name": "two words"},
        {"action": "setName", "name": "x" * 33},
        {"action": "setName", "name": "Kim!"},
        {"action": "setName", "name": "민지"},
        {"action": "setName", "name": 7},
        {"action": "who", "room": "Lobby"},
        {"action": "history"},
        {"action": "history", "room": "lobby", "limit": 0},
        {"action": "history", "room": "lobby", "limit": 101},
        {"action": "history", "room": "lobby", "limit": -1},
        {"action": "history", "room": "lobby", "limit": "5"},
        {"action": "history", "room": "lobby", "limit": True},
        {"action": "history", "room": "lobby", "limit": 2.5},
        {"action": "history", "room": "lobby", "after": "A", "before": "B"},
        {"action": "history", "room": "lobby", "after": ""},
        {"action": "history", "room": "lobby", "before": "x" * 65},
        {"action": "history", "room": "lobby", "after": 5},
        {"action": "history", "with": "two words"},
        {"action": "direct", "message": "hi"},
        {"action": "direct", "to": "jun"},
        {"action": "direct", "to": "system", "message": "hi"},
        {"action": "direct", "to": "jun", "message": "   "},
    ],
    ids=lambda frame: json.dumps(frame)[:60],
)
def test_malformed_command_is_bad_request_naming_its_action(frame: dict[str, Any]) -> None:
    error = refusal(json.dumps(frame))

    assert (error.code, error.action) == (protocol.BAD_REQUEST, frame["action"])


@pytest.mark.parametrize("name", ["system", "server", "wschat", "System", "WSCHAT"])
def test_reserved_names_are_refused_in_any_case(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.check_name(name, "setName")

    assert caught.value.code == protocol.BAD_REQUEST
    assert "reserved" in caught.value.message


@pytest.mark.parametrize("name", ["a", "x" * 32, "guest-cq3v", "Kim.Minji_2", "...", "-"])
def test_names_of_1_to_32_allowed_characters_are_accepted(name: str) -> None:
    assert protocol.check_name(name, None) == name


@pytest.mark.parametrize("room", ["a", "0", "lobby", "r" * 32, "dev-ops_2"])
def test_rooms_of_1_to_32_allowed_characters_are_accepted(room: str) -> None:
    assert protocol.check_room(room, None) == room


# --- events out -------------------------------------------------------------------------------


def test_error_event_carries_type_code_message_and_action() -> None:
    error = ProtocolError(protocol.BAD_REQUEST, '"message" is required', "sendMessage")

    assert error.to_event() == {
        "type": "error",
        "code": "bad_request",
        "message": '"message" is required',
        "action": "sendMessage",
    }
    assert str(error) == '"message" is required'


MESSAGE_ID = "01JDJ8Z2Q0ABCDEFGHJKMNPQRS"
ROOM_MESSAGE = StoredMessage("lobby", MESSAGE_ID, "minji", "hi", 17)
DIRECT_MESSAGE = StoredMessage("dm:jun:minji", MESSAGE_ID, "minji", "psst", 18, "d-1", "jun")


def test_message_event_has_exactly_the_documented_fields() -> None:
    assert protocol.message_event(ROOM_MESSAGE) == {
        "type": "message",
        "id": MESSAGE_ID,
        "room": "lobby",
        "from": "minji",
        "text": "hi",
        "ts": 17,
    }


def test_message_event_echoes_the_client_id_when_given() -> None:
    message = StoredMessage("lobby", MESSAGE_ID, "minji", "hi", 17, client_id="c-1")

    assert protocol.message_event(message)["clientId"] == "c-1"


def test_direct_event_has_exactly_the_documented_fields() -> None:
    assert protocol.direct_event(DIRECT_MESSAGE) == {
        "type": "direct",
        "id": MESSAGE_ID,
        "from": "minji",
        "to": "jun",
        "text": "psst",
        "ts": 18,
        "clientId": "d-1",
    }


def test_ack_names_the_room_of_a_message_and_the_recipient_of_a_direct() -> None:
    assert protocol.ack_event(ROOM_MESSAGE) == {
        "type": "ack",
        "id": MESSAGE_ID,
        "ts": 17,
        "clientId": None,
        "room": "lobby",
    }
    assert protocol.ack_event(DIRECT_MESSAGE) == {
        "type": "ack",
        "id": MESSAGE_ID,
        "ts": 18,
        "clientId": "d-1",
        "to": "jun",
    }


def test_history_event_lists_room_messages_and_direct_messages_by_their_type() -> None:
    room_page = protocol.history_event([ROOM_MESSAGE], True, room="lobby", with_user=None)
    direct_page = protocol.history_event([DIRECT_MESSAGE], False, room=None, with_user="jun")

    assert room_page == {
        "type": "history",
        "room": "lobby",
        "messages": [protocol.message_event(ROOM_MESSAGE)],
        "more": True,
    }
    assert direct_page == {
        "type": "history",
        "with": "jun",
        "messages": [protocol.direct_event(DIRECT_MESSAGE)],
        "more": False,
    }


def test_history_event_echoes_after_or_before_when_asked() -> None:
    after = protocol.history_event([], False, room="lobby", with_user=None, after=MESSAGE_ID)
    before = protocol.history_event([], True, room=None, with_user="jun", before=MESSAGE_ID)

    assert (after["after"], "before" in after) == (MESSAGE_ID, False)
    assert (before["before"], "after" in before) == (MESSAGE_ID, False)


def test_presence_membership_renamed_and_hello_events() -> None:
    assert protocol.presence_event("lobby", ["jun", "minji"]) == {
        "type": "presence",
        "room": "lobby",
        "members": ["jun", "minji"],
    }
    assert protocol.membership_event("joined", "lobby", "minji", 5, ["minji"]) == {
        "type": "joined",
        "room": "lobby",
        "name": "minji",
        "ts": 5,
        "members": ["minji"],
    }
    assert protocol.renamed_event("lobby", "minji", "mj", 6, ["mj"]) == {
        "type": "renamed",
        "room": "lobby",
        "from": "minji",
        "to": "mj",
        "ts": 6,
        "members": ["mj"],
    }
    assert protocol.hello_event("Cq3vTfXwoE0CIeQ=", "minji", ["general", "lobby"]) == {
        "type": "hello",
        "connectionId": "Cq3vTfXwoE0CIeQ=",
        "name": "minji",
        "rooms": ["general", "lobby"],
        "protocol": 1,
    }


def test_every_event_type_the_doc_lists_is_built_here() -> None:
    documented = set()
    for row in doc_table("Server → client"):
        documented.update(re.findall(r"[A-Za-z]+", row[0]))
    built = {
        protocol.message_event(ROOM_MESSAGE)["type"],
        protocol.ack_event(ROOM_MESSAGE)["type"],
        protocol.history_event([], False, room="lobby", with_user=None)["type"],
        protocol.presence_event("lobby", [])["type"],
        protocol.membership_event("joined", "lobby", "a", 0, [])["type"],
        protocol.membership_event("left", "lobby", "a", 0, [])["type"],
        protocol.renamed_event("lobby", "a", "b", 0, [])["type"],
        protocol.direct_event(DIRECT_MESSAGE)["type"],
        protocol.hello_event("c", "a", [])["type"],
        typing_event("a", room="lobby", to=None)["type"],
        edits.edited_event(ROOM_MESSAGE)["type"],
        edits.deleted_event(ROOM_MESSAGE, by="a")["type"],
        edits.reaction_event(ROOM_MESSAGE, "+1", "a", True)["type"],
        ProtocolError(protocol.BAD_REQUEST, "x").to_event()["type"],
    }

    # And the events the use cases build where they send them (wschat/chat/*.py).
    chat = Path(edits.__file__).parent
    for module in chat.glob("*.py"):
        built.update(re.findall(r'"type": "(\w+)"', module.read_text(encoding="utf-8")))

    assert documented == built


def test_encode_is_compact_utf8_json() -> None:
    data = protocol.encode({"type": "message", "text": "안녕 👋"})

    assert data == '{"type":"message","text":"안녕 👋"}'.encode()
    assert json.loads(data) == {"type": "message", "text": "안녕 👋"}

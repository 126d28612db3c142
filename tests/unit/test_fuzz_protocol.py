"""The protocol parser under fuzzing: whatever a client sends, ``parse_command`` returns a checked
command or raises ProtocolError, never anything else, and the ``error`` event that error becomes
encodes as one UTF-8 JSON object with a documented code.

Inputs: text that is not JSON, JSON that is no object, every action with every field given a value
of every JSON type, huge and empty strings, deep nesting, odd Unicode (lone surrogates, RTL and
zero-width marks, combining characters, NUL), binary frames as API Gateway hands them over; and
valid frames, which must parse into exactly the command they spell.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.support.fuzz import (
    FIELDS,
    has_lone_surrogate,
    json_values,
    odd_characters,
    odd_text,
    valid_frames,
)

from wschat import protocol
from wschat.chat.registry import COMMANDS
from wschat.chat.registry import NAMES as ACTIONS
from wschat.events import WebSocketEvent
from wschat.protocol import (
    MAX_JSON_DEPTH,
    MAX_MESSAGE_CHARS,
    Command,
    ProtocolError,
    parse_command,
)

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For the tests whose cases are whole JSON documents: generating those costs most of the time.
FUZZ_DOCUMENTS = settings(FUZZ, max_examples=500)

# The codes docs/protocol.md lists; a parse can only ever produce the first four.
ERROR_CODES = {
    protocol.INVALID_JSON,
    protocol.UNKNOWN_ACTION,
    protocol.BAD_REQUEST,
    protocol.TOO_LONG,
    protocol.NOT_IN_ROOM,
    protocol.NO_SUCH_USER,
    protocol.RATE_LIMITED,
    protocol.UNAUTHORIZED,
    protocol.UNAVAILABLE,
}
PARSE_ERROR_CODES = {
    protocol.INVALID_JSON,
    protocol.UNKNOWN_ACTION,
    protocol.BAD_REQUEST,
    protocol.TOO_LONG,
}


def outcome(body: str | None) -> Command | dict[str, Any]:
    """The command a frame parses into, or the ``error`` event it is answered with.

    Fails the test for any exception but ProtocolError, and for an error event that would not
    reach the client intact (no UTF-8 form, undocumented code, extra keys).
    """
    try:
        command = parse_command(body)
    except ProtocolError as error:
        encoded = protocol.encode(error.to_event())  # raises for text with no UTF-8 form
        event: dict[str, Any] = json.loads(encoded.decode("utf-8"))
        assert event["type"] == "error"
        assert event["code"] in PARSE_ERROR_CODES
        assert isinstance(event["message"], str) and event["message"]
        assert set(event) <= {"type", "code", "message", "action"}
        assert "action" not in event or 0 < len(event["action"]) <= 64
        return event
    assert isinstance(command, tuple(COMMANDS.values()))
    return command


def error_code(body: str | None) -> str:
    result = outcome(body)
    assert isinstance(result, dict), f"{body!r} was accepted as {result!r}"
    return str(result["code"])


def dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


# --- anything at all -----------------------------------------------------------------------------


@FUZZ
@given(st.lists(odd_characters | st.characters(), max_size=200).map("".join))
@example("")
@example("   \n\t ")
@example("\x00")
@example("null")
@example('"sendMessage"')
@example("[]")
@example("{")
@example('{"action": "sendMessage", "message": "hi"')
@example("NaN")
@example("1e99999")
@example("9" * 5000)  # past Python's int-parsing digit limit
@example('{"action": "sendMessage", "message": "hi"}\n{"action": "join"}')
def test_any_text_parses_or_is_refused_with_one_error(text: str) -> None:
    outcome(text)


@FUZZ_DOCUMENTS
@given(json_values)
def test_json_that_is_not_an_object_is_invalid_json(value: Any) -> None:
    if isinstance(value, dict):
        return
    assert error_code(json.dumps(value)) == protocol.INVALID_JSON


@FUZZ_DOCUMENTS
@given(
    action=st.sampled_from(ACTIONS) | odd_text | json_values,
    fields=st.dictionaries(st.sampled_from(FIELDS) | odd_text, json_values, max_size=5),
    ascii_only=st.booleans(),
)
def test_every_action_with_any_fields_parses_or_is_refused(
    action: Any, fields: dict[str, Any], ascii_only: bool
) -> None:
    body = dumps({**fields, "action": action}, ascii_only)

    result = outcome(body)

    # What the server reads: an escaped surrogate pair (ascii_only) decodes to one character.
    sent = json.loads(body)
    action = sent["action"]
    if has_lone_surrogate(sent) or not isinstance(action, str):
        assert isinstance(result, dict) and result["code"] == protocol.BAD_REQUEST
    elif action not in ACTIONS:
        assert isinstance(result, dict) and result["code"] == protocol.UNKNOWN_ACTION
        assert result.get("action", "") == action[:64]  # shown, cut short
    elif isinstance(result, dict):
        assert result["action"] == action  # the error names the action it refused
    else:
        assert action == result.ACTION


# A valid frame of each action, and which of its fields may be left out.
VALID_FRAMES: dict[str, dict[str, Any]] = {
    "sendMessage": {"message": "hi", "room": "general", "clientId": "c-1"},
    "direct": {"to": "bob", "message": "hi", "clientId": "c-1"},
    "join": {"room": "general"},
    "leave": {"room": "general"},
    "who": {"room": "general"},
    "setName": {"name": "alice"},
    "history": {"room": "general", "after": "0000000001", "limit": 10},
    "typing": {"room": "general"},
    "edit": {"room": "general", "id": "01M8", "message": "fixed"},
    "delete": {"room": "general", "id": "01M8"},
    "react": {"room": "general", "id": "01M8", "emoji": "+1"},
    "read": {"room": "general", "upTo": "01M8"},
    "rooms": {"after": "general", "limit": 10},
    "createRoom": {"room": "design", "topic": "pixels"},
    "invite": {"room": "design", "user": "bob"},
    "setRole": {"room": "design", "user": "bob", "role": "moderator"},
    "kick": {"room": "design", "user": "bob"},
    "mute": {"room": "design", "user": "bob", "seconds": 60},
}
OPTIONAL_FIELDS = {
    "sendMessage": {"room", "clientId"},
    "direct": {"clientId"},
    "who": {"room"},
    "history": {"after"},
    "rooms": {"after", "limit"},
    "createRoom": {"topic"},
}
wrong_types = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)
)


@FUZZ
@given(data=st.data(), action=st.sampled_from(sorted(VALID_FRAMES)))
def test_a_field_of_the_wrong_type_is_bad_request_naming_the_action(
    data: st.DataObject, action: str
) -> None:
    field = data.draw(st.sampled_from(sorted(VALID_FRAMES[action])), label="field")
    if field in ("limit", "seconds"):
        # A whole number is the right type (out of range it is refused as well); text is not.
        wrong = data.draw(
            wrong_types.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))
            | st.text(max_size=3),
            label="wrong",
        )
    else:
        wrong = data.draw(wrong_types, label="wrong")
    frame = {"action": action, **VALID_FRAMES[action], field: wrong}

    result = outcome(json.dumps(frame))

    if wrong is None and field in OPTIONAL_FIELDS.get(action, set()):
        assert not isinstance(result, dict), result  # null is the same as leaving it out
    else:
        assert isinstance(result, dict), f"{frame} was accepted as {result}"
        assert (result["code"], result["action"]) == (protocol.BAD_REQUEST, action)


@pytest.mark.parametrize("action", sorted(VALID_FRAMES))
def test_the_valid_frames_the_wrong_type_test_starts_from_are_valid(action: str) -> None:
    assert not isinstance(outcome(json.dumps({"action": action, **VALID_FRAMES[action]})), dict)


# --- sizes, depth, Unicode -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(["sendMessage", "direct"]),
    length=st.integers(min_value=0, max_value=3 * MAX_MESSAGE_CHARS)
    | st.sampled_from([MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS + 1, 128 * 1024, 1_000_000]),
    filler=st.sampled_from([" ", "x", "\u200b", "\U0001f600", "e\u0301", "\x00", "안"]),
)
def test_huge_and_empty_texts_are_too_long_bad_request_or_accepted(
    action: str, length: int, filler: str
) -> None:
    text = (filler * length)[:length]
    result = outcome(json.dumps({"action": action, "message": text, "to": "bob"}))
    if not text.strip():
        assert isinstance(result, dict) and result["code"] == protocol.BAD_REQUEST
    elif len(text) > MAX_MESSAGE_CHARS:
        assert isinstance(result, dict) and result["code"] == protocol.TOO_LONG
    else:
        assert not isinstance(result, dict) and result.text == text


@settings(max_examples=300, deadline=None)
@given(
    depth=st.integers(min_value=1, max_value=3000),
    kind=st.sampled_from(["list", "object", "mixed"]),
    closed=st.booleans(),
)
@example(depth=MAX_JSON_DEPTH, kind="object", closed=True)
@example(depth=MAX_JSON_DEPTH + 1, kind="object", closed=True)
@example(depth=100_000, kind="list", closed=True)  # past the JSON decoder's recursion limit
def test_deep_nesting_is_refused_and_never_overflows_the_stack(
    depth: int, kind: str, closed: bool
) -> None:
    opening = {"list": "[", "object": '{"a":', "mixed": '[{"a":'}[kind]
    closing = {"list": "]", "object": "}", "mixed": "}]"}[kind]
    nested = opening * depth + "0" + (closing * depth if closed else "")
    body = '{"action":"sendMessage","message":"hi","extra":' + nested + "}"
    levels = depth * (2 if kind == "mixed" else 1) + 1  # the frame itself is one level
    result = outcome(body)
    if not closed:
        assert isinstance(result, dict) and result["code"] == protocol.INVALID_JSON
    elif levels + 1 > MAX_JSON_DEPTH:
        assert isinstance(result, dict)
        assert result["code"] in {protocol.BAD_REQUEST, protocol.INVALID_JSON}
    else:
        assert not isinstance(result, dict)


@FUZZ
@given(
    field=st.sampled_from(["message", "room", "clientId", "name", "to", "with", "after"]),
    text=odd_text,
)
@example(field="message", text="\ud800")
@example(field="clientId", text="\udfff")
@example(field="message", text="a\ud83d")  # the first half of 😀 alone
def test_odd_unicode_in_any_field_is_accepted_as_is_or_refused(field: str, text: str) -> None:
    action = {"name": "setName", "to": "direct", "with": "history", "after": "history"}.get(
        field, "sendMessage"
    )
    frame = {"action": action, "message": "hi", "to": "bob", "room": "lobby", field: text}
    if field == "after":
        frame.pop("room")
        frame["with"] = "bob"
    body = json.dumps(frame)  # surrogates travel as \\u escapes; a pair decodes to one character
    sent = json.loads(body)[field]

    result = outcome(body)

    if has_lone_surrogate(sent):
        assert isinstance(result, dict) and result["code"] == protocol.BAD_REQUEST
    if not isinstance(result, dict) and field in ("message", "clientId"):
        stored = result.text if field == "message" else result.client_id
        assert stored == sent  # what was accepted is kept exactly, never "cleaned"


# --- binary frames -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe\x00\x00")
@example(json.dumps({"action": "hello"}).encode("utf-16"))
@example(json.dumps({"action": "sendMessage", "message": "hi"}).encode())
def test_binary_frames_parse_as_their_utf8_text_or_are_refused(data: bytes) -> None:
    # API Gateway hands a binary frame to Lambda base64-encoded, with isBase64Encoded.
    event = WebSocketEvent(
        {"body": base64.b64encode(data).decode(), "isBase64Encoded": True, "requestContext": {}}
    )
    assert event.text == data.decode("utf-8", "replace")
    outcome(event.text)


@FUZZ
@given(st.text(alphabet=string.printable, max_size=100))
def test_a_base64_body_that_is_not_base64_is_refused(body: str) -> None:
    event = WebSocketEvent({"body": body + "!", "isBase64Encoded": True, "requestContext": {}})
    outcome(event.text)


# --- valid frames ------------------------------------------------------------------------------


@FUZZ_DOCUMENTS
@given(
    valid_frames(),
    st.booleans(),
    st.dictionaries(st.sampled_from(["x", "ts"]), json_values, max_size=2),
)
def test_valid_frames_parse_into_exactly_their_command(
    case: tuple[dict[str, Any], Command], ascii_only: bool, unknown: dict[str, Any]
) -> None:
    frame, expected = case
    # Unknown fields are ignored (clients may be newer than the server), unless they hold text
    # with no UTF-8 form.
    body = dumps({**unknown, **frame}, ascii_only)
    result = outcome(body)
    if has_lone_surrogate(json.loads(body)):
        assert isinstance(result, dict) and result["code"] == protocol.BAD_REQUEST
    else:
        assert result == expected


def test_the_fuzzer_knows_every_action() -> None:
    # valid_frames and VALID_FRAMES cover every action: a new one must be added to both.
    assert set(ACTIONS) == set(VALID_FRAMES) | {"hello"}

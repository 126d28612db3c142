"""The chat wire protocol: frames in, validation and limits, events out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wschat import protocol
from wschat.protocol import ProtocolError, SendMessage, parse_frame

SEED_FRAME = '{"action":"sendMessage","message":"hi"}'


def test_error_codes_are_the_wire_contract() -> None:
    assert (
        protocol.INVALID_JSON,
        protocol.UNKNOWN_ACTION,
        protocol.BAD_REQUEST,
        protocol.TOO_LONG,
        protocol.UNAVAILABLE,
    ) == ("invalid_json", "unknown_action", "bad_request", "too_long", "unavailable")
    assert protocol.MAX_MESSAGE_CHARS == 4000


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


def test_message_event_has_exactly_the_documented_fields() -> None:
    event = protocol.message_event("01JDJ8Z2Q0ABCDEFGHJKMNPQRS", "Cq3vTfXwoE0CIeQ=", "hi", 17)

    assert event == {
        "type": "message",
        "id": "01JDJ8Z2Q0ABCDEFGHJKMNPQRS",
        "from": "Cq3vTfXwoE0CIeQ=",
        "text": "hi",
        "ts": 17,
    }


def test_encode_is_compact_utf8_json() -> None:
    data = protocol.encode({"type": "message", "text": "안녕 👋"})

    assert data == '{"type":"message","text":"안녕 👋"}'.encode()
    assert json.loads(data) == {"type": "message", "text": "안녕 👋"}

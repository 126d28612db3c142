"""The framing between the gateway and its function workers: length-prefixed JSON messages that
come back whole however the pipe chunks them, and bytes carried inside JSON."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wschat.gateway import ipc

INVOKE = {
    "op": "invoke",
    "id": 1,
    "event": {"requestContext": {"routeKey": "sendMessage"}, "body": '{"message":"안녕"}'},
    "context": {"request_id": "8f0e6a2c-0000-4000-8000-000000000000", "deadline_ms": 1},
}
RESULT = {"op": "result", "id": 1, "ok": True, "value": {"statusCode": 200}}
POST_MANY = {"op": "post_many", "id": 7, "ids": ["a=", "b="], "data": "hi"}

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=6,
)
MESSAGES = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)


def test_message_is_a_big_endian_length_then_utf8_json() -> None:
    frame = ipc.encode(RESULT)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:].decode("utf-8")) == RESULT


def test_one_message_roundtrips() -> None:
    assert ipc.Decoder().feed(ipc.encode(INVOKE)) == [INVOKE]


def test_several_messages_in_one_chunk_come_out_in_order() -> None:
    stream = ipc.encode(INVOKE) + ipc.encode(POST_MANY) + ipc.encode(RESULT)
    assert ipc.Decoder().feed(stream) == [INVOKE, POST_MANY, RESULT]


def test_message_fed_byte_by_byte_comes_out_once_complete() -> None:
    decoder = ipc.Decoder()
    frame = ipc.encode(INVOKE)
    received: list[dict[str, Any]] = []
    for i in range(len(frame)):
        received += decoder.feed(frame[i : i + 1])
        assert received == ([] if i < len(frame) - 1 else [INVOKE])


def test_partial_message_is_kept_until_the_rest_arrives() -> None:
    decoder = ipc.Decoder()
    stream = ipc.encode(INVOKE) + ipc.encode(RESULT)
    cut = len(ipc.encode(INVOKE)) + 2  # inside the second message's length prefix
    assert decoder.feed(stream[:cut]) == [INVOKE]
    assert decoder.feed(b"") == []
    assert decoder.feed(stream[cut:]) == [RESULT]


def test_empty_object_roundtrips() -> None:
    assert ipc.Decoder().feed(ipc.encode({}) * 3) == [{}, {}, {}]


def test_large_message_roundtrips() -> None:
    message = {"op": "post_many", "id": 1, "ids": ["x="] * 1000, "data": "z" * 1_000_000}
    assert ipc.Decoder().feed(ipc.encode(message)) == [message]


def test_non_json_values_are_sent_as_their_string_form() -> None:
    # A handler's result may hold values JSON cannot carry; the frame must still be valid.
    frame = ipc.encode({"op": "result", "id": 1, "ok": True, "value": {"tags": frozenset()}})
    assert ipc.Decoder().feed(frame)[0]["value"] == {"tags": "frozenset()"}


def test_values_json_has_no_words_for_cross_as_null() -> None:
    # Infinity and NaN are not JSON; orjson writes them as null, as a JSON parser would read
    # any strict encoding of them.
    frame = ipc.encode({"value": [float("inf"), float("nan"), 1.5]})
    assert ipc.Decoder().feed(frame)[0]["value"] == [None, None, 1.5]


def test_what_orjson_refuses_crosses_through_the_standard_library() -> None:
    message = {"big": 2**70, "text": "lone \ud800 surrogate"}
    assert ipc.Decoder().feed(ipc.encode(message)) == [message]


@settings(max_examples=100, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=5), st.data())
def test_messages_survive_any_chunking(messages: list[dict[str, Any]], data: st.DataObject) -> None:
    stream = b"".join(ipc.encode(message) for message in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = ipc.Decoder()
    received: list[dict[str, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        received += decoder.feed(stream[start:end])
    assert received == messages


# --- bytes inside JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"hello", "안녕하세요".encode(), b"", b'{"type":"message"}'])
def test_utf8_bytes_travel_as_text(data: bytes) -> None:
    packed = ipc.pack_data(data)
    assert packed == {"data": data.decode("utf-8")}
    assert ipc.unpack_data(packed) == data


@pytest.mark.parametrize("data", [b"\xff\xfe", b"\x89PNG\r\n\x1a\n", "안".encode()[:2]])
def test_other_bytes_travel_as_base64(data: bytes) -> None:
    packed = ipc.pack_data(data)
    assert set(packed) == {"data_b64"}
    assert ipc.unpack_data(packed) == data


def test_message_without_data_unpacks_to_no_bytes() -> None:
    assert ipc.unpack_data({"op": "post_many", "id": 1}) == b""


@settings(max_examples=200, deadline=None)
@given(st.binary() | st.text().map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_survive_packing_and_framing(data: bytes) -> None:
    message = {"op": "post_many", "id": 1, "ids": ["a="], **ipc.pack_data(data)}
    (received,) = ipc.Decoder().feed(ipc.encode(message))
    assert ipc.unpack_data(received) == data

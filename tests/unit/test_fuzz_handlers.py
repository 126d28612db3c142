"""The Lambda handlers under fuzzing, on API Gateway-shaped events with the real SQLite store.

Each frame goes to the function the project's template routes it to (``$request.body.action``,
else ``$default``), as API Gateway would send it. Whatever the frame, the handler returns (it
never raises, which on AWS would be "Internal server error"), and:

* a frame the parser refuses gets exactly one ``error`` event, to its sender only, with the code
  the parser names, and a 400 whose body is that same event;
* a valid frame gets its replies and no ``error``, or (when the chat's state says no: a room not
  joined, a user nobody has) exactly one ``error``, still to the sender only.

``$connect`` with any query string answers 200, 400, 401 or 403 and posts nothing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.events import LambdaContext, websocket_event
from tests.support.fuzz import FIELDS, has_lone_surrogate, json_values, odd_text, valid_frames

from wschat import protocol
from wschat.chat import directory, registry
from wschat.chat import rooms as rooms_chat
from wschat.gateway import core
from wschat.gateway.template import load_api
from wschat.handlers import connect, disconnect, history, rooms, send_message
from wschat.storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.unit.conftest import RecordingSender

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SENDER = "Cq3vNd9ToE0CIiw="
BYSTANDER = "Cq3wB1a2oE0CJhA="
# Function-scoped fixtures are set up once per test, not per example: the connections persist
# and each example starts by forgetting what was posted.
HANDLER_FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Errors about the chat's state, not the frame: a message that is not there, someone else's.
STATE_ERRORS = {
    protocol.NOT_IN_ROOM,
    protocol.NO_SUCH_USER,
    protocol.NO_SUCH_MESSAGE,
    protocol.FORBIDDEN,
    protocol.TOO_MANY_REACTIONS,
    rooms_chat.PRIVATE_ROOM,
    rooms_chat.MUTED,
    directory.ROOM_EXISTS,
}


@cache
def _api() -> Any:
    return load_api(TEMPLATE)


def routed(body: str | bytes) -> tuple[str, Handler]:
    """The route key and handler API Gateway picks for a frame (the template's routes)."""
    route = core.select_route(_api(), body)
    assert route is not None  # the template has a $default route
    module, _, function = route.function.handler.rpartition(".")
    return route.route_key, getattr(importlib.import_module(module), function)


def parse_error(body: str | None) -> str | None:
    """The error code the parser answers ``body`` with; None when it parses."""
    try:
        protocol.parse_command(body)
    except protocol.ProtocolError as error:
        return error.code
    return None


@pytest.fixture
def chat(
    store_path: Path,
    sender: RecordingSender,
    context: LambdaContext,
    configure: Callable[..., None],
) -> RecordingSender:
    """Two connections through $connect, minji (the fuzzer) and jun, with a rate limit high
    enough for every example."""
    configure(WSCHAT_RATE_BURST="1000000", WSCHAT_RATE_PER_SECOND="1000000")
    for connection_id, name in ((SENDER, "minji"), (BYSTANDER, "jun")):
        event = websocket_event("$connect", connection_id=connection_id, query={"name": name})
        assert connect.lambda_handler(event, context) == {"statusCode": 200}
    sender.clear()
    return sender


def run(
    sender: RecordingSender,
    context: LambdaContext,
    body: str | bytes,
    handler: Handler | None = None,
    route_key: str | None = None,
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Hand one frame from the fuzzer to a handler: its response, and every post it made."""
    sender.clear()
    if handler is None:
        route_key, handler = routed(body)
    event = websocket_event(route_key or "$default", body, connection_id=SENDER)
    response = handler(event, context)  # any exception fails the test
    assert isinstance(response, dict) and response["statusCode"] in (200, 400), response
    return response, [(cid, json.loads(data)) for cid, data in sender.posts]


def assert_one_error(
    response: dict[str, Any], posts: list[tuple[str, dict[str, Any]]], code: str | None = None
) -> dict[str, Any]:
    assert response["statusCode"] == 400
    assert len(posts) == 1, posts
    [(recipient, event)] = posts
    assert recipient == SENDER
    assert event["type"] == "error"
    assert code is None or event["code"] == code, (event, code)
    assert json.loads(response["body"]) == event
    return event


def assert_answered(
    body: str | bytes, response: dict[str, Any], posts: list[tuple[str, dict[str, Any]]]
) -> None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    code = parse_error(text)
    if code is not None:
        assert_one_error(response, posts, code)
    elif response["statusCode"] == 400:
        assert assert_one_error(response, posts)["code"] in STATE_ERRORS
    else:
        assert [event for _, event in posts if event["type"] == "error"] == []
        if json.loads(text).get("action") != "typing":  # typing answers nobody: docs/protocol.md
            assert any(recipient == SENDER for recipient, _ in posts), "the sender got no answer"


# --- frames the parser refuses, and frames it accepts -------------------------------------------


@HANDLER_FUZZ
@given(
    frame=st.dictionaries(st.sampled_from(FIELDS) | odd_text, json_values, max_size=5),
    action=st.sampled_from(registry.NAMES) | odd_text | json_values,
    ascii_only=st.booleans(),
)
def test_any_frame_is_answered_with_replies_or_exactly_one_error_to_its_sender(
    chat: RecordingSender,
    context: LambdaContext,
    frame: dict[str, Any],
    action: Any,
    ascii_only: bool,
) -> None:
    body = json.dumps({**frame, "action": action}, ensure_ascii=ascii_only)
    response, posts = run(chat, context, body)
    assert_answered(body, response, posts)


@HANDLER_FUZZ
@given(
    text=st.lists(
        st.sampled_from('{}[]":, \\0x\x00\u202e\ud800') | st.characters(), max_size=60
    ).map("".join)
)
def test_text_that_is_no_json_object_is_answered_with_one_error(
    chat: RecordingSender, context: LambdaContext, text: str
) -> None:
    response, posts = run(chat, context, text)
    assert_answered(text, response, posts)


@HANDLER_FUZZ
@given(data=st.binary(max_size=200))
def test_binary_frames_are_answered_like_their_text(
    chat: RecordingSender, context: LambdaContext, data: bytes
) -> None:
    response, posts = run(chat, context, data)
    assert_answered(data, response, posts)


@HANDLER_FUZZ
@given(case=valid_frames())
def test_valid_frames_get_their_replies_and_no_error(
    chat: RecordingSender, context: LambdaContext, case: tuple[dict[str, Any], Any]
) -> None:
    frame, _ = case
    body = json.dumps(frame)
    response, posts = run(chat, context, body)
    assert_answered(body, response, posts)
    # typing answers nobody: it goes to the others only.
    if response["statusCode"] == 200 and frame["action"] != "typing":
        assert {event["type"] for cid, event in posts if cid == SENDER} & {
            "ack",
            "message",
            "direct",
            "hello",
            "presence",
            "history",
            "joined",
            "left",
            "renamed",
            "edited",
            "deleted",
            "reaction",
            "read",
            "rooms",
            "roomCreated",
            "invited",
            "roleChanged",
            "kicked",
            "muted",
        }


MISROUTED: list[tuple[str, Handler]] = [
    ("sendMessage", rooms.lambda_handler),
    ("join", send_message.lambda_handler),
    ("history", rooms.lambda_handler),
    ("hello", history.lambda_handler),
]


@settings(HANDLER_FUZZ, max_examples=100)
@given(case=valid_frames(), misrouted=st.sampled_from(MISROUTED))
def test_a_frame_handed_to_a_function_not_serving_its_action_gets_one_error(
    chat: RecordingSender,
    context: LambdaContext,
    case: tuple[dict[str, Any], Any],
    misrouted: tuple[str, Handler],
) -> None:
    frame, _ = case
    route_key, handler = misrouted
    if routed(json.dumps(frame))[1] is handler:
        return  # this function does serve it
    response, posts = run(chat, context, json.dumps(frame), handler, route_key)
    assert_one_error(response, posts, protocol.UNKNOWN_ACTION)


# --- $connect and $disconnect ------------------------------------------------------------------

# A query string reaches $connect decoded from UTF-8 (API Gateway's, and the local gateway's
# parse_qsl with errors="replace"): odd text, but never half a surrogate pair.
query_text = odd_text.filter(lambda text: not has_lone_surrogate(text))
query_values = query_text | st.sampled_from(
    ["alice", "general,random", ",,,", "a" * 5000, "", "e30.e30.", "a.b.c"]
)


AUTH_SECRET = "fuzzing-secret-for-hs256-at-least-32-bytes"


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
@settings(HANDLER_FUZZ, max_examples=250)
@given(
    query=st.dictionaries(
        st.sampled_from(["name", "room", "token", "action"]) | query_text, query_values, max_size=4
    ),
    serial=st.integers(min_value=0, max_value=10**9),
)
def test_connect_with_any_query_answers_a_status_and_posts_nothing_to_the_newcomer(
    chat: RecordingSender,
    context: LambdaContext,
    store: SqliteStore,
    configure: Callable[..., None],
    auth: bool,
    query: dict[str, str],
    serial: int,
) -> None:
    if auth:
        configure(WSCHAT_AUTH_SECRET=AUTH_SECRET)
    connection_id = f"F{serial:014d}="
    chat.clear()
    event = websocket_event("$connect", connection_id=connection_id, query=query)

    response = connect.lambda_handler(event, context)

    allowed = {200, 400, 401, 403} if auth else {200, 400}
    assert response["statusCode"] in allowed, response
    assert connection_id not in chat.recipients()
    record = store.get_connection(connection_id)
    if response["statusCode"] != 200:
        assert record is None  # a refused handshake leaves nothing behind
        return
    assert record is not None
    assert protocol.NAME_PATTERN.fullmatch(record.name)
    assert record.name.lower() not in protocol.RESERVED_NAMES
    assert all(protocol.ROOM_PATTERN.fullmatch(room) for room in record.rooms)
    disconnect.lambda_handler(websocket_event("$disconnect", connection_id=connection_id), context)
    assert store.get_connection(connection_id) is None

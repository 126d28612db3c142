"""The Lambda handlers end to end in one process: API Gateway-shaped events in, the real SQLite
store and a recording Sender behind them, replies, JSON log lines and EMF metrics out.

What the chat does in detail is pinned in ``test_service.py``; here, what each function adds:
which actions it serves, the status it answers, the one ``error`` a rejected frame gets, logs
and metrics, and what happens when the store is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.support.events import LambdaContext, load_event, websocket_event

from wschat import protocol
from wschat.auth import issue_token
from wschat.chat import registry
from wschat.handlers import (
    _runtime,
    authorize,
    connect,
    default,
    disconnect,
    history,
    rooms,
    send_message,
)
from wschat.storage import CONNECTION_TTL_SECONDS, StoreError, StoreUnavailable
from wschat.storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.unit.conftest import RecordingSender

pytestmark = pytest.mark.usefixtures("store_path", "sender")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Lines = Callable[[], list[dict[str, Any]]]
Configure = Callable[..., None]

SENDER_ID = load_event("send_message")["requestContext"]["connectionId"]
BYSTANDER_ID = "Cq3wB1a2oE0CJhA="
THIRD_ID = "Cq3wC3d4oE0CKiB="
CONNECTED_AT = 1732498512345
NAMES = {SENDER_ID: "minji", BYSTANDER_ID: "jun", THIRD_ID: "sora"}
SECRET = "test-secret-for-hs256-at-least-32-bytes!"

HANDLERS: dict[str, Handler] = {
    "sendMessage": send_message.lambda_handler,
    "direct": send_message.lambda_handler,
    "join": rooms.lambda_handler,
    "leave": rooms.lambda_handler,
    "setName": rooms.lambda_handler,
    "who": rooms.lambda_handler,
    "hello": rooms.lambda_handler,
    "history": history.lambda_handler,
}


def open_connection(connection_id: str, context: LambdaContext, **query: str) -> dict[str, Any]:
    return connect.lambda_handler(
        websocket_event("$connect", connection_id=connection_id, query=query), context
    )


@pytest.fixture
def connected(store_path: Path, sender: RecordingSender, context: LambdaContext) -> list[str]:
    """Three open connections in ``lobby``, made through the $connect handler: the sender
    (minji) and two others (jun, sora). What connecting sent is forgotten."""
    for connection_id, name in NAMES.items():
        assert open_connection(connection_id, context, name=name) == {"statusCode": 200}
    sender.clear()
    return list(NAMES)


def stored_ids(store: SqliteStore) -> set[str]:
    return set(store.scan_connection_ids())


def frame(
    action: str, context: LambdaContext, connection_id: str = SENDER_ID, **fields: Any
) -> dict[str, Any]:
    """A frame to the function API Gateway routes ``action`` to."""
    event = websocket_event(action, {"action": action, **fields}, connection_id=connection_id)
    return HANDLERS[action](event, context)


def send(body: Any, context: LambdaContext, **event_args: Any) -> dict[str, Any]:
    return send_message.lambda_handler(
        websocket_event("sendMessage", body, connection_id=SENDER_ID, **event_args), context
    )


def assert_rejected(response: dict[str, Any], sender: RecordingSender, code: str) -> dict[str, Any]:
    """One ``error`` event with ``code``, to the sender only, and the same error as a 400."""
    assert response["statusCode"] == 400
    assert sender.recipients() == {SENDER_ID}
    [reply] = sender.received(SENDER_ID)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert isinstance(reply["message"], str) and reply["message"]
    assert json.loads(response["body"]) == reply
    return reply


# --- $connect ---------------------------------------------------------------------------------


def test_connect_stores_connection_with_connected_at_from_event(
    store: SqliteStore, context: LambdaContext
) -> None:
    event = load_event("connect")
    connected_at = event["requestContext"]["connectedAt"]

    response = connect.lambda_handler(event, context)

    assert response == {"statusCode": 200}
    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert (record.connection_id, record.connected_at, record.expires_at) == (
        SENDER_ID,
        connected_at,
        connected_at // 1000 + CONNECTION_TTL_SECONDS,
    )


def test_connection_ttl_outlives_api_gateways_two_hour_limit(
    store: SqliteStore, context: LambdaContext
) -> None:
    connect.lambda_handler(websocket_event("$connect", connected_at=CONNECTED_AT), context)

    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert record.expires_at - CONNECTED_AT // 1000 == CONNECTION_TTL_SECONDS
    assert CONNECTION_TTL_SECONDS > 2 * 60 * 60


def test_connect_takes_the_name_from_the_query_and_joins_lobby(
    store: SqliteStore, context: LambdaContext
) -> None:
    assert load_event("connect")["queryStringParameters"] == {"name": "minji"}

    connect.lambda_handler(load_event("connect"), context)

    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert (record.name, record.rooms) == ("minji", frozenset({"lobby"}))


def test_connect_without_a_name_gets_a_guest_name_from_its_connection_id(
    store: SqliteStore, context: LambdaContext
) -> None:
    open_connection(SENDER_ID, context)

    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert record.name == "guest-cq3v"


def test_connect_with_rooms_joins_lobby_and_each_of_them(
    store: SqliteStore, context: LambdaContext
) -> None:
    open_connection(SENDER_ID, context, name="alice", room="general,random")

    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert record.rooms == {"lobby", "general", "random"}
    assert [m.name for m in store.room_members("random")] == ["alice"]


def test_first_connection_is_sent_nothing(sender: RecordingSender, context: LambdaContext) -> None:
    connect.lambda_handler(load_event("connect"), context)

    assert sender.posts == []


def test_connect_announces_joined_to_the_others_in_its_rooms_not_to_itself(
    sender: RecordingSender, context: LambdaContext
) -> None:
    open_connection(BYSTANDER_ID, context, name="jun", room="general")
    open_connection(THIRD_ID, context, name="sora")
    sender.clear()

    open_connection(SENDER_ID, context, name="minji", room="general")

    # API Gateway answers 410 to posts before $connect returns, so the newcomer gets nothing.
    assert SENDER_ID not in sender.recipients()
    assert [
        (e["type"], e["room"], e["name"], e["members"]) for e in sender.received(BYSTANDER_ID)
    ] == [
        ("joined", "lobby", "minji", ["jun", "minji", "sora"]),
        ("joined", "general", "minji", ["jun", "minji"]),
    ]
    assert [e["room"] for e in sender.received(THIRD_ID)] == ["lobby"], "sora is not in general"


@pytest.mark.parametrize(
    "query",
    [
        {"name": "two words"},
        {"name": "x" * 33},
        {"name": "system"},
        {"name": "WSCHAT"},
        {"name": "minji", "room": "General"},
        {"name": "minji", "room": "ok,-bad"},
        {"name": "minji", "room": "a" * 33},
    ],
    ids=["space", "33-chars", "reserved", "any-case", "uppercase-room", "room-dash", "long-room"],
)
def test_connect_with_an_invalid_name_or_room_is_refused_with_400_and_stores_nothing(
    query: dict[str, str], store: SqliteStore, sender: RecordingSender, context: LambdaContext
) -> None:
    open_connection(BYSTANDER_ID, context, name="jun")
    sender.clear()

    response = open_connection(SENDER_ID, context, **query)

    assert response["statusCode"] == 400
    assert response["body"]
    assert stored_ids(store) == {BYSTANDER_ID}
    assert [m.connection_id for m in store.room_members("lobby")] == [BYSTANDER_ID]
    assert sender.posts == [], "a refused connection is announced to nobody"


# --- $connect with sign-in on: the authorizer, then $connect with its context -------------------


@pytest.fixture
def auth_on(configure: Configure) -> None:
    configure(WSCHAT_AUTH_SECRET=SECRET)


def authorized_connect(connection_id: str, context: LambdaContext, **query: str) -> dict[str, Any]:
    """What API Gateway does with a handshake: the authorizer first (an identity source
    missing: 401 without it), then, when its policy allows, ``$connect`` with its answer in
    requestContext.authorizer. The handshake's status."""
    if not query.get("token"):
        return {"statusCode": 401}
    arn = "arn:aws:execute-api:ap-northeast-2:123456789012:abcdef1234/prod/$connect"
    request = {
        "type": "REQUEST",
        "methodArn": arn,
        "queryStringParameters": query,
        "requestContext": {"connectionId": connection_id, "routeKey": "$connect"},
    }
    answer = authorize.lambda_handler(request, context)
    [statement] = answer["policyDocument"]["Statement"]
    if statement["Effect"] != "Allow":
        return {"statusCode": 403}
    event = websocket_event("$connect", connection_id=connection_id, query=query)
    event["requestContext"]["authorizer"] = {
        "principalId": answer["principalId"],
        **answer["context"],
    }
    return connect.lambda_handler(event, context)


@pytest.mark.usefixtures("auth_on")
def test_with_sign_in_on_a_connect_no_authorizer_named_is_refused_with_401(
    store: SqliteStore, context: LambdaContext
) -> None:
    response = open_connection(SENDER_ID, context, name="minji", token=issue_token("minji", SECRET))

    assert response["statusCode"] == 401
    assert "authorizer" in response["body"]
    assert stored_ids(store) == set()


@pytest.mark.usefixtures("auth_on")
@pytest.mark.parametrize(
    "token",
    [
        issue_token("minji", "another-secret-of-at-least-32-bytes!!"),
        issue_token("minji", SECRET, ttl_seconds=-60),
        "not.a.jwt",
    ],
    ids=["forged", "expired", "malformed"],
)
def test_with_sign_in_on_a_forged_expired_or_malformed_token_is_refused_with_403(
    token: str, store: SqliteStore, context: LambdaContext
) -> None:
    response = authorized_connect(SENDER_ID, context, token=token)

    assert response["statusCode"] == 403
    assert stored_ids(store) == set()


@pytest.mark.usefixtures("auth_on")
def test_with_sign_in_on_the_name_comes_from_the_tokens_sub(
    store: SqliteStore, context: LambdaContext
) -> None:
    response = authorized_connect(
        SENDER_ID, context, token=issue_token("minji", SECRET), name="jun"
    )

    assert response == {"statusCode": 200}
    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert record.name == "minji", "?name= cannot override the token"


@pytest.mark.usefixtures("auth_on")
def test_with_sign_in_on_set_name_replies_unauthorized(
    store: SqliteStore, sender: RecordingSender, context: LambdaContext
) -> None:
    authorized_connect(SENDER_ID, context, token=issue_token("minji", SECRET))
    sender.clear()

    response = frame("setName", context, name="jun")

    reply = assert_rejected(response, sender, protocol.UNAUTHORIZED)
    assert reply["action"] == "setName"
    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert record.name == "minji"


def test_connect_logs_json_line_with_connection_and_request_id(
    context: LambdaContext, log_lines: Lines
) -> None:
    event = load_event("connect")

    connect.lambda_handler(event, context)

    [line] = [line for line in log_lines() if line["message"] == "connected"]
    assert line["level"] == "INFO"
    assert line["connection_id"] == SENDER_ID
    assert line["request_id"] == event["requestContext"]["requestId"]
    assert line["function_request_id"] == context.aws_request_id
    assert line["user_name"] == "minji"


# --- $disconnect ------------------------------------------------------------------------------


def test_disconnect_deletes_the_connection_and_its_memberships(
    connected: list[str], store: SqliteStore, context: LambdaContext
) -> None:
    response = disconnect.lambda_handler(load_event("disconnect"), context)

    assert response == {"statusCode": 200}
    assert store.get_connection(SENDER_ID) is None
    assert stored_ids(store) == {BYSTANDER_ID, THIRD_ID}
    assert {m.connection_id for m in store.room_members("lobby")} == {BYSTANDER_ID, THIRD_ID}


def test_disconnect_tells_the_rooms_it_left(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    disconnect.lambda_handler(load_event("disconnect"), context)

    assert sender.recipients() == {BYSTANDER_ID, THIRD_ID}
    [left] = sender.received(BYSTANDER_ID)
    assert left["type"] == "left"
    assert (left["room"], left["name"], left["members"]) == ("lobby", "minji", ["jun", "sora"])


def test_disconnect_of_unknown_connection_succeeds(
    store: SqliteStore, context: LambdaContext
) -> None:
    response = disconnect.lambda_handler(load_event("disconnect"), context)

    assert response == {"statusCode": 200}
    assert stored_ids(store) == set()


def test_disconnect_logs_close_code_and_reason(
    connected: list[str], context: LambdaContext, log_lines: Lines
) -> None:
    event = load_event("disconnect")
    log_lines()

    disconnect.lambda_handler(event, context)

    [line] = log_lines()
    assert line["message"] == "disconnected"
    assert line["connection_id"] == SENDER_ID
    assert line["request_id"] == event["requestContext"]["requestId"]
    assert line["status_code"] == event["requestContext"]["disconnectStatusCode"]
    assert line["reason"] == event["requestContext"]["disconnectReason"]


# --- sendMessage ------------------------------------------------------------------------------


def test_seed_frame_is_a_message_to_lobby_for_every_connection(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    event = load_event("send_message")
    assert json.loads(event["body"]) == {"action": "sendMessage", "message": "hi"}
    before = int(time.time() * 1000)

    response = send_message.lambda_handler(event, context)

    after = int(time.time() * 1000)
    assert response == {"statusCode": 200}
    assert sender.recipients("message") == set(connected)
    messages = {data for _, data in sender.posts if json.loads(data)["type"] == "message"}
    assert len(messages) == 1, "every recipient gets the same bytes"
    [message] = sender.received(BYSTANDER_ID)
    assert set(message) == {"type", "id", "room", "from", "text", "ts"}
    assert (message["type"], message["room"], message["from"], message["text"]) == (
        "message",
        "lobby",
        "minji",
        "hi",
    )
    assert before <= message["ts"] <= after
    assert len(message["id"]) == 26
    assert [m.id for m in store.message_history("lobby").messages] == [message["id"]]


def test_sender_gets_an_ack_then_its_own_message(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    send({"action": "sendMessage", "message": "echo?", "clientId": "c-1"}, context)

    ack, message = sender.received(SENDER_ID)
    assert ack == {
        "type": "ack",
        "id": message["id"],
        "clientId": "c-1",
        "ts": message["ts"],
        "room": "lobby",
    }
    assert (message["type"], message["text"], message["clientId"]) == ("message", "echo?", "c-1")
    assert sender.received(BYSTANDER_ID, "ack") == [], "only the sender is acknowledged"


def test_message_text_arrives_verbatim_in_utf8(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    text = '안녕하세요 👋 "quoted" \\ <b>not html</b>\n  indented'

    send({"action": "sendMessage", "message": text}, context)

    [(_, data)] = [post for post in sender.posts if post[0] == THIRD_ID]
    assert "안녕하세요".encode() in data, "sent as UTF-8, not \\u escapes"
    assert json.loads(data)["text"] == text


def test_message_of_exactly_4000_chars_is_delivered(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    text = "가" * protocol.MAX_MESSAGE_CHARS

    response = send({"action": "sendMessage", "message": text}, context)

    assert response == {"statusCode": 200}
    assert [m["text"] for m in sender.received(BYSTANDER_ID)] == [text]


def test_each_message_gets_a_new_increasing_id(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    for n in range(5):
        send({"action": "sendMessage", "message": f"#{n}"}, context)

    received = sender.received(BYSTANDER_ID)
    assert [m["text"] for m in received] == [f"#{n}" for n in range(5)]
    message_ids = [m["id"] for m in received]
    assert message_ids == sorted(message_ids)
    assert len(set(message_ids)) == 5


def test_message_to_a_room_reaches_its_members_only(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    frame("join", context, room="general")
    frame("join", context, BYSTANDER_ID, room="general")
    sender.clear()

    response = frame("sendMessage", context, message="psst", room="general")

    assert response == {"statusCode": 200}
    assert sender.recipients("message") == {SENDER_ID, BYSTANDER_ID}
    assert THIRD_ID not in sender.recipients()


def test_message_to_a_room_not_joined_replies_not_in_room(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    frame("join", context, BYSTANDER_ID, room="general")
    sender.clear()

    response = frame("sendMessage", context, message="hi", room="general")

    reply = assert_rejected(response, sender, protocol.NOT_IN_ROOM)
    assert "general" in reply["message"]
    assert store.message_history("general").messages == []


def test_gone_recipient_is_deleted_its_rooms_told_and_others_still_receive(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    sender.gone = {BYSTANDER_ID}

    response = send({"action": "sendMessage", "message": "still here?"}, context)

    assert response == {"statusCode": 200}
    assert sender.recipients("message") == {SENDER_ID, THIRD_ID}
    assert stored_ids(store) == {SENDER_ID, THIRD_ID}
    [left] = sender.received(THIRD_ID, "left")
    assert (left["name"], left["members"]) == ("jun", ["minji", "sora"])


def test_failing_recipient_is_logged_and_others_still_receive(
    connected: list[str],
    sender: RecordingSender,
    store: SqliteStore,
    context: LambdaContext,
    log_lines: Lines,
) -> None:
    sender.failing = {BYSTANDER_ID: "LimitExceededException: throttled"}
    event = websocket_event(
        "sendMessage", {"action": "sendMessage", "message": "hi"}, connection_id=SENDER_ID
    )
    log_lines()

    response = send_message.lambda_handler(event, context)

    assert response == {"statusCode": 200}
    assert sender.recipients() == {SENDER_ID, THIRD_ID}
    assert stored_ids(store) == set(connected), "a failure is not a 410: the record stays"
    [warning] = [line for line in log_lines() if line["message"] == "delivery failed"]
    assert warning["level"] == "WARNING"
    assert warning["recipient"] == BYSTANDER_ID
    assert "throttled" in warning["reason"]
    assert warning["connection_id"] == SENDER_ID
    assert warning["request_id"] == event["requestContext"]["requestId"]


def test_handled_frame_is_logged_with_delivery_counts(
    connected: list[str], sender: RecordingSender, context: LambdaContext, log_lines: Lines
) -> None:
    sender.gone = {THIRD_ID}
    log_lines()

    send({"action": "sendMessage", "message": "count me"}, context)

    [line] = [line for line in log_lines() if line["message"] == "frame handled"]
    assert line["action"] == "sendMessage"
    # The message to minji and jun, then sora's `left` to the same two.
    assert (line["delivered"], line["gone"], line["failed"]) == (4, 1, 0)
    [message] = sender.received(SENDER_ID, "message")
    assert line["message_id"] == message["id"]


def test_message_limit_is_configurable(
    connected: list[str], configure: Configure, sender: RecordingSender, context: LambdaContext
) -> None:
    configure(WSCHAT_MAX_MESSAGE_CHARS="10")

    assert send({"action": "sendMessage", "message": "x" * 10}, context)["statusCode"] == 200
    sender.clear()
    response = send({"action": "sendMessage", "message": "x" * 11}, context)

    reply = assert_rejected(response, sender, protocol.TOO_LONG)
    assert "10" in reply["message"]


def test_direct_reaches_the_recipient_and_the_sender(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    response = frame("direct", context, to="jun", message="just you", clientId="d-1")

    assert response == {"statusCode": 200}
    assert sender.types(SENDER_ID) == ["ack", "direct"]
    [direct] = sender.received(BYSTANDER_ID)
    assert (direct["from"], direct["to"], direct["text"], direct["clientId"]) == (
        "minji",
        "jun",
        "just you",
        "d-1",
    )
    assert THIRD_ID not in sender.recipients()


def test_direct_to_nobody_connected_replies_no_such_user(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    response = frame("direct", context, to="nobody", message="hello?")

    reply = assert_rejected(response, sender, protocol.NO_SUCH_USER)
    assert "nobody" in reply["message"]


def test_fourth_frame_of_a_burst_of_three_replies_rate_limited(
    connected: list[str],
    configure: Configure,
    sender: RecordingSender,
    store: SqliteStore,
    context: LambdaContext,
) -> None:
    # A refill this slow cannot add a token while the test runs: no clock to fake here.
    configure(WSCHAT_RATE_BURST="3", WSCHAT_RATE_PER_SECOND="0.001")
    for n in range(3):
        assert send({"action": "sendMessage", "message": f"#{n}"}, context)["statusCode"] == 200
    sender.clear()

    response = send({"action": "sendMessage", "message": "#3"}, context)

    reply = assert_rejected(response, sender, protocol.RATE_LIMITED)
    assert reply["action"] == "sendMessage"
    assert [m.text for m in store.message_history("lobby").messages] == ["#0", "#1", "#2"]


# --- sendMessage: frames that cannot be accepted ---------------------------------------------
# Each one: exactly one error event, to the sender only; a 400 with the error in the body;
# the store untouched; no exception out of the handler.


@pytest.fixture
def rejected_frame_leaves_store_alone(connected: list[str], store: SqliteStore) -> Iterator[None]:
    before = {cid: store.get_connection(cid) for cid in connected}
    yield
    assert {cid: store.get_connection(cid) for cid in stored_ids(store)} == before
    assert store.message_history("lobby").messages == []


bad_frame = pytest.mark.usefixtures("rejected_frame_leaves_store_alone")


@bad_frame
def test_body_that_is_not_json_replies_invalid_json(
    sender: RecordingSender, context: LambdaContext
) -> None:
    response = send('{"action": "sendMessage", "message": "hi"', context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


@bad_frame
@pytest.mark.parametrize("body", ['["sendMessage", "hi"]', '"hi"', "42", "null", "true"])
def test_body_that_is_json_but_not_an_object_replies_invalid_json(
    body: str, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send(body, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


@bad_frame
@pytest.mark.parametrize("body", ["", None], ids=["empty-body", "no-body"])
def test_empty_frame_replies_invalid_json(
    body: str | None, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send(body, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


@bad_frame
def test_missing_message_replies_bad_request(
    sender: RecordingSender, context: LambdaContext
) -> None:
    response = send({"action": "sendMessage", "text": "hi"}, context)

    reply = assert_rejected(response, sender, protocol.BAD_REQUEST)
    assert reply["action"] == "sendMessage"
    assert "message" in reply["message"]


@bad_frame
@pytest.mark.parametrize("value", [None, 42, 1.5, True, ["hi"], {"text": "hi"}])
def test_message_that_is_not_a_string_replies_bad_request(
    value: Any, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send({"action": "sendMessage", "message": value}, context)

    assert_rejected(response, sender, protocol.BAD_REQUEST)


@bad_frame
@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "\u3000"], ids=repr)
def test_empty_or_whitespace_message_replies_bad_request(
    text: str, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send({"action": "sendMessage", "message": text}, context)

    assert_rejected(response, sender, protocol.BAD_REQUEST)


@bad_frame
def test_message_over_4000_chars_replies_too_long(
    sender: RecordingSender, context: LambdaContext
) -> None:
    text = "x" * (protocol.MAX_MESSAGE_CHARS + 1)

    response = send({"action": "sendMessage", "message": text}, context)

    reply = assert_rejected(response, sender, protocol.TOO_LONG)
    assert str(protocol.MAX_MESSAGE_CHARS) in reply["message"]
    assert len(response["body"]) < 1000, "the reply does not echo the oversized text"


@bad_frame
def test_binary_frame_of_garbage_replies_invalid_json(
    sender: RecordingSender, context: LambdaContext
) -> None:
    event = load_event("send_message_binary")
    assert event["isBase64Encoded"] is True

    response = send_message.lambda_handler(event, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


def test_binary_frame_holding_a_json_frame_is_delivered(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    response = send('{"action":"sendMessage","message":"바이너리"}'.encode(), context)

    assert response == {"statusCode": 200}
    assert [m["text"] for m in sender.received(BYSTANDER_ID)] == ["바이너리"]


@bad_frame
def test_body_flagged_base64_that_is_not_base64_replies_invalid_json(
    sender: RecordingSender, context: LambdaContext
) -> None:
    event = websocket_event("sendMessage", "not base64!", connection_id=SENDER_ID)
    event["isBase64Encoded"] = True

    response = send_message.lambda_handler(event, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


def test_rejected_frame_is_logged_with_its_code(
    connected: list[str], context: LambdaContext, log_lines: Lines
) -> None:
    event = websocket_event("sendMessage", {"action": "sendMessage"}, connection_id=SENDER_ID)
    log_lines()

    send_message.lambda_handler(event, context)

    [line] = log_lines()
    assert line["message"] == "frame rejected"
    assert line["code"] == protocol.BAD_REQUEST
    assert line["connection_id"] == SENDER_ID
    assert line["request_id"] == event["requestContext"]["requestId"]


def test_error_reply_to_a_gone_sender_leaves_its_record_to_disconnect(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    # The $default function may not write the table, so no error reply deletes records:
    # the sender's own $disconnect does.
    sender.gone = {SENDER_ID}

    response = send("not json", context)

    assert response["statusCode"] == 400
    assert sender.posts == []
    assert stored_ids(store) == set(connected)


def test_error_reply_that_fails_is_logged(
    connected: list[str], sender: RecordingSender, context: LambdaContext, log_lines: Lines
) -> None:
    sender.failing = {SENDER_ID: "InternalServerErrorException"}
    log_lines()

    response = send("not json", context)

    assert response["statusCode"] == 400
    assert sender.posts == []
    [warning] = [line for line in log_lines() if line["message"] == "reply failed"]
    assert warning["level"] == "WARNING"
    assert warning["connection_id"] == SENDER_ID
    assert warning["recipient"] == SENDER_ID


# --- rooms and history functions --------------------------------------------------------------


def test_join_sample_answers_the_joiner_with_joined_presence_and_history(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    event = load_event("join")
    assert json.loads(event["body"]) == {"action": "join", "room": "general"}

    response = rooms.lambda_handler(event, context)

    assert response == {"statusCode": 200}
    assert sender.types(SENDER_ID) == ["joined", "presence", "history"]
    joined, presence, page = sender.received(SENDER_ID)
    assert (joined["room"], joined["name"], joined["members"]) == ("general", "minji", ["minji"])
    assert presence == {"type": "presence", "room": "general", "members": ["minji"]}
    assert page == {"type": "history", "room": "general", "messages": [], "more": False}


def test_history_sample_pages_the_lobby(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    for n in range(3):
        send({"action": "sendMessage", "message": f"#{n}"}, context)
    sender.clear()

    response = history.lambda_handler(load_event("history"), context)

    assert response == {"statusCode": 200}
    [page] = sender.received(SENDER_ID)
    assert page["type"] == "history"
    assert [m["text"] for m in page["messages"]] == ["#0", "#1", "#2"]
    assert sender.recipients() == {SENDER_ID}


def test_set_name_renames_in_lobby_and_hello_shows_it(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    frame("setName", context, name="minji2")
    sender.clear()

    frame("hello", context)

    [hello] = sender.received(SENDER_ID)
    assert hello == {
        "type": "hello",
        "connectionId": SENDER_ID,
        "name": "minji2",
        "rooms": ["lobby"],
        "protocol": 1,
        "unread": {"lobby": 0},
    }


@pytest.mark.parametrize(
    ("handler", "action", "fields"),
    [
        (rooms.lambda_handler, "sendMessage", {"message": "hi"}),
        (rooms.lambda_handler, "history", {"room": "lobby"}),
        (send_message.lambda_handler, "join", {"room": "general"}),
        (send_message.lambda_handler, "setName", {"name": "jun"}),
        (history.lambda_handler, "who", {}),
        (history.lambda_handler, "direct", {"to": "jun", "message": "hi"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_function_refuses_actions_it_does_not_serve(
    handler: Handler,
    action: str,
    fields: dict[str, Any],
    connected: list[str],
    sender: RecordingSender,
    store: SqliteStore,
    context: LambdaContext,
) -> None:
    event = websocket_event(action, {"action": action, **fields}, connection_id=SENDER_ID)

    response = handler(event, context)

    reply = assert_rejected(response, sender, protocol.UNKNOWN_ACTION)
    assert reply["action"] == action
    assert store.message_history("lobby").messages == []
    record = store.get_connection(SENDER_ID)
    assert record is not None
    assert (record.name, record.rooms) == ("minji", frozenset({"lobby"}))


def test_frame_from_an_unregistered_connection_replies_unavailable(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    stranger = "Cq3zZ9z9oE0CZzZ="

    response = frame("who", context, stranger)

    assert response["statusCode"] == 400
    assert sender.recipients() == {stranger}
    [reply] = sender.received(stranger)
    assert reply["code"] == protocol.UNAVAILABLE


# --- $default ---------------------------------------------------------------------------------


def test_unknown_action_replies_unknown_action_naming_it(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    event = load_event("default")
    assert json.loads(event["body"])["action"] == "shout"

    response = default.lambda_handler(event, context)

    reply = assert_rejected(response, sender, protocol.UNKNOWN_ACTION)
    assert reply["action"] == "shout"
    assert "'shout'" in reply["message"]
    for action in registry.NAMES:
        assert action in reply["message"], "the reply names the actions that exist"
    assert stored_ids(store) == set(connected)


def test_unknown_action_is_named_at_most_64_chars(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    action = "a" * 10_000
    event = websocket_event("$default", {"action": action}, connection_id=SENDER_ID)

    response = default.lambda_handler(event, context)

    reply = assert_rejected(response, sender, protocol.UNKNOWN_ACTION)
    assert reply["action"] == "a" * 64
    assert len(response["body"]) < 1000


@pytest.mark.parametrize("frame", [{"message": "hi"}, {"action": 7, "message": "hi"}])
def test_frame_without_string_action_replies_bad_request(
    frame: dict[str, Any], connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    event = websocket_event("$default", frame, connection_id=SENDER_ID)

    response = default.lambda_handler(event, context)

    reply = assert_rejected(response, sender, protocol.BAD_REQUEST)
    assert "action" in reply["message"]


def test_default_with_text_that_is_not_json_replies_invalid_json(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    event = websocket_event("$default", "hello?", connection_id=SENDER_ID)

    response = default.lambda_handler(event, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


# --- the store is unavailable -----------------------------------------------------------------


class UnavailableStore:
    """A store whose backing service cannot be reached: every method raises ``error`` (whatever
    the method: the store's ports may grow, the outage stays total)."""

    def __init__(self, error: type[StoreError] = StoreUnavailable) -> None:
        self.error = error
        self.calls: list[str] = []

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def fail(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(operation)
            raise self.error(f"{operation}: ProvisionedThroughputExceededException")

        return fail


@pytest.fixture
def unavailable_store(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> UnavailableStore:
    failing = UnavailableStore()
    monkeypatch.setattr(_runtime, "store", lambda: failing)
    return failing


@pytest.fixture
def broken_store(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> UnavailableStore:
    """A store failing for a reason retrying will not fix (a StoreError, not StoreUnavailable)."""
    failing = UnavailableStore(StoreError)
    monkeypatch.setattr(_runtime, "store", lambda: failing)
    return failing


@pytest.fixture
def unopenable_store(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WSCHAT_SQLITE_PATH names a directory: SQLite cannot open it as a database."""
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(store_path.parent))


def test_connect_returns_503_when_store_is_unavailable(
    unavailable_store: UnavailableStore, context: LambdaContext, log_lines: Lines
) -> None:
    response = connect.lambda_handler(load_event("connect"), context)

    assert response["statusCode"] == 503
    assert unavailable_store.calls == ["put_connection"]
    [line] = log_lines()
    assert line["level"] == "ERROR"
    assert line["connection_id"] == SENDER_ID
    assert "ProvisionedThroughputExceededException" in line["reason"]


@pytest.mark.usefixtures("unopenable_store")
def test_connect_returns_503_when_store_cannot_be_opened(context: LambdaContext) -> None:
    response = connect.lambda_handler(load_event("connect"), context)

    assert response["statusCode"] == 503


def test_connect_returns_503_when_store_directory_cannot_be_made(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, context: LambdaContext
) -> None:
    a_file = store_path.parent / "a-file"
    a_file.write_text("not a directory")
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(a_file / "db" / "wschat.sqlite3"))

    response = connect.lambda_handler(load_event("connect"), context)

    assert response["statusCode"] == 503


def test_disconnect_returns_503_when_store_is_unavailable(
    unavailable_store: UnavailableStore, context: LambdaContext
) -> None:
    response = disconnect.lambda_handler(load_event("disconnect"), context)

    assert response["statusCode"] == 503


@pytest.mark.parametrize("sample", ["send_message", "join", "history"])
def test_action_replies_unavailable_with_503_when_store_is_unavailable(
    sample: str,
    unavailable_store: UnavailableStore,
    sender: RecordingSender,
    context: LambdaContext,
) -> None:
    event = load_event(sample)
    handler = HANDLERS[event["requestContext"]["routeKey"]]

    response = handler(event, context)

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["code"] == protocol.UNAVAILABLE
    assert sender.recipients() == {SENDER_ID}
    [reply] = sender.received(SENDER_ID)
    assert reply["type"] == "error"
    assert reply["code"] == protocol.UNAVAILABLE


def test_unavailable_reply_names_the_frames_action(
    unavailable_store: UnavailableStore, sender: RecordingSender, context: LambdaContext
) -> None:
    send_message.lambda_handler(load_event("send_message"), context)

    [reply] = sender.received(SENDER_ID)
    assert reply.get("action") == "sendMessage"


def test_send_message_answers_500_when_store_fails_for_good(
    broken_store: UnavailableStore, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send_message.lambda_handler(load_event("send_message"), context)

    assert response["statusCode"] == 500
    [reply] = sender.received(SENDER_ID)
    assert reply["code"] == protocol.UNAVAILABLE
    assert sender.recipients() == {SENDER_ID}


@pytest.mark.usefixtures("unopenable_store")
@pytest.mark.parametrize("sample", ["send_message", "join", "history"])
def test_action_replies_unavailable_when_store_cannot_be_opened(
    sample: str, sender: RecordingSender, context: LambdaContext
) -> None:
    event = load_event(sample)

    response = HANDLERS[event["requestContext"]["routeKey"]](event, context)

    assert response["statusCode"] == 503
    [reply] = sender.received(SENDER_ID)
    assert reply["code"] == protocol.UNAVAILABLE


@pytest.mark.usefixtures("unopenable_store")
def test_unknown_action_is_answered_even_when_store_cannot_be_opened(
    sender: RecordingSender, context: LambdaContext
) -> None:
    response = default.lambda_handler(load_event("default"), context)

    assert_rejected(response, sender, protocol.UNKNOWN_ACTION)


# --- metrics ----------------------------------------------------------------------------------


def emf_counts(lines: list[dict[str, Any]]) -> dict[str, float]:
    """The metric values of EMF lines, checked to be declared as Count metrics."""
    counts: dict[str, float] = {}
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            assert metric["Unit"] == "Count"
            [value] = line[metric["Name"]]
            counts[metric["Name"]] = counts.get(metric["Name"], 0) + value
    return counts


def test_connect_counts_a_connection_opened(context: LambdaContext, metric_lines: Lines) -> None:
    connect.lambda_handler(load_event("connect"), context)

    assert emf_counts(metric_lines()) == {"ConnectionsOpened": 1}


def test_refused_connect_counts_nothing(context: LambdaContext, metric_lines: Lines) -> None:
    open_connection(SENDER_ID, context, name="two words")

    assert metric_lines() == []


def test_disconnect_counts_a_connection_closed_and_the_left_events_delivered(
    connected: list[str], context: LambdaContext, metric_lines: Lines
) -> None:
    metric_lines()

    disconnect.lambda_handler(load_event("disconnect"), context)

    assert emf_counts(metric_lines()) == {"ConnectionsClosed": 1, "MessagesDelivered": 2}


def test_message_counts_deliveries_and_failures(
    connected: list[str], sender: RecordingSender, context: LambdaContext, metric_lines: Lines
) -> None:
    sender.failing = {THIRD_ID: "throttled"}
    metric_lines()

    send({"action": "sendMessage", "message": "hi"}, context)

    [line] = metric_lines()
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "wschat"
    assert emf_counts([line]) == {"MessagesDelivered": 2, "DeliveryFailures": 1}


def test_rejected_frame_counts_nothing(
    connected: list[str], context: LambdaContext, metric_lines: Lines
) -> None:
    metric_lines()

    send("not json", context)

    assert metric_lines() == []


# --- every handler ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "route_key", "body"),
    [
        (connect.lambda_handler, "$connect", None),
        (send_message.lambda_handler, "sendMessage", {"action": "sendMessage", "message": "hi"}),
        (send_message.lambda_handler, "sendMessage", "not json"),
        (rooms.lambda_handler, "join", {"action": "join", "room": "general"}),
        (history.lambda_handler, "history", {"action": "history", "room": "lobby"}),
        (default.lambda_handler, "$default", {"action": "shout"}),
        (disconnect.lambda_handler, "$disconnect", None),
    ],
    ids=["connect", "send", "reject", "join", "history", "default", "disconnect"],
)
def test_every_log_line_names_connection_and_request(
    handler: Handler,
    route_key: str,
    body: Any,
    connected: list[str],
    context: LambdaContext,
    log_lines: Lines,
) -> None:
    event = websocket_event(route_key, body, connection_id=THIRD_ID)
    log_lines()

    handler(event, context)

    lines = log_lines()
    assert lines, "every invocation logs at least one line"
    for line in lines:
        assert line["connection_id"] == THIRD_ID
        assert line["request_id"] == event["requestContext"]["requestId"]
        assert line["route"] == route_key


# --- a $connect authorizer ------------------------------------------------------------------

AUTHORIZED = {"principalId": "sub-123", "name": "minji", "email_verified": True}


def authorized(event: dict[str, Any]) -> dict[str, Any]:
    event["requestContext"]["authorizer"] = dict(AUTHORIZED)  # as on every event of it
    return event


def test_connect_takes_the_name_from_the_authorizer_over_the_query(
    store: SqliteStore, context: LambdaContext
) -> None:
    event = authorized(websocket_event("$connect", connection_id=SENDER_ID, query={"name": "x"}))

    assert connect.lambda_handler(event, context) == {"statusCode": 200}

    record = store.get_connection(SENDER_ID)
    assert record is not None and record.name == "minji"


def test_an_authorizer_name_that_is_not_a_valid_name_refuses_the_handshake(
    store: SqliteStore, context: LambdaContext
) -> None:
    event = websocket_event("$connect", connection_id=SENDER_ID)
    event["requestContext"]["authorizer"] = {"principalId": "p", "name": "x" * 500}

    assert connect.lambda_handler(event, context)["statusCode"] == 400
    assert store.get_connection(SENDER_ID) is None


def test_with_an_authorizer_set_name_replies_unauthorized(
    store: SqliteStore, sender: RecordingSender, context: LambdaContext
) -> None:
    connect.lambda_handler(
        authorized(websocket_event("$connect", connection_id=SENDER_ID)), context
    )
    sender.clear()
    event = authorized(websocket_event("setName", {"action": "setName", "name": "jun"}))
    event["requestContext"]["connectionId"] = SENDER_ID

    response = HANDLERS["setName"](event, context)

    assert assert_rejected(response, sender, protocol.UNAUTHORIZED)["action"] == "setName"
    record = store.get_connection(SENDER_ID)
    assert record is not None and record.name == "minji"

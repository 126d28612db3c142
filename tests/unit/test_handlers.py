"""The Lambda handlers end to end in one process: API Gateway-shaped events in, the real SQLite
store and a recording Sender behind them, replies and JSON log lines out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.support.events import LambdaContext, load_event, websocket_event

from wschat import ids, protocol
from wschat.handlers import _runtime, connect, default, disconnect, send_message
from wschat.storage import CONNECTION_TTL_SECONDS, StoreError, StoreUnavailable
from wschat.storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.unit.conftest import RecordingSender

pytestmark = pytest.mark.usefixtures("store_path", "sender")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
LogLines = Callable[[], list[dict[str, Any]]]

SENDER_ID = load_event("send_message")["requestContext"]["connectionId"]
BYSTANDER_ID = "Cq3wB1a2oE0CJhA="
THIRD_ID = "Cq3wC3d4oE0CKiB="
CONNECTED_AT = 1732498512345


@pytest.fixture
def connected(store_path: Path, sender: RecordingSender, context: LambdaContext) -> list[str]:
    """Three open connections, made through the $connect handler: the sender and two others."""
    for connection_id in (SENDER_ID, BYSTANDER_ID, THIRD_ID):
        event = websocket_event("$connect", connection_id=connection_id)
        assert connect.lambda_handler(event, context) == {"statusCode": 200}
    return [SENDER_ID, BYSTANDER_ID, THIRD_ID]


def stored_ids(store: SqliteStore) -> set[str]:
    return set(store.scan_connection_ids())


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


def test_connect_sends_nothing(sender: RecordingSender, context: LambdaContext) -> None:
    connect.lambda_handler(load_event("connect"), context)

    assert sender.posts == []


def test_connect_logs_json_line_with_connection_and_request_id(
    context: LambdaContext, log_lines: LogLines
) -> None:
    event = load_event("connect")

    connect.lambda_handler(event, context)

    [line] = [line for line in log_lines() if line["message"] == "connected"]
    assert line["level"] == "INFO"
    assert line["connection_id"] == SENDER_ID
    assert line["request_id"] == event["requestContext"]["requestId"]
    assert line["function_request_id"] == context.aws_request_id


# --- $disconnect ------------------------------------------------------------------------------


def test_disconnect_deletes_the_connection(
    connected: list[str], store: SqliteStore, context: LambdaContext
) -> None:
    response = disconnect.lambda_handler(load_event("disconnect"), context)

    assert response == {"statusCode": 200}
    assert store.get_connection(SENDER_ID) is None
    assert stored_ids(store) == {BYSTANDER_ID, THIRD_ID}


def test_disconnect_of_unknown_connection_succeeds(
    store: SqliteStore, context: LambdaContext
) -> None:
    response = disconnect.lambda_handler(load_event("disconnect"), context)

    assert response == {"statusCode": 200}
    assert stored_ids(store) == set()


def test_disconnect_logs_close_code_and_reason(
    connected: list[str], context: LambdaContext, log_lines: LogLines
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


def test_seed_frame_is_delivered_to_every_connection(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    event = load_event("send_message")
    assert json.loads(event["body"]) == {"action": "sendMessage", "message": "hi"}
    before = int(time.time() * 1000)

    response = send_message.lambda_handler(event, context)

    after = int(time.time() * 1000)
    assert response == {"statusCode": 200}
    assert sorted(cid for cid, _ in sender.posts) == sorted(connected)
    assert len({data for _, data in sender.posts}) == 1, "every recipient gets the same bytes"
    [message] = sender.received(BYSTANDER_ID)
    assert set(message) == {"type", "id", "from", "text", "ts"}
    assert message["type"] == "message"
    assert message["from"] == SENDER_ID
    assert message["text"] == "hi"
    assert before <= message["ts"] <= after
    assert len(message["id"]) == 26
    assert ids.id_time_ms(message["id"]) == message["ts"]


def test_sender_receives_its_own_message(
    connected: list[str], sender: RecordingSender, context: LambdaContext
) -> None:
    send({"action": "sendMessage", "message": "echo?"}, context)

    [message] = sender.received(SENDER_ID)
    assert message["text"] == "echo?"


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


def test_gone_recipient_is_deleted_and_others_still_receive(
    connected: list[str], sender: RecordingSender, store: SqliteStore, context: LambdaContext
) -> None:
    sender.gone = {BYSTANDER_ID}

    response = send({"action": "sendMessage", "message": "still here?"}, context)

    assert response == {"statusCode": 200}
    assert sender.recipients() == {SENDER_ID, THIRD_ID}
    assert stored_ids(store) == {SENDER_ID, THIRD_ID}


def test_failing_recipient_is_logged_and_others_still_receive(
    connected: list[str],
    sender: RecordingSender,
    store: SqliteStore,
    context: LambdaContext,
    log_lines: LogLines,
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


def test_sent_message_is_logged_with_delivery_counts(
    connected: list[str], sender: RecordingSender, context: LambdaContext, log_lines: LogLines
) -> None:
    sender.gone = {THIRD_ID}
    log_lines()

    send({"action": "sendMessage", "message": "count me"}, context)

    [line] = [line for line in log_lines() if line["message"] == "message sent"]
    assert (line["delivered"], line["gone"], line["failed"]) == (2, 1, 0)
    [message] = sender.received(SENDER_ID)
    assert line["message_id"] == message["id"]


# --- sendMessage: frames that cannot be accepted ---------------------------------------------
# Each one: exactly one error event, to the sender only; a 400 with the error in the body;
# the store untouched; no exception out of the handler.


@pytest.fixture
def rejected_frame_leaves_store_alone(connected: list[str], store: SqliteStore) -> Iterator[None]:
    before = {cid: store.get_connection(cid) for cid in connected}
    yield
    assert {cid: store.get_connection(cid) for cid in stored_ids(store)} == before


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
@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason="bug: events.py WebSocketEvent.body lets binascii.Error out of b64decode",
)
def test_body_flagged_base64_that_is_not_base64_replies_invalid_json(
    sender: RecordingSender, context: LambdaContext
) -> None:
    event = websocket_event("sendMessage", "not base64!", connection_id=SENDER_ID)
    event["isBase64Encoded"] = True

    response = send_message.lambda_handler(event, context)

    assert_rejected(response, sender, protocol.INVALID_JSON)


def test_rejected_frame_is_logged_with_its_code(
    connected: list[str], context: LambdaContext, log_lines: LogLines
) -> None:
    event = websocket_event("sendMessage", {"action": "sendMessage"}, connection_id=SENDER_ID)
    log_lines()

    send_message.lambda_handler(event, context)

    [line] = log_lines()
    assert line["message"] == "message rejected"
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
    connected: list[str], sender: RecordingSender, context: LambdaContext, log_lines: LogLines
) -> None:
    sender.failing = {SENDER_ID: "InternalServerErrorException"}
    log_lines()

    response = send("not json", context)

    assert response["statusCode"] == 400
    assert sender.posts == []
    [warning] = [line for line in log_lines() if line["message"] == "error reply failed"]
    assert warning["level"] == "WARNING"
    assert warning["connection_id"] == SENDER_ID


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
    assert "sendMessage" in reply["message"], "the reply names the actions that exist"
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
    unavailable_store: UnavailableStore, context: LambdaContext, log_lines: LogLines
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


@pytest.mark.xfail(
    strict=True,
    raises=OSError,
    reason="bug: storage/sqlite.py makes the parent directory outside its try (OSError escapes)",
)
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


def test_send_message_replies_unavailable_when_store_is_unavailable(
    unavailable_store: UnavailableStore, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send_message.lambda_handler(load_event("send_message"), context)

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["code"] == protocol.UNAVAILABLE
    assert sender.recipients() == {SENDER_ID}
    [reply] = sender.received(SENDER_ID)
    assert reply["code"] == protocol.UNAVAILABLE
    assert reply["action"] == "sendMessage"


def test_send_message_answers_500_when_store_fails_for_good(
    broken_store: UnavailableStore, sender: RecordingSender, context: LambdaContext
) -> None:
    response = send_message.lambda_handler(load_event("send_message"), context)

    assert response["statusCode"] == 500
    [reply] = sender.received(SENDER_ID)
    assert reply["code"] == protocol.UNAVAILABLE
    assert sender.recipients() == {SENDER_ID}


@pytest.mark.usefixtures("unopenable_store")
@pytest.mark.xfail(
    strict=True,
    raises=StoreUnavailable,
    reason="bug: send_message.py builds the service (opening the store) outside its try",
)
def test_send_message_replies_unavailable_when_store_cannot_be_opened(
    sender: RecordingSender, context: LambdaContext
) -> None:
    response = send_message.lambda_handler(load_event("send_message"), context)

    assert response["statusCode"] == 503
    [reply] = sender.received(SENDER_ID)
    assert reply["code"] == protocol.UNAVAILABLE


@pytest.mark.usefixtures("unopenable_store")
@pytest.mark.xfail(
    strict=True,
    raises=StoreUnavailable,
    reason="bug: default.py needs no store but opens one to reply, so a store outage escapes",
)
def test_unknown_action_is_answered_even_when_store_cannot_be_opened(
    sender: RecordingSender, context: LambdaContext
) -> None:
    response = default.lambda_handler(load_event("default"), context)

    assert_rejected(response, sender, protocol.UNKNOWN_ACTION)


# --- every handler ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "route_key", "body"),
    [
        (connect.lambda_handler, "$connect", None),
        (send_message.lambda_handler, "sendMessage", {"action": "sendMessage", "message": "hi"}),
        (send_message.lambda_handler, "sendMessage", "not json"),
        (default.lambda_handler, "$default", {"action": "shout"}),
        (disconnect.lambda_handler, "$disconnect", None),
    ],
    ids=["connect", "send", "reject", "default", "disconnect"],
)
def test_every_log_line_names_connection_and_request(
    handler: Handler,
    route_key: str,
    body: Any,
    connected: list[str],
    context: LambdaContext,
    log_lines: LogLines,
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

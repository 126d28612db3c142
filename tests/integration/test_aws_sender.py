"""The AWS delivery path over real HTTP: ApiGatewaySender (its own SigV4-signed posts, boto3's
get and delete) and the sendMessage handler against an @connections endpoint on 127.0.0.1 that
answers the way API Gateway's Management API does, and checks every signature."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from tests.support.events import lambda_context, websocket_event

import wschat.delivery
from wschat.delivery import aws
from wschat.delivery.aws import ApiGatewaySender
from wschat.delivery.base import DeliveryError, GoneConnection
from wschat.handlers import _runtime, connect, send_message
from wschat.storage.sqlite import SqliteStore
from wschat.testing.connections_endpoint import ConnectionsEndpoint, SigningCredentials

pytestmark = pytest.mark.integration

# API Gateway's connection ids are base64 with "=" padding; botocore percent-encodes them.
LIVE = ["L0SM9cOFvHcCIhw=", "L0SNFdxPvHcCFlQ=", "L0SNGeB+vHcCIhw="]
GONE = "L0SNbN2OvHcAcGg="
FAILING = "L0SNkd7zvHcCF0g="
REGION = "ap-northeast-2"
TESTING = SigningCredentials("testing", "testing")


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # What botocore's credential chain finds first; the endpoint verifies signatures with it.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TESTING.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TESTING.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def endpoint() -> Iterator[ConnectionsEndpoint]:
    with ConnectionsEndpoint(
        connections=LIVE, gone={GONE}, failing={FAILING}, credentials=[TESTING], region=REGION
    ) as server:
        yield server


@pytest.fixture
def sender(endpoint: ConnectionsEndpoint) -> Iterator[ApiGatewaySender]:
    sender = ApiGatewaySender.for_endpoint(endpoint.url)
    yield sender
    sender.close()


def test_endpoint_speaks_the_error_shape_boto3_reads_as_gone_exception(
    endpoint: ConnectionsEndpoint,
) -> None:
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint.url)
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId=GONE, Data=b"hi")
    assert caught.value.response["Error"]["Code"] == "GoneException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert isinstance(caught.value, client.exceptions.GoneException)


def test_post_delivers_the_exact_bytes(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    data = b'\x00\xff{"text":"\xec\x95\x88\xeb\x85\x95"}\r\n'
    sender.post(LIVE[2], data)  # the id with "+" and "=" arrives intact
    assert endpoint.received() == [(LIVE[2], data)]


@pytest.mark.parametrize("connection_id", [GONE, "never-connected="])
def test_post_to_a_gone_connection_raises_gone_connection(
    sender: ApiGatewaySender, connection_id: str
) -> None:
    with pytest.raises(GoneConnection) as caught:
        sender.post(connection_id, b"hi")
    assert caught.value.connection_id == connection_id


def test_server_error_raises_delivery_error_not_gone(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    with pytest.raises(DeliveryError) as caught:
        sender.post(FAILING, b"hi")
    assert not isinstance(caught.value, GoneConnection)
    assert "HTTP 500 InternalServerErrorException" in str(caught.value)
    # Tried once more (a 500 may be transient), then given up.
    assert endpoint.attempts().count(("POST", FAILING)) == 2
    assert endpoint.received() == []


def test_post_many_delivers_to_live_and_reports_gone_and_failed(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    recipients = [LIVE[0], GONE, LIVE[1], FAILING, "never-connected=", LIVE[2]]
    result = sender.post_many(recipients, b"broadcast")

    assert result.delivered == 3
    assert sorted(result.gone) == sorted([GONE, "never-connected="])
    assert list(result.failed) == [FAILING]
    assert sorted(endpoint.received()) == sorted((cid, b"broadcast") for cid in LIVE)


def test_post_many_to_nobody_sends_nothing(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    result = sender.post_many([], b"x")
    assert (result.delivered, result.gone, result.failed) == (0, [], {})
    assert endpoint.attempts() == []


def test_post_many_posts_concurrently() -> None:
    recipients = [f"fan{i:04d}=" for i in range(200)]
    delay = 0.02
    with ConnectionsEndpoint(
        connections=recipients, delay=delay, credentials=[TESTING], region=REGION
    ) as endpoint:
        sender = ApiGatewaySender.for_endpoint(endpoint.url)
        try:
            started = time.perf_counter()
            result = sender.post_many(recipients, b"x")
            elapsed = time.perf_counter() - started
        finally:
            sender.close()
        assert result.delivered == 200
        assert len(endpoint.received()) == 200
        assert endpoint.max_in_flight > 1
    # Sequential would take 200 x 20 ms = 4 s; half of that still rules it out, with room
    # for a 2-core host busy with other work (a quiet one takes ~0.3 s).
    assert elapsed < len(recipients) * delay / 2


# -- signatures: the endpoint verifies each one as API Gateway does ------------------------


def test_every_post_and_boto3_call_is_signed_with_the_credential_chains_key(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    result = sender.post_many(LIVE, b"signed")

    assert result.delivered == 3
    assert endpoint.signed_by() == ["testing"] * 3
    assert endpoint.rejected() == []


def test_a_wrong_secret_gets_403_and_surfaces_as_delivery_error(
    monkeypatch: pytest.MonkeyPatch, endpoint: ConnectionsEndpoint
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    sender = ApiGatewaySender.for_endpoint(endpoint.url)
    try:
        with pytest.raises(DeliveryError) as caught:
            sender.post(LIVE[0], b"hi")
        result = sender.post_many(LIVE, b"hi")
    finally:
        sender.close()

    assert not isinstance(caught.value, GoneConnection)
    assert "HTTP 403 InvalidSignatureException" in str(caught.value)
    assert "signature we calculated does not match" in str(caught.value)
    assert (result.delivered, result.gone, sorted(result.failed)) == (0, [], sorted(LIVE))
    assert endpoint.received() == []
    # A 403 is not retried.
    assert [error for error, _ in endpoint.rejected()] == ["InvalidSignatureException"] * 4


def test_temporary_credentials_send_and_sign_the_session_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temporary = SigningCredentials("ASIATEMPORARY", "temp-secret", "IQoJb3JpZ2lu+token/=")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", temporary.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", temporary.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", str(temporary.token))
    with ConnectionsEndpoint(connections=LIVE, credentials=[temporary], region=REGION) as server:
        sender = ApiGatewaySender.for_endpoint(server.url)
        try:
            sender.post(LIVE[2], b"with a token")
            monkeypatch.setenv("AWS_SESSION_TOKEN", "a-stale-token")
            stale = ApiGatewaySender.for_endpoint(server.url)
            with pytest.raises(DeliveryError, match="403 UnrecognizedClientException"):
                stale.post(LIVE[2], b"with the wrong token")
            stale.close()
        finally:
            sender.close()
        assert server.received() == [(LIVE[2], b"with a token")]
        assert server.signed_by() == [temporary.access_key]


def test_the_region_comes_from_aws_region_for_a_non_aws_host(
    monkeypatch: pytest.MonkeyPatch, endpoint: ConnectionsEndpoint
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # wins over AWS_DEFAULT_REGION, as in Lambda
    sender = ApiGatewaySender.for_endpoint(endpoint.url)
    try:
        with pytest.raises(DeliveryError, match="scoped to a valid region, not 'us-west-2'"):
            sender.post(LIVE[0], b"hi")
    finally:
        sender.close()


def test_refreshable_credentials_are_refreshed_between_fanouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.credentials import RefreshableCredentials

    rotations = [
        SigningCredentials(f"ASIAROTATION{i}", f"secret{i}", f"token{i}") for i in range(3)
    ]
    issued = iter(rotations)

    def refresh() -> dict[str, str]:
        fresh = next(issued)
        # Five minutes left: inside botocore's mandatory refresh window, so every
        # get_frozen_credentials() refreshes.
        expiry = datetime.now(UTC) + timedelta(minutes=5)
        return {
            "access_key": fresh.access_key,
            "secret_key": fresh.secret_key,
            "token": str(fresh.token),
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    monkeypatch.setattr(boto3.Session, "get_credentials", lambda self: credentials)
    with ConnectionsEndpoint(connections=LIVE, credentials=rotations, region=REGION) as server:
        sender = ApiGatewaySender.for_endpoint(server.url)
        try:
            first = sender.post_many(LIVE, b"one")
            second = sender.post_many(LIVE, b"two")
        finally:
            sender.close()
        assert first.delivered == second.delivered == 3
        # Credentials are read once per fan-out, each time fresh.
        assert server.signed_by() == [rotations[1].access_key] * 3 + [rotations[2].access_key] * 3


def test_https_trusts_aws_ca_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from wschat.gateway import tls

    files = tls.ensure_certificates(tmp_path / "tls")
    with ConnectionsEndpoint(
        connections=LIVE, credentials=[TESTING], ssl_context=files.server_context()
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")
        untrusting = ApiGatewaySender.for_endpoint(server.url)
        try:
            with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
                untrusting.post(LIVE[0], b"hi")
        finally:
            untrusting.close()

        monkeypatch.setenv("AWS_CA_BUNDLE", str(files.ca_cert))
        trusting = ApiGatewaySender.for_endpoint(server.url)
        try:
            result = trusting.post_many(LIVE, b"over tls")
        finally:
            trusting.close()
        assert result.delivered == 3
        assert sorted(server.received()) == sorted((cid, b"over tls") for cid in LIVE)


# -- how answers map: retried, gone, failed ---------------------------------------------------


def test_a_throttled_post_is_retried_once_and_then_delivered(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    endpoint.mark_throttled(LIVE[0], times=1)
    endpoint.mark_failing(LIVE[1], times=1)

    result = sender.post_many(LIVE, b"after a retry")

    assert result.delivered == 3
    assert endpoint.attempts().count(("POST", LIVE[0])) == 2
    assert endpoint.attempts().count(("POST", LIVE[1])) == 2
    assert endpoint.attempts().count(("POST", LIVE[2])) == 1


def test_a_post_throttled_twice_is_a_delivery_error(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    endpoint.mark_throttled(LIVE[0])
    with pytest.raises(DeliveryError) as caught:
        sender.post(LIVE[0], b"hi")
    assert not isinstance(caught.value, GoneConnection)
    assert "HTTP 429 LimitExceededException" in str(caught.value)
    assert endpoint.attempts() == [("POST", LIVE[0])] * 2


def test_a_gone_connection_is_not_retried(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    with pytest.raises(GoneConnection):
        sender.post(GONE, b"hi")
    assert endpoint.attempts() == [("POST", GONE)]


def test_other_client_errors_name_the_status_and_error_type_without_retrying(
    endpoint: ConnectionsEndpoint,
) -> None:
    sender = ApiGatewaySender.for_endpoint(endpoint.url)
    wrong_stage = ApiGatewaySender.for_endpoint(endpoint.url.replace("/prod", "/staging"))
    try:
        with pytest.raises(DeliveryError) as too_large:
            sender.post(LIVE[0], b"x" * (128 * 1024 + 1))
        with pytest.raises(DeliveryError) as forbidden:
            wrong_stage.post(LIVE[0], b"hi")
    finally:
        sender.close()
        wrong_stage.close()

    assert "HTTP 413 PayloadTooLargeException" in str(too_large.value)
    assert "HTTP 403 ForbiddenException: Forbidden" in str(forbidden.value)
    assert not isinstance(too_large.value, GoneConnection)
    assert endpoint.attempts() == [("POST", LIVE[0])]
    assert endpoint.rejected() == [("ForbiddenException", "Forbidden")]


def test_a_dropped_connection_is_retried_once_then_fails_that_recipient_only(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    dropping = "L0SNdropCIhw="
    endpoint.add(dropping)
    endpoint.mark_dropping(dropping)

    result = sender.post_many([LIVE[0], dropping, LIVE[1], GONE, LIVE[2]], b"go on")

    assert result.delivered == 3
    assert result.gone == [GONE]
    assert list(result.failed) == [dropping]
    assert endpoint.attempts().count(("POST", dropping)) == 2


def test_kept_alive_connections_the_server_closed_are_reopened(
    endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    assert sender.post_many(LIVE, b"first").delivered == 3
    endpoint._server.close_open_connections()  # as API Gateway drops idle connections
    time.sleep(0.05)

    assert sender.post_many(LIVE, b"second").delivered == 3
    assert sorted(endpoint.received_by(LIVE[0])) == [b"first", b"second"]


def test_a_read_timeout_is_a_delivery_error_and_not_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aws, "READ_TIMEOUT", 0.1)
    with ConnectionsEndpoint(connections=LIVE, delay=0.5, credentials=[TESTING]) as server:
        sender = ApiGatewaySender.for_endpoint(server.url)
        try:
            with pytest.raises(DeliveryError, match="timed out"):
                sender.post(LIVE[0], b"slow")
        finally:
            sender.close()
        time.sleep(0.6)  # the endpoint finishes the call the sender gave up on
        # It may have been delivered: sending it again could deliver it twice.
        assert server.attempts() == [("POST", LIVE[0])]


def test_an_unexpected_error_for_one_recipient_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    real_path = aws.connection_path

    def broken_for_one(endpoint_path: str, connection_id: str) -> str:
        if connection_id == LIVE[1]:
            raise RuntimeError("a bug")
        return real_path(endpoint_path, connection_id)

    monkeypatch.setattr(aws, "connection_path", broken_for_one)
    result = sender.post_many(LIVE, b"x")

    assert result.delivered == 2
    assert result.failed == {LIVE[1]: "a bug"}


def test_the_thread_pool_is_created_once_when_fanouts_start_together(
    monkeypatch: pytest.MonkeyPatch, endpoint: ConnectionsEndpoint, sender: ApiGatewaySender
) -> None:
    created: list[ThreadPoolExecutor] = []

    class CountedPool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # widen the window two unlocked checks would both pass through
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(aws, "ThreadPoolExecutor", CountedPool)
    start = threading.Barrier(8)

    def fan_out() -> int:
        start.wait()
        return sender.post_many(LIVE, b"together").delivered

    with ThreadPoolExecutor(8) as callers:
        delivered = list(callers.map(lambda _: fan_out(), range(8)))

    assert delivered == [3] * 8
    assert len(created) == 1


# -- the sendMessage Lambda handler, end to end -------------------------------------------------


@pytest.fixture
def handler_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: ConnectionsEndpoint
) -> Iterator[Path]:
    """Handlers on the SQLite store, posting through boto3 to ``endpoint`` over HTTP."""
    db = tmp_path / "wschat.sqlite3"
    monkeypatch.setenv("WSCHAT_STORE", "sqlite")
    monkeypatch.setenv("WSCHAT_SQLITE_PATH", str(db))
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", endpoint.url)
    _forget_cold_start()
    yield db
    _forget_cold_start()


def _forget_cold_start() -> None:
    # What handlers build once per execution environment: the store, the config and one sender
    # per endpoint. Dropping them makes the next invocation a cold start against this test.
    if _runtime.store.cache_info().currsize:
        _runtime.store().close()
    _runtime.store.cache_clear()
    _runtime.config.cache_clear()
    for sender in wschat.delivery._senders.values():
        close = getattr(sender, "close", None)
        if close is not None:
            close()
    wschat.delivery._senders.clear()


def _connect_all(connection_ids: list[str]) -> None:
    for index, connection_id in enumerate(connection_ids):
        event = websocket_event("$connect", connection_id=connection_id)
        event["queryStringParameters"] = {"name": f"user{index}"}
        event["multiValueQueryStringParameters"] = {"name": [f"user{index}"]}
        reply = connect.lambda_handler(event, lambda_context())
        assert reply["statusCode"] == 200


def _stored_ids(db: Path) -> set[str]:
    store = SqliteStore(db)
    try:
        return set(store.scan_connection_ids())
    finally:
        store.close()


def _send(sender_id: str, text: str) -> dict[str, object]:
    event = websocket_event(
        "sendMessage", {"action": "sendMessage", "message": text}, connection_id=sender_id
    )
    return send_message.lambda_handler(event, lambda_context())


def _messages(endpoint: ConnectionsEndpoint) -> list[tuple[str, bytes]]:
    """The ``message`` events the endpoint delivered (presence events and acks left out)."""
    return [
        (cid, data) for cid, data in endpoint.received() if json.loads(data)["type"] == "message"
    ]


def test_send_message_handler_posts_the_message_event_to_every_connection(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all(LIVE)

    reply = _send(LIVE[1], "안녕하세요 hi")

    assert reply["statusCode"] == 200
    messages = _messages(endpoint)
    assert sorted(cid for cid, _ in messages) == sorted(LIVE)
    assert len({data for _, data in messages}) == 1  # encoded once, the same bytes to everyone
    event = json.loads(messages[0][1])
    assert event["from"] == "user1"
    assert event["text"] == "안녕하세요 hi"
    assert isinstance(event["id"], str) and isinstance(event["ts"], int)


def test_send_message_handler_forgets_connections_that_answer_gone(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all([*LIVE, GONE])

    _send(LIVE[0], "hi")

    assert sorted(cid for cid, _ in _messages(endpoint)) == sorted(LIVE)
    assert ("POST", GONE) in endpoint.attempts()
    assert _stored_ids(handler_env) == set(LIVE)


def test_send_message_handler_keeps_going_past_a_failing_connection(
    handler_env: Path, endpoint: ConnectionsEndpoint
) -> None:
    _connect_all([FAILING, *LIVE])

    reply = _send(LIVE[1], "still here")

    assert reply["statusCode"] == 200
    assert sorted(cid for cid, _ in _messages(endpoint)) == sorted(LIVE)
    assert ("POST", FAILING) in endpoint.attempts()
    # A 500 is not a 410: the connection may still be open, so its record stays.
    assert _stored_ids(handler_env) == {FAILING, *LIVE}


# -- pacing and retries within a delivery job's time (issue 10) -------------------------------


def test_with_a_deadline_throttled_posts_are_retried_until_delivered(
    endpoint: ConnectionsEndpoint,
) -> None:
    sender = ApiGatewaySender.for_endpoint(endpoint.url, rate=1000)
    endpoint.mark_throttled(LIVE[0], times=4)
    endpoint.mark_failing(LIVE[1], times=3)
    try:
        result = sender.post_many(LIVE, b"paced", deadline=time.monotonic() + 20)
    finally:
        sender.close()

    assert result.delivered == 3 and not result.failed and not result.gone
    assert endpoint.attempts().count(("POST", LIVE[0])) == 5
    assert endpoint.attempts().count(("POST", LIVE[1])) == 4
    assert sorted(endpoint.received()) == sorted((cid, b"paced") for cid in LIVE)


def test_a_post_throttled_past_the_deadline_fails_that_recipient_only(
    endpoint: ConnectionsEndpoint,
) -> None:
    sender = ApiGatewaySender.for_endpoint(endpoint.url, rate=1000)
    endpoint.mark_throttled(LIVE[0])
    try:
        result = sender.post_many([*LIVE, GONE], b"storm", deadline=time.monotonic() + 1.0)
    finally:
        sender.close()

    assert result.delivered == 2
    assert result.gone == [GONE]
    assert list(result.failed) == [LIVE[0]]
    assert "HTTP 429 LimitExceededException" in result.failed[LIVE[0]]
    # Retried more than the once a post without a deadline gets, with backoff between tries.
    assert endpoint.attempts().count(("POST", LIVE[0])) > 2

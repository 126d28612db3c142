"""Security end to end: no one reads a room they are not in, no one speaks as the system, and the
@connections API is as closed as API Gateway's.

1. Room isolation and direct-message privacy, over real sockets on the chat gateway.
2. Token auth refusals beyond tests/integration/test_chat_auth.py (missing, forged, expired and
   malformed tokens are there): unsigned, exp-less, wrong-algorithm and reserved-name tokens.
3. Names, room names and texts cannot impersonate system events: events are typed JSON objects,
   one per frame, and what a user wrote only ever sits in a string field.
4. The management API: on loopback by default; with credentials, AWS Signature V4 on every
   @connections request, checked as API Gateway's IAM auth checks it (boto3 with the right keys
   passes; wrong keys, no signature, a tampered body or path or a stale date get 403), and the
   functions get the same keys so third-party boto3 handlers keep working.
5. checkov on template.yaml: every failed check is one .checkov.yaml skips, with its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.auth
import jwt
import pytest
import yaml
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.exceptions import ClientError
from tests.integration.conftest import (
    APPS,
    PROJECT_TEMPLATE,
    REPO,
    TIMEOUT,
    RunningGateway,
    inspector_config,
    recv_json,
    running_gateway,
    wait_for,
    wschat_serve,
)
from websockets.sync.client import connect

from wschat.delivery.sigv4 import Credentials
from wschat.gateway import http as gateway_http
from wschat.gateway import iam
from wschat.gateway.server import Gateway, GatewayConfig
from wschat.gateway.template import load_api

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway
    from tests.support.chat_client import ChatClient

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)

ACCESS_KEY = "AKIAWSCHATLOCALTESTS"
SECRET_KEY = "wschat/local+secret/for/the/tests/only/0000"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
REGIONS = ["ap-northeast-2", "us-east-1", "eu-west-3"]  # any region's scope is accepted


def _of_type(events: list[dict[str, Any]], type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == type]


def _token(
    chat: ChatGateway,
    name: str,
    *,
    algorithm: str = "HS256",
    secret: str | None = None,
    **claims: Any,
) -> str:
    """A token for ``chat`` (signed with its secret unless told otherwise); a claim given as
    None is left out."""
    now = int(time.time())
    payload = {"sub": name, "iat": now, "exp": now + 600, **claims}
    from tests.integration.chat_fixtures import AUTH_SECRET

    key = AUTH_SECRET if secret is None else secret
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm)


# --- 1. Room isolation and direct messages -----------------------------------------------------


def test_a_connection_outside_a_room_never_receives_its_messages_or_its_history(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice", rooms=["secret"])
    bob = chat.client("bob", rooms=["secret"])
    carol = chat.client("carol")  # lobby only

    first = alice.say("the plan", room="secret")
    assert bob.next("message", id=first["id"])["text"] == "the plan"

    for page in ({}, {"after": "0"}, {"before": first["id"]}):
        refused = carol.request("history", "error", room="secret", **page)
        assert (refused["code"], refused["action"]) == ("not_in_room", "history")
    # Sending into it is refused too, and reaches no member.
    error = carol.request("sendMessage", "error", room="secret", message="let me in")
    assert (error["code"], error["action"]) == ("not_in_room", "sendMessage")
    # Nothing of the room reached carol: no message, no history page, no presence.
    assert [e for e in carol.sync() if e.get("room") == "secret"] == []
    assert [e for e in carol.received if e.get("room") == "secret" and e["type"] != "error"] == []
    assert "let me in" not in json.dumps(alice.sync() + bob.sync())


def test_after_leaving_a_room_its_messages_and_history_stop(chat: ChatGateway) -> None:
    alice = chat.client("alice", rooms=["secret"])
    bob = chat.client("bob", rooms=["secret"])
    bob.request("leave", "left", room="secret")

    later = alice.say("now that bob is gone", room="secret")

    assert _of_type(bob.sync(), "message") == []
    assert bob.request("history", "error", room="secret")["code"] == "not_in_room"
    assert alice.request("history", "history", room="secret")["messages"][-1]["id"] == later["id"]


def test_direct_messages_reach_exactly_both_users_connections_with_identities_from_tokens(
    auth_chat: ChatGateway,
) -> None:
    alice = auth_chat.client(token=_token(auth_chat, "alice"))
    bob = auth_chat.client(token=_token(auth_chat, "bob"))
    bob_phone = auth_chat.client(token=_token(auth_chat, "bob"))
    # mallory asks to be called bob: with auth on the token names her, so she is no bob.
    mallory = auth_chat.client("bob", token=_token(auth_chat, "mallory"))
    assert mallory.hello()["name"] == "mallory"

    alice.send("direct", to="bob", message="only for bob", clientId="dm-1")

    ack = alice.next("ack", clientId="dm-1")
    for client in (alice, bob, bob_phone):
        direct = client.next("direct", id=ack["id"])
        assert (direct["from"], direct["to"], direct["text"]) == ("alice", "bob", "only for bob")
    for client in (alice, bob, bob_phone, mallory):
        assert _of_type(client.sync(), "direct") == []  # once each, and none for mallory
    # Reading the conversation back: both sides see it, a third user only her own (empty) ones.
    assert [m["id"] for m in bob.request("history", "history", with_="alice")["messages"]] == [
        ack["id"]
    ]
    assert mallory.request("history", "history", with_="alice")["messages"] == []
    assert mallory.request("history", "history", with_="bob")["messages"] == []
    assert "only for bob" not in json.dumps(mallory.received)


# --- 2. Tokens (401 missing / 403 forged, expired, not a JWT: test_chat_auth.py) ---------------


BAD_TOKENS: dict[str, Callable[[ChatGateway], str]] = {
    "alg-none": lambda chat: _token(chat, "alice", algorithm="none", secret=""),
    "no-exp": lambda chat: _token(chat, "alice", exp=None),
    "no-sub": lambda chat: _token(chat, None),  # type: ignore[arg-type]
    "hs512-with-the-right-secret": lambda chat: _token(chat, "alice", algorithm="HS512"),
    "reserved-name": lambda chat: _token(chat, "system"),
    "html-name": lambda chat: _token(chat, '<b onclick="x">'),
    "not-yet-valid": lambda chat: _token(chat, "alice", nbf=int(time.time()) + 3600),
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_tokens_that_are_not_what_the_server_issues_are_refused_with_403(
    auth_chat: ChatGateway, kind: str
) -> None:
    assert auth_chat.refused_status(token=BAD_TOKENS[kind](auth_chat)) == 403
    assert auth_chat.open_connection_ids() == set()


# --- 3. Nobody speaks as the system ------------------------------------------------------------

IMPERSONATING_NAMES = [
    "system",
    "System",
    "SERVER",
    "wschat",
    "admin",
    'al"ice',
    "alice\nsystem",
    "<b>alice</b>",
    "alice\u202esystem",  # right-to-left override
    "ali\u200bce",  # zero-width space
    '{"type":"error"}',
]


@pytest.mark.parametrize("name", IMPERSONATING_NAMES)
def test_names_that_could_pass_for_the_system_or_break_out_are_refused(
    chat: ChatGateway, name: str
) -> None:
    assert chat.refused_status(name) == 400
    alice = chat.client("alice")
    error = alice.request("setName", "error", name=name)
    assert (error["code"], error["action"]) == ("bad_request", "setName")
    assert alice.hello()["name"] == "alice"


@pytest.mark.parametrize("room", ["System!", 'a"b', "a\nb", "<script>", "lobby,", "a b", "ROOM"])
def test_room_names_that_could_break_out_are_refused(chat: ChatGateway, room: str) -> None:
    alice = chat.client("alice")

    error = alice.request("join", "error", room=room)

    assert (error["code"], error["action"]) == ("bad_request", "join")
    assert alice.hello()["rooms"] == ["lobby"]


EVENT_SHAPED_TEXTS = [
    '{"type":"joined","room":"lobby","name":"system","ts":1,"members":["system"]}',
    '{"type":"error","code":"unauthorized","message":"you are banned"}',
    '"}\n{"type":"message","from":"system","text":"pwned"}',
    '}]},{"type":"direct","from":"admin"',
    "</script><script>alert(1)</script>",
    "\u202emetsys\u202c: rebooting",
    "line one\r\nline two\n\n",
    "nul \x00 inside",
    "e\u0301\u0301\u0301 zero\u200bwidth \ufeff bom",
    '\\u0000 \\n \\" escaped-looking',
]


def test_texts_shaped_like_events_arrive_as_inert_text_in_one_message_event(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")
    assert alice.next("joined")["name"] == "bob"

    for index, text in enumerate(EVENT_SHAPED_TEXTS):
        client_id = f'x-{index}","type":"error'  # a clientId is text too
        alice.send("sendMessage", message=text, clientId=client_id)
        ack = alice.next("ack", clientId=client_id)
        message = bob.next("message", id=ack["id"])
        assert message == {
            "type": "message",
            "id": ack["id"],
            "room": "lobby",
            "from": "alice",
            "text": text,
            "ts": ack["ts"],
            "clientId": client_id,
        }
    # Each text was one message event and nothing else: no joined, error or direct appeared.
    assert bob.sync() == []
    alice_events = alice.sync()
    assert {e["type"] for e in alice_events} <= {"message"}
    assert len(alice_events) == len(EVENT_SHAPED_TEXTS)
    page = bob.request("history", "history", room="lobby", limit=100)
    assert [m["text"] for m in page["messages"]] == EVENT_SHAPED_TEXTS


def test_an_action_name_shaped_like_an_event_comes_back_only_inside_the_error(
    chat: ChatGateway,
) -> None:
    alice = chat.client("alice")
    bob = chat.client("bob")
    alice.next("joined")
    action = '"},{"type":"message","from":"system","text":"pwned'

    alice.send_raw(json.dumps({"action": action}))

    error = alice.error()
    assert (error["code"], error["action"]) == ("unknown_action", action)
    assert alice.sync() == []
    assert bob.sync() == []


def test_every_event_frame_is_one_json_object_with_a_type(chat: ChatGateway) -> None:
    alice = chat.client("alice")
    with connect(chat.url + "?name=bob", open_timeout=TIMEOUT, ping_interval=None) as raw:
        alice.send("sendMessage", message=EVENT_SHAPED_TEXTS[2], clientId="c")
        frame = raw.recv(timeout=TIMEOUT)
        assert isinstance(frame, str)
        event, end = json.JSONDecoder().raw_decode(frame)
        assert end == len(frame)  # one object, nothing after it
        assert event["type"] == "message" and event["text"] == EVENT_SHAPED_TEXTS[2]


# --- 4. The @connections management API --------------------------------------------------------


def _management(
    running: RunningGateway,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGIONS[0],
    config: Config | None = None,
) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=running.management_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1}).merge(config or Config()),
    )


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The inspector app on a gateway that checks SigV4 with CREDENTIALS."""
    events = tmp_path_factory.mktemp("signed") / "events.jsonl"
    config = inspector_config(events)
    config.management_credentials = CREDENTIALS
    with running_gateway(config, events) as running:
        yield running


def _listening_address(running: RunningGateway) -> tuple[str, int]:
    server = running.gateway._server
    assert server is not None
    host, port = running.call(lambda: server.sockets[0].getsockname()[:2])
    return str(host), int(port)


def test_the_gateway_listens_on_loopback_by_default(inspector: RunningGateway) -> None:
    assert GatewayConfig.__dataclass_fields__["host"].default == "127.0.0.1"
    from wschat.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert _listening_address(inspector) == ("127.0.0.1", inspector.gateway.port)


def _handle_http(running: RunningGateway, head: bytes, peer: str) -> bytes:
    parsed = gateway_http.parse_head(head)
    assert parsed is not None
    request = parsed[0]
    future = asyncio.run_coroutine_threadsafe(
        running.gateway.handle_http(request, peer), running.loop
    )
    return future.result(TIMEOUT)


def test_without_credentials_only_loopback_clients_may_use_connections(
    inspector: RunningGateway,
) -> None:
    head = b"GET /local/@connections/AAAAAAAAAAAAAAA= HTTP/1.1\r\nHost: x\r\n\r\n"

    for peer in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert _handle_http(inspector, head, peer).startswith(b"HTTP/1.1 410 "), peer
    for peer in ("192.0.2.7", "10.1.2.3", "2001:db8::1", "::ffff:198.51.100.1", "unix"):
        reply = _handle_http(inspector, head, peer)
        assert reply.startswith(b"HTTP/1.1 403 "), peer
        assert b"x-amzn-ErrorType: ForbiddenException" in reply
    # The chat page and health check stay open to anyone the socket lets in.
    page = _handle_http(inspector, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "192.0.2.7")
    assert page.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("region", REGIONS)
def test_boto3_with_the_right_keys_in_any_region_posts_reads_and_deletes(
    signed: RunningGateway, region: str
) -> None:
    client = _management(signed, region=region)
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        # An id with characters that are percent-encoded twice in the canonical path.
        client.post_to_connection(ConnectionId=connection_id, Data=b'{"signed": true}')
        assert ws.recv(timeout=TIMEOUT) == '{"signed": true}'
        assert client.get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"]
        with pytest.raises(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId="a/b+c=d %25", Data=b"x")
        client.delete_connection(ConnectionId=connection_id)


def _refusal(error: ClientError) -> tuple[int, str, str, str | None]:
    response = error.response
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
        headers.get("x-amzn-errortype"),
    )


@pytest.mark.parametrize(
    ("access_key", "secret_key", "message"),
    [
        pytest.param(ACCESS_KEY, SECRET_KEY + "x", iam.BAD_SIGNATURE, id="wrong-secret"),
        pytest.param("AKIAUNKNOWNKEY000000", SECRET_KEY, iam.UNKNOWN_KEY, id="unknown-key"),
        pytest.param("local", "local", iam.UNKNOWN_KEY, id="the-unsigned-default-keys"),
    ],
)
def test_boto3_with_wrong_keys_gets_403_forbidden_and_nothing_is_delivered(
    signed: RunningGateway, access_key: str, secret_key: str, message: str
) -> None:
    client = _management(signed, access_key, secret_key)
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        for call in (
            lambda: client.post_to_connection(ConnectionId=connection_id, Data=b"forged"),
            lambda: client.get_connection(ConnectionId=connection_id),
            lambda: client.delete_connection(ConnectionId=connection_id),
        ):
            with pytest.raises(client.exceptions.ForbiddenException) as refused:
                call()
            assert _refusal(refused.value) == (
                403,
                "ForbiddenException",
                message,
                "ForbiddenException",
            )
        # Still open, and nothing arrived: the next frame is the echo asked for now.
        ws.send(json.dumps({"action": "echo"}))
        assert "event" in recv_json(ws)


def _signed_request(
    running: RunningGateway,
    method: str,
    connection_id: str,
    body: bytes,
    *,
    at: dt.datetime | None = None,
    service: str = "execute-api",
) -> tuple[str, dict[str, str]]:
    """Path and headers botocore's own SigV4 signer makes for a request (at ``at``, naive UTC:
    what botocore's clock returns)."""
    path = f"/{running.gateway.config.stage}/@connections/{connection_id}"
    request = AWSRequest(method=method, url=running.management_url.rsplit("/", 1)[0] + path)
    request.data = body
    signer = botocore.auth.SigV4Auth(
        BotocoreCredentials(ACCESS_KEY, SECRET_KEY), service, REGIONS[0]
    )
    with pytest.MonkeyPatch.context() as patch:
        if at is not None:
            patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: at)
        signer.add_auth(request)
    return path, dict(request.headers.items())


def _send(
    running: RunningGateway, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", running.gateway.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            json.loads(payload) if payload else {},
        )
    finally:
        connection.close()


def _assert_forbidden(reply: tuple[int, dict[str, str], dict[str, Any]], message: str) -> None:
    status, headers, body = reply
    assert status == 403
    assert headers["x-amzn-errortype"] == "ForbiddenException"
    assert headers["content-type"] == "application/json"
    assert body["message"].startswith(message), body


def test_a_request_botocore_signed_passes_as_sent(signed: RunningGateway) -> None:
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        path, headers = _signed_request(signed, "POST", connection_id, b"as signed")

        assert _send(signed, "POST", path, b"as signed", headers)[0] == 200
        assert ws.recv(timeout=TIMEOUT) == "as signed"


def test_missing_authorization_is_403_missing_authentication_token(signed: RunningGateway) -> None:
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        path, headers = _signed_request(signed, "POST", connection_id, b"hi")
        del headers["Authorization"]

        _assert_forbidden(_send(signed, "POST", path, b"hi", headers), iam.MISSING_TOKEN)
        _assert_forbidden(_send(signed, "GET", path, b"", {}), iam.MISSING_TOKEN)
        # boto3 sending unsigned requests gets the same.
        from botocore import UNSIGNED

        unsigned = _management(signed, config=Config(signature_version=UNSIGNED))
        with pytest.raises(ClientError) as refused:
            unsigned.post_to_connection(ConnectionId=connection_id, Data=b"hi")
        assert _refusal(refused.value)[:3] == (403, "ForbiddenException", iam.MISSING_TOKEN)
        ws.send(json.dumps({"action": "echo"}))
        assert "event" in recv_json(ws)  # nothing was delivered before the echo


def test_a_tampered_body_is_refused_and_not_delivered(signed: RunningGateway) -> None:
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        path, headers = _signed_request(signed, "POST", connection_id, b"pay alice 10")

        reply = _send(signed, "POST", path, b"pay alice 99", headers)

        _assert_forbidden(reply, iam.BAD_SIGNATURE)
        ws.send(json.dumps({"action": "echo"}))
        assert "event" in recv_json(ws)


def test_a_tampered_path_is_refused_and_the_other_connection_gets_nothing(
    signed: RunningGateway,
) -> None:
    with signed.connect() as alice, signed.connect() as bob:
        alice_id = signed.connection_id(alice)
        bob_id = signed.connection_id(bob)
        path, headers = _signed_request(signed, "POST", alice_id, b"for alice")

        reply = _send(signed, "POST", path.replace(alice_id, bob_id), b"for alice", headers)

        _assert_forbidden(reply, iam.BAD_SIGNATURE)
        for ws in (alice, bob):
            ws.send(json.dumps({"action": "echo"}))
            assert "event" in recv_json(ws)
        # A signed DELETE turned into a POST (method tampering) fails the same way.
        path, headers = _signed_request(signed, "DELETE", bob_id, b"")
        _assert_forbidden(_send(signed, "POST", path, b"", headers), iam.BAD_SIGNATURE)


def test_a_request_signed_for_another_service_is_refused(signed: RunningGateway) -> None:
    path, headers = _signed_request(signed, "GET", "AAAAAAAAAAAAAAA=", b"", service="execute-apy")

    _assert_forbidden(_send(signed, "GET", path, b"", headers), "Credential should be scoped")


@pytest.mark.parametrize(
    ("minutes", "message"),
    [(-16, "Signature expired"), (16, "Signature not yet current")],
)
def test_a_date_more_than_15_minutes_off_is_refused(
    signed: RunningGateway, minutes: int, message: str
) -> None:
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    with signed.connect() as ws:
        connection_id = signed.connection_id(ws)
        path, headers = _signed_request(signed, "POST", connection_id, b"old", at=at)

        _assert_forbidden(_send(signed, "POST", path, b"old", headers), message)

        # Within the window, the same kind of request passes.
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes * 0.8)
        path, headers = _signed_request(signed, "POST", connection_id, b"recent", at=at)
        assert _send(signed, "POST", path, b"recent", headers)[0] == 200
        assert ws.recv(timeout=TIMEOUT) == "recent"


def test_functions_get_the_management_credentials_as_their_aws_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = load_api(APPS / "chat_json" / "template.yaml")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-of-other-keys")
    monkeypatch.setenv(iam.ACCESS_KEY_ENV, ACCESS_KEY)
    monkeypatch.setenv(iam.SECRET_KEY_ENV, SECRET_KEY)
    config = GatewayConfig(
        api=api,
        management_credentials=CREDENTIALS,
        function_env={"AWS_ACCESS_KEY_ID": "set-by-a-test", "AWS_SECRET_ACCESS_KEY": "x"},
    )

    env = Gateway(config).lambda_environment().of(api.functions[0])
    plain = Gateway(GatewayConfig(api=api)).lambda_environment().of(api.functions[0])

    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (ACCESS_KEY, SECRET_KEY)
    assert "AWS_SESSION_TOKEN" not in env  # it belonged to other keys
    assert iam.ACCESS_KEY_ENV not in env and iam.SECRET_KEY_ENV not in env
    # Without management credentials the functions keep whatever keys they had.
    assert plain["AWS_SESSION_TOKEN"] == "a-token-of-other-keys"


def test_a_third_party_boto3_app_keeps_working_when_signatures_are_checked(
    tmp_path: Path,
) -> None:
    connections = tmp_path / "connections.json"
    api = load_api(
        APPS / "chat_json" / "template.yaml", parameters={"ConnectionsFile": str(connections)}
    )
    config = GatewayConfig(api=api, management_credentials=CREDENTIALS, shutdown_timeout=5.0)
    with running_gateway(config) as running, running.connect() as alice, running.connect() as bob:
        wait_for(
            lambda: connections.exists() and len(json.loads(connections.read_text())) == 2,
            what="both connections in the app's file",
        )
        before = running.call(lambda: running.gateway.management_http_requests)

        bob.send(json.dumps({"action": "sendmessage", "data": "signed by the function"}))

        assert alice.recv(timeout=TIMEOUT) == "signed by the function"
        assert bob.recv(timeout=TIMEOUT) == "signed by the function"
        # Two boto3 posts over HTTP, each checked.
        assert running.call(lambda: running.gateway.management_http_requests) == before + 2
        assert "ForbiddenException" not in running.logs.text


def test_wschat_handlers_post_through_the_fast_path_when_signatures_are_checked(
    tmp_path: Path,
) -> None:
    database = tmp_path / "wschat.sqlite3"
    config = GatewayConfig(
        api=load_api(PROJECT_TEMPLATE),
        function_env={"WSCHAT_STORE": "sqlite", "WSCHAT_SQLITE_PATH": str(database)},
        management_credentials=CREDENTIALS,
        shutdown_timeout=5.0,
    )
    from tests.support.chat_client import ChatClient

    with running_gateway(config) as running, ExitStack() as stack:
        alice: ChatClient = stack.enter_context(ChatClient.connect(running.url, name="alice"))
        bob: ChatClient = stack.enter_context(ChatClient.connect(running.url, name="bob"))
        alice.say("over the pipe")
        assert bob.next("message")["text"] == "over the pipe"
        assert running.call(lambda: running.gateway.management_http_requests) == 0


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                if len(address) == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add(address)
    return found


@pytest.mark.parametrize("how", ["option", "environment"])
def test_wschat_serve_listens_on_loopback_and_checks_signatures_when_given_keys(
    tmp_path: Path, how: str
) -> None:
    connections = tmp_path / "connections.json"
    args = [
        "--template",
        str(APPS / "chat_json" / "template.yaml"),
        "--parameter",
        f"ConnectionsFile={connections}",
        "--data-dir",
        str(tmp_path),
    ]
    env = {iam.ACCESS_KEY_ENV: "", iam.SECRET_KEY_ENV: ""}
    if how == "option":
        args += ["--management-credentials", f"{ACCESS_KEY}:{SECRET_KEY}"]
    else:
        env = {iam.ACCESS_KEY_ENV: ACCESS_KEY, iam.SECRET_KEY_ENV: SECRET_KEY}
    with wschat_serve(args, tmp_path, env) as server, ExitStack() as stack:
        port = int(re.search(r":(\d+)/", server.websocket_url).group(1))  # type: ignore[union-attr]
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert any(ACCESS_KEY in line for line in server.stdout_lines)
        assert SECRET_KEY not in "\n".join(server.stdout_lines) + server.stderr
        alice = stack.enter_context(connect(server.websocket_url, open_timeout=TIMEOUT))
        wait_for(lambda: connections.exists(), what="alice in the app's file")
        [connection_id] = json.loads(connections.read_text())

        def client(access_key: str, secret_key: str) -> Any:
            return boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=server.management_url,
                region_name="ap-northeast-2",
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
            )

        client(ACCESS_KEY, SECRET_KEY).post_to_connection(ConnectionId=connection_id, Data=b"ok")
        assert alice.recv(timeout=TIMEOUT) == "ok"
        wrong = client(ACCESS_KEY, "not-the-secret")
        with pytest.raises(wrong.exceptions.ForbiddenException):
            wrong.post_to_connection(ConnectionId=connection_id, Data=b"forged")
        # The app's own boto3 client signs with the keys the gateway handed it.
        alice.send(json.dumps({"action": "sendmessage", "data": "from the app"}))
        assert alice.recv(timeout=TIMEOUT) == "from the app"


def test_wschat_serve_with_half_the_credentials_in_the_environment_exits_2(
    tmp_path: Path,
) -> None:
    from tests.integration.conftest import wschat_command

    env = {**os.environ, iam.ACCESS_KEY_ENV: ACCESS_KEY, iam.SECRET_KEY_ENV: ""}
    completed = subprocess.run(
        [*wschat_command(), "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert iam.SECRET_KEY_ENV in completed.stderr


# --- 5. checkov on template.yaml ---------------------------------------------------------------

CHECKOV_CONFIG = REPO / ".checkov.yaml"
# checkov's own virtualenv (its pins would downgrade boto3 in .venv): scripts/install-checkov.sh.
CHECKOV = REPO / ".venv" / "tools" / "checkov" / "bin" / "checkov"
_SKIP_LINE = re.compile(r"^\s*-\s*(CKV2?_AWS_\d+)\s*(?:#\s*(.*))?$")


@pytest.fixture(scope="module")
def checkov() -> Path:
    """checkov's command, installed first if ``make test`` (scripts/test-deps.sh) has not."""
    install = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-checkov.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0 and CHECKOV.exists(), install.stderr[-3000:]
    return CHECKOV


def _checkov(command: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """checkov on template.yaml, run in ``cwd``: it reads a .checkov.yaml found there."""
    # --skip-download: no call to Prisma Cloud for guidelines (the run is offline).
    return subprocess.Popen(
        [str(command), "-f", str(REPO / "template.yaml"), "--skip-download", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"},
    )


def _skips_with_reasons() -> dict[str, str]:
    """Each check .checkov.yaml skips, with the comment that gives its reason."""
    skips: dict[str, str] = {}
    comment: list[str] = []
    for line in CHECKOV_CONFIG.read_text().splitlines():
        stripped = line.strip()
        match = _SKIP_LINE.match(line)
        if match:
            skips[match.group(1)] = " ".join([*comment, match.group(2) or ""]).strip()
            comment = []
        elif stripped.startswith("#") and line.startswith("  "):
            comment.append(stripped.lstrip("# "))
        else:
            comment = []
    return skips


@pytest.mark.timeout(600)  # the first run may install checkov
def test_checkov_fails_no_check_that_checkov_yaml_does_not_skip_with_a_reason(
    checkov: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load(CHECKOV_CONFIG.read_text())
    skips = _skips_with_reasons()
    assert set(config["skip-check"]) == set(skips)
    for check, reason in skips.items():
        assert len(reason) >= 60, f"{check}: give the reason for skipping it ({reason!r})"

    # Without the skips: run somewhere checkov finds no .checkov.yaml.
    everything = _checkov(
        checkov, tmp_path, "--framework", "cloudformation", "--compact", "--quiet", "-o", "json"
    )
    configured = _checkov(checkov, REPO, "--config-file", str(CHECKOV_CONFIG), "-o", "json")
    out, err = everything.communicate(timeout=120)
    configured_out, configured_err = configured.communicate(timeout=120)

    report = json.loads(out)
    assert report["summary"]["parsing_errors"] == 0, err
    assert report["summary"]["resource_count"] > 30  # it read the whole template
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexplained = sorted(
        f"{check} on {resource}" for check, resource in failed if check not in skips
    )
    assert not unexplained, "checkov failed checks .checkov.yaml does not skip:\n" + "\n".join(
        unexplained
    )
    # No stale skips: each one is still needed (a fixed template should drop its skip).
    assert {check for check, _ in failed} == set(skips)
    # And with the file as its configuration, checkov passes as it stands.
    assert configured.returncode == 0, configured_out[-2000:] + configured_err[-2000:]
    configured_report = json.loads(configured_out)
    assert configured_report["summary"]["failed"] == 0
    assert configured_report["summary"]["passed"] > 0

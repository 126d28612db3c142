"""wschat's SigV4 signer against botocore's: the same Authorization header, byte for byte.

The references: ``botocore.auth.SigV4Auth`` on an ``AWSRequest`` carrying the headers wschat
sends (none but what the signer adds), and the request boto3's own ``post_to_connection``
sends, caught before it leaves; both signed at the same instant with the same credentials.
No I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from wschat.delivery import aws
from wschat.delivery.sigv4 import (
    Credentials,
    Signer,
    amz_date,
    canonical_uri,
    payload_hash,
)

MOMENT = dt.datetime(2024, 5, 1, 12, 34, 56)  # naive UTC, as botocore's clock returns it
TIMESTAMP = "20240501T123456Z"
REGION = "ap-northeast-2"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documentation example, not a real key
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaDmFwLW5vcnRoZWFzdC0yIkcwRQIhAK+token/with+and="
ENDPOINT = "https://k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com/prod"
IDS = ["L0SM9cOFvHcCIhw=", "L0SNGeB+vHcCIhw=", "a/b+c=d", "spaces and %25", "안녕", "~-._"]


@pytest.fixture(autouse=True)
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: MOMENT)


def botocore_headers(
    url: str, body: bytes, credentials: Credentials, region: str, method: str = "POST"
) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers={})
    signer = botocore.auth.SigV4Auth(
        BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        "execute-api",
        region,
    )
    signer.add_auth(request)
    return dict(request.headers.items())


def wschat_headers(
    url: str, body: bytes, credentials: Credentials, region: str, method: str = "POST"
) -> dict[str, str]:
    path = urlsplit(url).path
    return Signer("execute-api", region).headers(
        method, aws._host_header(url), path, payload_hash(body), credentials, TIMESTAMP
    )


def connection_url(endpoint: str, connection_id: str) -> str:
    """The URL ApiGatewaySender posts to for ``connection_id``."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}{aws.connection_path(parts.path, connection_id)}"


@pytest.mark.parametrize("connection_id", IDS)
@pytest.mark.parametrize("token", [None, TOKEN])
@pytest.mark.parametrize(
    "endpoint",
    [
        ENDPOINT,
        "http://127.0.0.1:8001/prod",
        "https://chat.example.com:443/v1/ws",  # default port: not part of the Host
        "http://LocalHost:80/dev",
    ],
)
def test_signature_matches_botocore(endpoint: str, token: str | None, connection_id: str) -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, token)
    url = connection_url(endpoint, connection_id)
    body = '{"type":"message","text":"안녕하세요"}'.encode()

    mine = wschat_headers(url, body, credentials, "ap-northeast-2")
    reference = botocore_headers(url, body, credentials, "ap-northeast-2")

    assert mine["Authorization"] == reference["Authorization"]
    assert mine["X-Amz-Date"] == reference["X-Amz-Date"] == TIMESTAMP
    assert mine.get("X-Amz-Security-Token") == reference.get("X-Amz-Security-Token") == token
    assert mine["Host"] == botocore.auth._host_from_url(url)


def test_signature_scopes_and_signs_what_it_should() -> None:
    credentials = Credentials("AKID", "secret", "token")
    headers = wschat_headers(connection_url(ENDPOINT, IDS[0]), b"x", credentials, "eu-west-1")

    assert headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKID/20240501/eu-west-1/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
    )
    without_token = wschat_headers(ENDPOINT + "/@connections/a", b"x", Credentials("A", "s"), "r")
    assert "SignedHeaders=host;x-amz-date, " in without_token["Authorization"]
    assert "X-Amz-Security-Token" not in without_token


@settings(max_examples=200, deadline=None)
@given(
    connection_id=st.text(min_size=1, max_size=40),
    body=st.binary(max_size=300),
    secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    token=st.none() | st.text(alphabet="ABCabc012+/=", min_size=1, max_size=60),
    region=st.sampled_from(["ap-northeast-2", "us-east-1", "cn-north-1"]),
)
def test_signature_matches_botocore_for_any_id_body_and_credentials(
    connection_id: str, body: bytes, secret: str, token: str | None, region: str
) -> None:
    credentials = Credentials("AKIDEXAMPLE", secret, token)
    url = connection_url("http://127.0.0.1:9000/prod", connection_id)
    mine = wschat_headers(url, body, credentials, region)
    assert (
        mine["Authorization"] == botocore_headers(url, body, credentials, region)["Authorization"]
    )


def test_get_and_delete_shaped_requests_match_botocore_too() -> None:
    credentials = Credentials("AKID", "secret", TOKEN)
    url = connection_url(ENDPOINT, IDS[1])
    for method in ("GET", "DELETE"):
        mine = wschat_headers(url, b"", credentials, "ap-northeast-2", method)
        reference = botocore_headers(url, b"", credentials, "ap-northeast-2", method)
        assert mine["Authorization"] == reference["Authorization"]


# -- the wire path: what the sender sends is what boto3's client sends ---------------------


class Sent(Exception):
    pass


@pytest.mark.parametrize("connection_id", IDS)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_a_post_is_the_request_boto3s_client_sends(connection_id: str, token: str | None) -> None:
    """boto3's own post_to_connection, caught before it leaves: the same path, and the same
    signed headers (host, x-amz-date, x-amz-security-token), so the same signature."""
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=ENDPOINT,
        region_name="ap-northeast-2",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=token,
    )
    sent: list[Any] = []

    def before_send(request: Any, **kwargs: Any) -> None:
        sent.append(request)
        raise Sent  # nothing goes over the network

    client.meta.events.register("before-send", before_send)
    body = b'{"type":"message"}'
    with pytest.raises(Sent):
        client.post_to_connection(ConnectionId=connection_id, Data=body)
    client.close()

    boto3_request = sent[0]
    path = urlsplit(boto3_request.url).path
    assert path == aws.connection_path("/prod", connection_id)
    assert path == aws.connection_path("/prod/", connection_id)
    mine = wschat_headers(
        boto3_request.url, body, Credentials(ACCESS_KEY, SECRET_KEY, token), REGION
    )
    assert mine["Authorization"] == boto3_request.headers["Authorization"].decode()


@pytest.mark.parametrize(
    "path",
    [
        "/prod/@connections/L0SM9cOFvHcCIhw%3D",
        "/prod//@connections/x",
        "/a/./b/../c/",
        "/../x",
        "/",
        "",
        "/stage/@connections/%E3%85%8E~-._",
    ],
)
def test_canonical_uri_is_botocores(path: str) -> None:
    reference = botocore.auth.SigV4Auth(None, "execute-api", "r")._normalize_url_path(path)
    assert canonical_uri(path) == reference


# -- the signing key and the region -------------------------------------------------------


def test_signing_key_is_derived_once_per_day_and_secret() -> None:
    signer = Signer("execute-api", "ap-northeast-2")
    key = signer.signing_key("secret", "20240501")

    assert signer.signing_key("secret", "20240501") is key
    assert signer.signing_key("secret", "20240502") != key
    assert signer.signing_key("rotated", "20240502") != signer.signing_key("secret", "20240502")


def test_a_signature_for_the_next_day_uses_that_days_key() -> None:
    credentials = Credentials("AKID", "secret")
    signer = Signer("execute-api", "ap-northeast-2")
    first = signer.headers(
        "POST", "h", "/p/@connections/a", payload_hash(b""), credentials, TIMESTAMP
    )
    second = signer.headers(
        "POST", "h", "/p/@connections/a", payload_hash(b""), credentials, "20240502T000001Z"
    )
    assert "/20240502/" in second["Authorization"]
    assert (
        first["Authorization"].split("Signature=")[1]
        != second["Authorization"].split("Signature=")[1]
    )


def test_amz_date_is_utc() -> None:
    assert amz_date(0) == "19700101T000000Z"
    assert amz_date(1714566896) == TIMESTAMP


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com", "ap-northeast-2"),
        ("abc123.execute-api.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("abc123.execute-api.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("ABC123.Execute-Api.EU-WEST-1.amazonaws.com", "eu-west-1"),
    ],
)
def test_region_comes_from_an_execute_api_host(
    monkeypatch: pytest.MonkeyPatch, host: str, region: str
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert aws.region_for(host) == region


def test_region_of_other_hosts_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert aws.region_for("127.0.0.1") is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert aws.region_for("chat.example.com") == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", "ap-northeast-2")  # Lambda's own variable wins
    assert aws.region_for("127.0.0.1") == "ap-northeast-2"
    assert aws.region_for("evil.execute-api.us-east-1.amazonaws.com.example.com") == (
        "ap-northeast-2"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/prod",
        "https://Chat.Example.com:443/prod",
        "http://example.com:80/prod",
        "https://example.com:8443/prod",
        "http://[::1]:9000/prod",
        "https://user:pw@example.com/prod",
    ],
)
def test_host_header_is_botocores(url: str) -> None:
    assert aws._host_header(url) == botocore.auth._host_from_url(url)

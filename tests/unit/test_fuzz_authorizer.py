"""The ``$connect`` authorizer function under fuzzing (``wschat.handlers.authorize``), with both
kinds of sign-in on (the stage's HS256 secret and an OIDC issuer on 127.0.0.1 with real RSA and
EC keys, tests/support/jwks_server.py).

Whatever the event (any query string, any token: text, JWT-shaped strings of random segments,
headers and claims of any JSON, valid tokens with characters changed; events missing their
parts or holding other types), the function either returns a well-formed policy or raises
``Exception("Unauthorized")`` (API Gateway's 401), never any other error (a 500). It allows
only a token that is really valid (one of those the issuer or the secret signed, unchanged),
and nothing it prints holds the token or its signature.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.events import lambda_context
from tests.support.fuzz import json_values, odd_characters, odd_text
from tests.support.jwks_server import (
    CLIENT_ID,
    METHOD_ARN,
    IssuerServer,
    access_claims,
    authorizer_event,
    ec_key,
    id_claims,
    rsa_key,
)

from wschat.gateway.authorizers import decide
from wschat.handlers import authorize

SECRET = "stage-secret-for-hs256-at-least-32-bytes"
# Function-scoped fixtures (capsys) are set up once per test, not per example: each example
# reads what the function printed since the last.
AUTHORIZER_FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Signed:
    """The issuer's server and the valid tokens of the module's settings."""

    issuer: IssuerServer
    tokens: tuple[str, ...]


@pytest.fixture(scope="module")
def signed() -> Iterator[Signed]:
    """Sign-in on with both the secret and the issuer, for the whole module; the verifier warm."""
    with pytest.MonkeyPatch.context() as env, IssuerServer(rsa_key("rsa-1"), ec_key("ec-1")) as s:
        for name in [name for name in os.environ if name.startswith("WSCHAT_")]:
            env.delenv(name)
        env.setenv("WSCHAT_AUTH_SECRET", SECRET)
        env.setenv("WSCHAT_OIDC_ISSUER", s.url)
        env.setenv("WSCHAT_OIDC_AUDIENCE", CLIENT_ID)
        authorize.verifier.cache_clear()
        tokens = (
            rsa_key("rsa-1").sign(id_claims(s.url)),
            ec_key("ec-1").sign(id_claims(s.url, preferred_username="minji.k")),
            rsa_key("rsa-1").sign(access_claims(s.url)),
            jwt.encode({"sub": "minji", "exp": id_claims(s.url)["exp"]}, SECRET, "HS256"),
        )
        yield Signed(s, tokens)
        authorize.verifier.cache_clear()


@pytest.fixture
def printed(stdout_lines: Any, capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    capsys.readouterr()
    return capsys


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_json(value: Any) -> str:
    return b64(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


# --- tokens ---------------------------------------------------------------------------------

base64url_text = st.text(alphabet=BASE64URL, max_size=60)
segments = (
    base64url_text
    | st.binary(max_size=48).map(b64)
    | json_values.map(b64_json)
    | st.text(alphabet=BASE64URL + "=.+/ \n", max_size=20)
    | odd_text
)
jwt_shaped = st.lists(segments, min_size=1, max_size=5).map(".".join)
headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["RS256", "ES256", "HS256", "none", "RS512", "PS256"]) | json_values},
    optional={
        "kid": st.sampled_from(["rsa-1", "ec-1", "rsa-2", ""]) | json_values,
        "typ": st.just("JWT") | json_values,
        "crit": json_values,
        "b64": st.booleans(),
    },
)
claims = st.dictionaries(
    st.sampled_from(["sub", "iss", "aud", "exp", "nbf", "iat", "token_use", "client_id"])
    | odd_text,
    json_values,
    max_size=6,
)
forged_jwts = st.builds(
    lambda header, body, signature: f"{b64_json(header)}.{b64_json(body)}.{signature}",
    headers,
    claims,
    base64url_text | st.binary(min_size=32, max_size=256).map(b64),
)
tokens = odd_text | st.text(max_size=200) | jwt_shaped | forged_jwts


@st.composite
def mutations(draw: st.DrawFn, token: str) -> str:
    """``token`` with a few characters replaced, inserted, removed or bit-flipped, or a
    segment padded (base64's ``=``: the same bytes spelled otherwise)."""
    changed = list(token)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(changed)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "flip", "pad"]))
        char = draw(st.sampled_from(BASE64URL + ".=") | odd_characters)
        if op == "pad":
            ends = [i for i, c in enumerate(changed) if c == "."] + [len(changed)]
            end = draw(st.sampled_from(ends))
            changed[end:end] = "=" * draw(st.integers(min_value=1, max_value=3))
        elif op == "insert":
            changed.insert(at, char)
        elif at == len(changed):
            continue
        elif op == "replace":
            changed[at] = char
        elif op == "delete":
            del changed[at]
        else:
            changed[at] = chr(ord(changed[at]) ^ (1 << draw(st.integers(0, 6))))
    return "".join(changed)


# --- events ---------------------------------------------------------------------------------

PARTS = ("requestContext", "queryStringParameters", "methodArn", "headers", "type")


@st.composite
def reshaped(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with some of its parts gone or replaced by any JSON."""
    for part in draw(st.lists(st.sampled_from(PARTS), unique=True, max_size=3)):
        if draw(st.booleans()):
            event.pop(part, None)
        else:
            event[part] = draw(json_values)
    if draw(st.booleans()):
        query = event.get("queryStringParameters")
        if isinstance(query, dict):
            query.update(draw(st.dictionaries(odd_text | st.just("token"), json_values)))
    return event


# --- what any answer must be ----------------------------------------------------------------


def answer_of(event: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any] | None:
    """The function's answer to ``event`` (None for Unauthorized), checked for form; and what
    it printed, checked to hold no token."""
    try:
        answer = authorize.lambda_handler(event, lambda_context("wschat-authorize"))
    except Exception as exc:
        assert type(exc) is Exception and str(exc) == "Unauthorized", repr(exc)
        answer = None
    output = capsys.readouterr()
    assert "Logging error" not in output.err, output.err
    query = event.get("queryStringParameters")
    token = query.get("token") if isinstance(query, dict) else None
    if isinstance(token, str):
        assert_holds_no_token(output.out + output.err, token)
    if answer is not None:
        arn = event.get("methodArn")
        assert_well_formed(answer, arn if isinstance(arn, str) else "")
    return answer


def assert_holds_no_token(output: str, token: str) -> None:
    # Short texts turn up in any log line by chance ("a", "info"); real tokens are long.
    if len(token) >= 20:
        for spelled in (
            token,
            json.dumps(token)[1:-1],
            json.dumps(token, ensure_ascii=False)[1:-1],
        ):
            assert spelled not in output
    for segment in token.split(".")[1:]:
        if len(segment) >= 20:
            assert segment not in output


def assert_well_formed(answer: dict[str, Any], arn: str) -> None:
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    assert answer["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}],
    }
    assert isinstance(answer["principalId"], str) and answer["principalId"]
    if effect == "Deny":
        assert answer == authorize.policy("anonymous", "Deny", arn)
        return
    assert effect == "Allow"
    assert set(answer) == {"principalId", "policyDocument", "context"}
    context = answer["context"]
    assert set(context) <= {"name", "sub", "iss"} and {"name", "sub"} <= set(context)
    assert all(isinstance(value, str) and value for value in context.values())
    assert answer["principalId"] == context["sub"]
    if arn == METHOD_ARN:
        assert decide(answer, arn).allowed


def allowed(answer: dict[str, Any] | None) -> bool:
    return answer is not None and answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


# --- the properties ---------------------------------------------------------------------------


@AUTHORIZER_FUZZ
@given(token=tokens)
def test_any_token_is_denied_or_unauthorized_unless_it_is_a_valid_one(
    token: str, signed: Signed, printed: pytest.CaptureFixture[str]
) -> None:
    answer = answer_of(authorizer_event(token), printed)

    assert allowed(answer) == (token in signed.tokens)


@AUTHORIZER_FUZZ
@given(data=st.data(), which=st.integers(min_value=0, max_value=3))
def test_a_valid_token_changed_anywhere_is_never_allowed(
    data: st.DataObject, which: int, signed: Signed, printed: pytest.CaptureFixture[str]
) -> None:
    original = signed.tokens[which]
    token = data.draw(mutations(original))

    answer = answer_of(authorizer_event(token), printed)

    assert allowed(answer) == (token == original)


@AUTHORIZER_FUZZ
@given(data=st.data(), token=st.none() | tokens | st.sampled_from(range(4)))
def test_events_of_any_shape_get_a_policy_or_unauthorized(
    data: st.DataObject,
    token: str | int | None,
    signed: Signed,
    printed: pytest.CaptureFixture[str],
) -> None:
    if isinstance(token, int):
        token = signed.tokens[token]
    event = data.draw(reshaped(authorizer_event(token)))

    answer = answer_of(event, printed)

    query = event.get("queryStringParameters")
    sent = query.get("token") if isinstance(query, dict) else None
    # The decision is the token's alone: a valid one is allowed whatever else the event holds.
    assert allowed(answer) == (isinstance(sent, str) and sent in signed.tokens)


@AUTHORIZER_FUZZ
@given(query=st.none() | json_values | st.dictionaries(odd_text, json_values))
def test_any_query_string_without_a_token_string_is_unauthorized(
    query: Any, signed: Signed, printed: pytest.CaptureFixture[str]
) -> None:
    event = authorizer_event()
    event["queryStringParameters"] = query
    token = query.get("token") if isinstance(query, dict) else None

    answer = answer_of(event, printed)

    if not isinstance(token, str) or not token:
        assert answer is None
    else:
        assert not allowed(answer)


def test_the_valid_tokens_are_allowed(signed: Signed, printed: pytest.CaptureFixture[str]) -> None:
    """The properties above mean something: each valid token, sent as is, is allowed."""
    for token in signed.tokens:
        assert allowed(answer_of(authorizer_event(token), printed))
    assert signed.issuer.requests["/jwks.json"] >= 1

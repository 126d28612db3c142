"""Bad tokens on ``$connect``, through the authorizer function (``wschat.handlers.authorize``)
as API Gateway calls it: real REQUEST authorizer events, real RSA and EC keys, the issuer's
discovery document and JWKS from a real HTTP server on 127.0.0.1 (tests/support/jwks_server.py).

What API Gateway makes of each answer: an Allow policy lets the handshake on (its ``context``
rides on every later event); a Deny is a 403; ``Exception("Unauthorized")`` a 401; any other
failure of the function (AuthUnavailable, AuthMisconfigured) a 500. Whatever the answer, the
function's output (powertools' JSON log lines, EMF metrics) holds neither the token nor its
signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from tests.support.events import lambda_context
from tests.support.jwks_server import (
    CLIENT_ID,
    METHOD_ARN,
    IssuerServer,
    SigningKey,
    access_claims,
    authorizer_event,
    ec_key,
    id_claims,
    rsa_key,
)

from wschat import auth
from wschat.auth import MAX_TOKEN_CHARS, AuthMisconfigured, AuthUnavailable
from wschat.gateway.authorizers import decide, failure
from wschat.handlers import authorize

SECRET = "stage-secret-for-hs256-at-least-32-bytes"
OTHER_SECRET = "someone-elses-secret-of-at-least-32-bytes"
SUBJECT = "7c1e9a52-4b8d-4f0e-9a61-3d2b5c8e0f14"

Printed = Callable[[], str]


# --- keys, the issuer, settings -------------------------------------------------------------


def issuer_rsa() -> SigningKey:
    return rsa_key("rsa-1")


def issuer_ec() -> SigningKey:
    return ec_key("ec-1")


def rotated_rsa() -> SigningKey:
    return rsa_key("rsa-2", index=2)


def attacker_rsa() -> SigningKey:
    """Another key that claims the issuer's kid."""
    return rsa_key("rsa-1", index=1)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No WSCHAT_* setting of the developer's, and a cold verifier before and after."""
    for name in [name for name in os.environ if name.startswith("WSCHAT_")]:
        monkeypatch.delenv(name)
    authorize.verifier.cache_clear()
    yield monkeypatch
    authorize.verifier.cache_clear()


@pytest.fixture
def issuer(clean_env: pytest.MonkeyPatch) -> Iterator[IssuerServer]:
    with IssuerServer(issuer_rsa(), issuer_ec()) as server:
        yield server


@pytest.fixture
def oidc(issuer: IssuerServer, clean_env: pytest.MonkeyPatch) -> IssuerServer:
    """Sign-in with the issuer: ``WSCHAT_OIDC_ISSUER`` (discovery under it) and the app client."""
    clean_env.setenv("WSCHAT_OIDC_ISSUER", issuer.url)
    clean_env.setenv("WSCHAT_OIDC_AUDIENCE", CLIENT_ID)
    return issuer


@pytest.fixture
def hs256(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WSCHAT_AUTH_SECRET", SECRET)


@pytest.fixture
def printed(stdout_lines: Any, capsys: pytest.CaptureFixture[str]) -> Printed:
    """Everything the function wrote (stdout: log lines and metrics; stderr) since last read."""

    def read() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err

    return read


class Clock:
    """The verifier's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(oidc: IssuerServer) -> Clock:
    moved = Clock()
    authorize.verifier().clock = moved
    return moved


# --- calling the authorizer ---------------------------------------------------------------


def call(token: str | None) -> dict[str, Any]:
    return authorize.lambda_handler(authorizer_event(token), lambda_context("wschat-authorize"))


def assert_holds_no_token(output: str, token: str | None) -> None:
    if not token:
        return
    spelled = {token, json.dumps(token, ensure_ascii=False)[1:-1], json.dumps(token)[1:-1]}
    for text in spelled:
        assert text not in output
    for segment in token.split(".")[1:]:  # the payload and the signature
        if len(segment) >= 16:
            assert segment not in output


def allowed(token: str, printed: Printed) -> dict[str, Any]:
    """The Allow answer's context; the answer is what API Gateway takes for an Allow."""
    answer = call(token)
    output = printed()
    assert_holds_no_token(output, token)
    assert "connect allowed" in output
    decision = decide(answer, METHOD_ARN)
    assert decision.allowed, decision.reason
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}
    ]
    context: dict[str, Any] = answer["context"]
    assert answer["principalId"] == context["sub"]
    assert decision.authorizer == {"principalId": context["sub"], **context}
    return context


def refused(token: str | None, printed: Printed) -> int:
    """The status API Gateway answers the handshake with: 403 for a Deny, 401 for
    Unauthorized (the test fails on an Allow or any other error)."""
    try:
        answer = call(token)
    except Exception as exc:
        assert type(exc) is Exception and str(exc) == "Unauthorized", repr(exc)
        status = failure(str(exc)).status
    else:
        assert answer == authorize.policy("anonymous", "Deny", METHOD_ARN)
        status = decide(answer, METHOD_ARN).status
    output = printed()
    assert "connect refused" in output  # the capture sees the function's log lines
    assert_holds_no_token(output, token)
    return status


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_signed(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes) -> str:
    """An HS256 token made without PyJWT (which refuses a PEM as an HMAC key)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def now() -> int:
    return int(time.time())


# --- tokens the issuer signed ---------------------------------------------------------------


def test_a_valid_rs256_id_token_is_allowed_with_name_sub_and_iss(
    oidc: IssuerServer, printed: Printed
) -> None:
    context = allowed(issuer_rsa().sign(id_claims(oidc.url)), printed)

    assert context == {"name": "minji", "sub": SUBJECT, "iss": oidc.url}


def test_a_valid_es256_id_token_is_allowed(oidc: IssuerServer, printed: Printed) -> None:
    context = allowed(issuer_ec().sign(id_claims(oidc.url)), printed)

    assert context == {"name": "minji", "sub": SUBJECT, "iss": oidc.url}


def test_a_cognito_access_token_names_the_client_in_client_id_and_is_allowed(
    oidc: IssuerServer, printed: Printed
) -> None:
    claims = access_claims(oidc.url)
    assert "aud" not in claims

    assert allowed(issuer_rsa().sign(claims), printed)["name"] == "minji"


def test_an_audience_list_holding_the_client_is_allowed(
    oidc: IssuerServer, printed: Printed
) -> None:
    token = issuer_rsa().sign(id_claims(oidc.url, aud=["another-client", CLIENT_ID]))

    assert allowed(token, printed)["sub"] == SUBJECT


def test_the_user_name_names_the_user_whatever_preferred_username_and_email_say(
    oidc: IssuerServer, printed: Printed
) -> None:
    # A signed-in Cognito user can set their own preferred_username and email to anything,
    # another user's name included; cognito:username is the pool's, unique and fixed.
    claims = id_claims(oidc.url, preferred_username="jisoo", email="jisoo@example.com")

    assert allowed(issuer_rsa().sign(claims), printed)["name"] == "minji"


def test_the_name_is_the_first_valid_name_claim(oidc: IssuerServer, printed: Printed) -> None:
    not_a_name = {"cognito:username": "two words"}
    preferred = id_claims(oidc.url, preferred_username="minji.k", **not_a_name)
    from_email = id_claims(oidc.url, **not_a_name)  # minji@example.com, verified

    assert allowed(issuer_rsa().sign(preferred), printed)["name"] == "minji.k"
    assert allowed(issuer_rsa().sign(from_email), printed)["name"] == "minji"


@pytest.mark.parametrize("verified", [False, "false", None, ...], ids=repr)
def test_an_unverified_email_names_nobody(
    verified: Any, oidc: IssuerServer, printed: Printed
) -> None:
    claims = id_claims(oidc.url, email_verified=verified, **{"cognito:username": "two words"})

    assert refused(issuer_rsa().sign(claims), printed) == 403


def test_the_name_claim_can_be_chosen(
    oidc: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_OIDC_NAME_CLAIM", "nickname")
    token = issuer_rsa().sign(id_claims(oidc.url, nickname="mj"))

    assert allowed(token, printed)["name"] == "mj"


def test_an_explicit_metadata_url_finds_the_keys_of_an_issuer_under_another_url(
    issuer: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    pool = "https://cognito-idp.ap-northeast-2.amazonaws.com/ap-northeast-2_Xy12AbCdE"
    clean_env.setenv("WSCHAT_OIDC_ISSUER", pool)
    clean_env.setenv("WSCHAT_OIDC_AUDIENCE", CLIENT_ID)
    clean_env.setenv("WSCHAT_OIDC_METADATA_URL", issuer.metadata_url)

    assert allowed(issuer_rsa().sign(id_claims(pool)), printed)["iss"] == pool
    assert issuer.requests["/.well-known/openid-configuration"] == 1


# --- the bad-token matrix --------------------------------------------------------------------

Case = Callable[[IssuerServer], str]


def _forged(server: IssuerServer) -> str:
    return attacker_rsa().sign(id_claims(server.url))


def _forged_ec(server: IssuerServer) -> str:
    return ec_key("ec-1", index=1).sign(id_claims(server.url))


def _expired(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, iat=now() - 7200, exp=now() - 60))


def _not_yet_valid(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, nbf=now() + 600))


def _issued_in_the_future(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, iat=now() + 600, exp=now() + 4200))


def _without_exp(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, exp=...))


def _exp_not_a_number(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, exp="tomorrow"))


def _wrong_audience(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, aud="another-client"))


def _audience_list_without_the_client(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, aud=["another-client", "a-third"]))


def _no_audience(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, aud=...))


def _wrong_issuer(server: IssuerServer) -> str:
    other = "https://cognito-idp.ap-northeast-2.amazonaws.com/ap-northeast-2_Other1234"
    return issuer_rsa().sign(id_claims(other))


def _no_issuer(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, iss=...))


def _alg_none(server: IssuerServer) -> str:
    return jwt.encode(id_claims(server.url), None, "none", headers={"kid": "rsa-1"})


def _alg_none_spelled_otherwise(server: IssuerServer) -> str:
    header = {"alg": "None", "kid": "rsa-1", "typ": "JWT"}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(id_claims(server.url)).encode())}."


def _hs256_with_the_public_pem(server: IssuerServer) -> str:
    """The classic confusion: HMAC keyed with the issuer's public key, which anyone has."""
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    return hand_signed(header, id_claims(server.url), issuer_rsa().public_pem)


def _hs256_with_the_public_jwk(server: IssuerServer) -> str:
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    key = json.dumps(issuer_rsa().jwk()).encode()
    return hand_signed(header, id_claims(server.url), key)


def _es256_header_on_the_rsa_kid(server: IssuerServer) -> str:
    """Signed with an EC key but naming the issuer's RSA key."""
    return ec_key("rsa-1", index=1).sign(id_claims(server.url))


def _unknown_kid(server: IssuerServer) -> str:
    return rsa_key("rsa-unknown", index=3).sign(id_claims(server.url))


def _no_kid(server: IssuerServer) -> str:
    return jwt.encode(id_claims(server.url), issuer_rsa().private_key, "RS256")


def _kid_not_a_string(server: IssuerServer) -> str:
    header = {"alg": "RS256", "kid": ["rsa-1"]}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(b'{}')}"
    return f"{signing_input}.{b64(b'x' * 256)}"


def _oversized(server: IssuerServer) -> str:
    """Well signed by the issuer, but longer than any token it issues."""
    token = issuer_rsa().sign(id_claims(server.url, padding="x" * MAX_TOKEN_CHARS))
    assert len(token) > MAX_TOKEN_CHARS
    return token


def _padded_signature(server: IssuerServer) -> str:
    """The issuer's token with base64 padding added: the same bytes, another spelling."""
    token = issuer_rsa().sign(id_claims(server.url))
    return token + "=" * (-len(token.rpartition(".")[2]) % 4)


def _name_no_valid_chat_name(server: IssuerServer) -> str:
    # sub (a UUID, 36 characters) is too long a name, the others are not names at all.
    claims = id_claims(server.url, email="two words@example.com", preferred_username="민지")
    claims["cognito:username"] = "has space"
    return issuer_rsa().sign(claims)


def _name_reserved(server: IssuerServer) -> str:
    claims = id_claims(server.url, email="admin@example.com")
    claims["cognito:username"] = "System"
    return issuer_rsa().sign(claims)


def _name_not_a_string(server: IssuerServer) -> str:
    claims = id_claims(server.url, email=..., preferred_username=["minji"])
    claims["cognito:username"] = 42
    return issuer_rsa().sign(claims)


def _refresh_token_use(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, token_use="refresh"))


def _token_use_not_a_string(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, token_use=["id"]))


def _access_token_of_another_client(server: IssuerServer) -> str:
    return issuer_rsa().sign(access_claims(server.url, client_id="another-client"))


def _access_token_with_another_aud(server: IssuerServer) -> str:
    """client_id only stands in for a missing aud, not for a wrong one."""
    return issuer_rsa().sign(access_claims(server.url, aud="another-client"))


def _sub_missing(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, sub=...))


def _sub_empty(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, sub=""))


def _sub_too_long(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, sub="s" * 257))


def _sub_not_a_string(server: IssuerServer) -> str:
    return issuer_rsa().sign(id_claims(server.url, sub=12345))


def _payload_not_json(server: IssuerServer) -> str:
    """A header naming the issuer's key over a payload that is no JSON (checked after the
    signature, which fails)."""
    header = b64(b'{"alg":"RS256","kid":"rsa-1"}')
    return f"{header}.{b64(b'nope')}.{b64(b's' * 256)}"


def _payload_changed(server: IssuerServer) -> str:
    header, _, signature = issuer_rsa().sign(id_claims(server.url)).split(".")
    other = issuer_rsa().sign(id_claims(server.url, **{"cognito:username": "boss"}))
    return f"{header}.{other.split('.')[1]}.{signature}"


BAD_ISSUER_TOKENS: dict[str, Case] = {
    "forged: another RSA key with the issuer's kid": _forged,
    "forged: another EC key with the issuer's kid": _forged_ec,
    "payload swapped under a valid signature": _payload_changed,
    "payload not JSON": _payload_not_json,
    "expired": _expired,
    "not yet valid (nbf)": _not_yet_valid,
    "issued in the future (iat)": _issued_in_the_future,
    "no exp": _without_exp,
    "exp not a number": _exp_not_a_number,
    "wrong audience": _wrong_audience,
    "audience list without the client": _audience_list_without_the_client,
    "no audience": _no_audience,
    "wrong issuer": _wrong_issuer,
    "no issuer": _no_issuer,
    "alg none": _alg_none,
    "alg None": _alg_none_spelled_otherwise,
    "HS256 keyed with the issuer's public PEM": _hs256_with_the_public_pem,
    "HS256 keyed with the issuer's public JWK": _hs256_with_the_public_jwk,
    "ES256 header on the RSA key's kid": _es256_header_on_the_rsa_kid,
    "unknown kid": _unknown_kid,
    "no kid": _no_kid,
    "kid not a string": _kid_not_a_string,
    "oversized": _oversized,
    "padded signature": _padded_signature,
    "no claim is a valid chat name": _name_no_valid_chat_name,
    "the name claims are reserved names": _name_reserved,
    "the name claims are not strings": _name_not_a_string,
    "token_use refresh": _refresh_token_use,
    "token_use not a string": _token_use_not_a_string,
    "access token of another client": _access_token_of_another_client,
    "access token with another aud": _access_token_with_another_aud,
    "no sub": _sub_missing,
    "empty sub": _sub_empty,
    "sub longer than 256": _sub_too_long,
    "sub not a string": _sub_not_a_string,
}


@pytest.mark.parametrize("case", BAD_ISSUER_TOKENS.values(), ids=BAD_ISSUER_TOKENS.keys())
def test_a_bad_issuer_token_is_denied_with_403(
    case: Case, oidc: IssuerServer, printed: Printed
) -> None:
    assert refused(case(oidc), printed) == 403


def test_the_hs256_confusion_is_denied_with_a_secret_configured_too(
    oidc: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_AUTH_SECRET", SECRET)

    assert refused(_hs256_with_the_public_pem(oidc), printed) == 403
    assert refused(_hs256_with_the_public_jwk(oidc), printed) == 403
    # ...while the secret's own tokens and the issuer's still pass.
    assert allowed(jwt.encode({"sub": "minji", "exp": now() + 60}, SECRET), printed)
    assert allowed(issuer_rsa().sign(id_claims(oidc.url)), printed)


def test_a_name_claim_chosen_but_no_valid_chat_name_is_denied(
    oidc: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_OIDC_NAME_CLAIM", "nickname")

    assert refused(issuer_rsa().sign(id_claims(oidc.url, nickname="no good")), printed) == 403
    # The claim chosen is the only one read: cognito:username ("minji") does not stand in.
    assert refused(issuer_rsa().sign(id_claims(oidc.url)), printed) == 403


RS256_HEADER = b64(b'{"alg":"RS256"}')
NESTED_HEADER = b64(b'{"alg":"RS256","kid":"rsa-1","x":' + b"[" * 5000 + b"]" * 5000 + b"}")
HUGE_NUMBER_HEADER = b64(b'{"alg":' + b"9" * 5000 + b"}")
STRING_HEADER = b64(b'"RS256"')
EMPTY = b64(b"{}")
SIG = b64(b"sig")

MALFORMED = {
    "garbage": "not-a-jwt",
    "emoji": "\U0001f642",
    "two segments": f"{RS256_HEADER}.{EMPTY}",
    "four segments": f"{RS256_HEADER}.{EMPTY}.{SIG}.{SIG}",
    "empty segments": "..",
    "dots": "." * 40,
    "not base64": "!!!.@@@.###",
    "base64 with stray characters": f"{RS256_HEADER}.{EMPTY}.c2ln!",
    "impossible base64 length": f"{RS256_HEADER}.{EMPTY}.abcde",
    "base64 with stray bits": f"{RS256_HEADER}.{EMPTY}.c2lo",  # c2ln with bits set
    "non-JSON header": f"{b64(b'not json')}.{EMPTY}.{SIG}",
    "header a JSON array": f"{b64(b'[1,2]')}.{EMPTY}.{SIG}",
    "header a JSON string": f"{STRING_HEADER}.{EMPTY}.{SIG}",
    "header not UTF-8": f"{b64(bytes([0xFF, 0xFE, 0x7B]))}.{EMPTY}.{SIG}",
    "header nested past the parser's depth": f"{NESTED_HEADER}.{EMPTY}.{SIG}",
    "header with a huge number": f"{HUGE_NUMBER_HEADER}.{EMPTY}.{SIG}",
    "a lone surrogate": "\ud800.\udfff.x",
    "a lone surrogate in a JWT": f"{RS256_HEADER}.{EMPTY}.\ud83d",
    "NUL": "\x00.\x00.\x00",
    "whitespace": " " * 20,
    "a newline in a segment": f"{RS256_HEADER}\n.{EMPTY}.{SIG}",
    "one character too many": "x" * (MAX_TOKEN_CHARS + 1),
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_token_is_denied_with_403(
    token: str, oidc: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_AUTH_SECRET", SECRET)  # both kinds of token are checked

    assert refused(token, printed) == 403
    assert not oidc.requests, "a malformed token costs no fetch of the issuer's keys"


@pytest.mark.parametrize(
    "query",
    [None, {}, {"name": "minji"}, {"token": ""}, {"token": None}, {"token": ["a.b.c"]}],
    ids=repr,
)
def test_no_token_is_unauthorized_401(query: Any, oidc: IssuerServer, printed: Printed) -> None:
    event = authorizer_event()
    event["queryStringParameters"] = query
    with pytest.raises(Exception, match=r"^Unauthorized$") as caught:
        authorize.lambda_handler(event, lambda_context())
    assert type(caught.value) is Exception
    assert "connect refused" in printed()


# --- the issuer's keys: rotation, outage, broken documents ---------------------------------


def test_a_key_the_issuer_publishes_later_is_accepted_once_the_set_is_fetched_again(
    oidc: IssuerServer, clock: Clock, printed: Printed
) -> None:
    assert allowed(issuer_rsa().sign(id_claims(oidc.url)), printed)
    assert oidc.requests["/jwks.json"] == 1
    rotated = rotated_rsa().sign(id_claims(oidc.url))
    oidc.publish(rotated_rsa())

    # Within the cooldown of the last fetch, an unknown kid costs no fetch.
    clock.now += auth.REFRESH_COOLDOWN_SECONDS - 1
    assert refused(rotated, printed) == 403
    assert oidc.requests["/jwks.json"] == 1

    # After it, the set is fetched again and the new key found.
    clock.now += 1
    assert allowed(rotated, printed)
    assert oidc.requests["/jwks.json"] == 2
    # Unknown kids right after that fetch cost nothing; known ones are served from the set.
    assert refused(_unknown_kid(oidc), printed) == 403
    assert allowed(issuer_ec().sign(id_claims(oidc.url)), printed)
    assert oidc.requests["/jwks.json"] == 2
    assert oidc.requests["/.well-known/openid-configuration"] == 1


def test_unknown_kids_cost_at_most_one_fetch_per_cooldown(
    oidc: IssuerServer, clock: Clock, printed: Printed
) -> None:
    assert allowed(issuer_rsa().sign(id_claims(oidc.url)), printed)
    for index in range(5):
        clock.now += auth.REFRESH_COOLDOWN_SECONDS / 4
        made_up = rsa_key(f"made-up-{index}", index=3).sign(id_claims(oidc.url))
        assert refused(made_up, printed) == 403

    # 1.25 cooldowns: the first fetch and one more.
    assert oidc.requests["/jwks.json"] == 2


def test_a_withdrawn_key_is_refused_once_the_kept_set_has_lived_its_hour(
    oidc: IssuerServer, clock: Clock, printed: Printed
) -> None:
    token = issuer_rsa().sign(id_claims(oidc.url))
    assert allowed(token, printed)
    oidc.withdraw("rsa-1")

    clock.now += auth.KEYS_LIFESPAN_SECONDS - 1
    assert allowed(token, printed)  # the kept set still holds it
    clock.now += 1
    assert refused(token, printed) == 403
    assert oidc.requests["/jwks.json"] == 2


def test_the_issuer_down_on_a_cold_start_fails_the_function_then_recovers(
    oidc: IssuerServer, printed: Printed
) -> None:
    token = issuer_rsa().sign(id_claims(oidc.url))
    oidc.stop()

    with pytest.raises(AuthUnavailable):  # API Gateway answers 500
        call(token)
    output = printed()
    assert "connect not checked" in output
    assert_holds_no_token(output, token)
    with pytest.raises(AuthUnavailable):  # a failed discovery is not kept: tried again
        call(token)
    printed()

    oidc.start()  # the same port

    assert allowed(token, printed)["sub"] == SUBJECT


def test_keys_kept_go_on_checking_tokens_while_the_issuer_is_down(
    oidc: IssuerServer, clock: Clock, printed: Printed
) -> None:
    assert allowed(issuer_rsa().sign(id_claims(oidc.url)), printed)
    oidc.stop()

    assert allowed(issuer_ec().sign(id_claims(oidc.url)), printed)
    assert refused(_forged(oidc), printed) == 403
    # A kid the kept set lacks may be a rotation: with nobody to ask, the function fails.
    clock.now += auth.REFRESH_COOLDOWN_SECONDS
    with pytest.raises(AuthUnavailable):
        call(_unknown_kid(oidc))


@pytest.mark.parametrize(
    "body",
    [b"<html>busy</html>", b"[]", b'{"keys": []}', b'{"keys": "none"}', b'{"no": "keys"}'],
    ids=repr,
)
def test_a_jwks_with_no_usable_key_fails_the_function_until_it_has_one(
    body: bytes, oidc: IssuerServer, printed: Printed
) -> None:
    token = issuer_rsa().sign(id_claims(oidc.url))
    oidc.jwks_body = body

    with pytest.raises(AuthUnavailable):
        call(token)
    assert_holds_no_token(printed(), token)

    oidc.jwks_body = None
    assert allowed(token, printed)


def test_a_jwks_of_keys_without_kids_or_for_encryption_has_no_signing_key(
    oidc: IssuerServer, printed: Printed
) -> None:
    without_kid = {k: v for k, v in issuer_rsa().jwk().items() if k != "kid"}
    for_encryption = {**issuer_ec().jwk(), "use": "enc"}
    oidc.jwks_body = json.dumps({"keys": [without_kid, for_encryption]}).encode()

    with pytest.raises(AuthUnavailable):
        call(issuer_rsa().sign(id_claims(oidc.url)))


def test_a_discovery_document_without_jwks_uri_fails_the_function(
    issuer: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_OIDC_ISSUER", issuer.url)
    clean_env.setenv("WSCHAT_OIDC_AUDIENCE", CLIENT_ID)
    clean_env.setenv("WSCHAT_OIDC_METADATA_URL", f"{issuer.url}/jwks.json")  # no jwks_uri

    with pytest.raises(AuthUnavailable):
        call(issuer_rsa().sign(id_claims(issuer.url)))
    clean_env.setenv("WSCHAT_OIDC_METADATA_URL", f"{issuer.url}/nowhere")  # a 404
    authorize.verifier.cache_clear()
    with pytest.raises(AuthUnavailable):
        call(issuer_rsa().sign(id_claims(issuer.url)))


def test_an_issuer_without_an_audience_is_misconfigured(
    issuer: IssuerServer, clean_env: pytest.MonkeyPatch, printed: Printed
) -> None:
    clean_env.setenv("WSCHAT_OIDC_ISSUER", issuer.url)
    token = issuer_rsa().sign(id_claims(issuer.url))

    with pytest.raises(AuthMisconfigured):  # every connect fails: API Gateway answers 500
        call(token)
    output = printed()
    assert "WSCHAT_OIDC_AUDIENCE" in output
    assert_holds_no_token(output, token)
    assert not issuer.requests


# --- HS256 with the stage's secret ---------------------------------------------------------


def hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, "HS256")


def test_a_valid_hs256_token_is_allowed_with_its_sub_as_name(hs256: None, printed: Printed) -> None:
    context = allowed(hs({"sub": "minji", "exp": now() + 60}), printed)

    assert context == {"name": "minji", "sub": "minji"}


BAD_HS256 = {
    "forged: another secret": lambda: hs({"sub": "minji", "exp": now() + 60}, OTHER_SECRET),
    "expired": lambda: hs({"sub": "minji", "iat": now() - 120, "exp": now() - 60}),
    "no exp": lambda: hs({"sub": "minji"}),
    "not yet valid": lambda: hs({"sub": "minji", "exp": now() + 600, "nbf": now() + 300}),
    "no sub": lambda: hs({"exp": now() + 60}),
    "sub reserved": lambda: hs({"sub": "admin", "exp": now() + 60}),
    "sub reserved, otherwise cased": lambda: hs({"sub": "SYSTEM", "exp": now() + 60}),
    "sub not a chat name": lambda: hs({"sub": "two words", "exp": now() + 60}),
    "sub too long": lambda: hs({"sub": "x" * 33, "exp": now() + 60}),
    "sub not a string": lambda: hs({"sub": 7, "exp": now() + 60}),
    "RS256 with no issuer configured": lambda: issuer_rsa().sign({"sub": "minji"}),
    "alg none": lambda: jwt.encode({"sub": "minji", "exp": now() + 60}, None, "none"),
}


@pytest.mark.parametrize("make", BAD_HS256.values(), ids=BAD_HS256.keys())
def test_a_bad_hs256_token_is_denied_with_403(
    make: Callable[[], str], hs256: None, printed: Printed
) -> None:
    assert refused(make(), printed) == 403

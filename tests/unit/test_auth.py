"""Tokens for ``$connect`` (docs/protocol.md, Auth): HS256 JWTs whose ``sub`` is the user name.

A missing token is a 401; a forged, malformed or expired one, or one whose ``sub`` is no valid
name, a 403 (as API Gateway answers a failed authorizer).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from wschat.auth import ALGORITHM, AuthError, issue_token, verify_token
from wschat.protocol import ProtocolError

SECRET = "test-secret-for-hs256-at-least-32-bytes!"
OTHER_SECRET = "another-secret-of-at-least-32-bytes!!"


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(claims, secret, algorithm)


def refusal(token: str | None, secret: str = SECRET) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verify_token(token, secret)
    return caught.value


def in_an_hour() -> int:
    return int(time.time()) + 3600


def test_issued_token_verifies_to_its_name() -> None:
    assert verify_token(issue_token("minji", SECRET), SECRET) == "minji"


def test_issued_token_is_hs256_with_sub_iat_and_exp() -> None:
    before = int(time.time())

    token = issue_token("minji", SECRET, ttl_seconds=600)

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "minji"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 600


def test_issued_token_lasts_twelve_hours_by_default() -> None:
    claims = jwt.decode(issue_token("minji", SECRET), SECRET, algorithms=["HS256"])

    assert claims["exp"] - claims["iat"] == 12 * 60 * 60


def test_no_token_is_refused_with_401() -> None:
    for token in (None, ""):
        error = refusal(token)
        assert error.status == 401
        assert "token" in error.reason


def test_expired_token_is_refused_with_403() -> None:
    error = refusal(issue_token("minji", SECRET, ttl_seconds=-1))

    assert error.status == 403
    assert "expired" in error.reason


def test_token_signed_with_another_secret_is_refused_with_403() -> None:
    assert refusal(issue_token("minji", OTHER_SECRET)).status == 403


def test_token_whose_payload_was_changed_is_refused_with_403() -> None:
    header, _, signature = issue_token("minji", SECRET).split(".")
    other_payload = issue_token("admin2", SECRET).split(".")[1]

    assert refusal(f"{header}.{other_payload}.{signature}").status == 403


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9.e30", "🙂"], ids=repr
)
def test_malformed_token_is_refused_with_403(token: str) -> None:
    assert refusal(token).status == 403


def test_unsigned_token_is_refused_with_403() -> None:
    token = jwt.encode({"sub": "minji", "exp": in_an_hour()}, key=None, algorithm="none")

    assert refusal(token).status == 403


@pytest.mark.filterwarnings("ignore:The HMAC key")  # short for HS512: beside the point here
def test_token_of_another_algorithm_is_refused_with_403() -> None:
    assert refusal(signed({"sub": "minji", "exp": in_an_hour()}, algorithm="HS512")).status == 403


def test_token_without_sub_is_refused_with_403() -> None:
    error = refusal(signed({"exp": in_an_hour()}))

    assert error.status == 403
    assert "sub" in error.reason


def test_token_without_exp_is_refused_with_403() -> None:
    error = refusal(signed({"sub": "minji"}))

    assert error.status == 403
    assert "exp" in error.reason


@pytest.mark.parametrize("sub", ["two words", "x" * 33, "system", "", "민지"], ids=repr)
def test_token_whose_sub_is_not_a_valid_name_is_refused_with_403(sub: str) -> None:
    error = refusal(signed({"sub": sub, "exp": in_an_hour()}))

    assert error.status == 403


@pytest.mark.parametrize("sub", [123, None, ["minji"]], ids=repr)
def test_token_whose_sub_is_not_a_string_is_refused_with_403(sub: Any) -> None:
    assert refusal(signed({"sub": sub, "exp": in_an_hour()})).status == 403


@pytest.mark.parametrize("name", ["two words", "system", "x" * 33])
def test_issuing_a_token_for_an_invalid_name_fails(name: str) -> None:
    with pytest.raises(ProtocolError):
        issue_token(name, SECRET)

"""Token auth end to end (``WSCHAT_AUTH_SECRET`` in the functions' environment): the handshake
is refused without a valid token (401 missing, 403 forged or expired), ``wschat token`` issues
one that connects as its user, and names then come from tokens only."""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

import jwt
import pytest
from tests.integration.conftest import REPO, wschat_command

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)


def _token(name: str, secret: str, *, expires_in: int = 600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": name, "iat": now, "exp": now + expires_in}, secret, "HS256")


def _secret(chat: ChatGateway) -> str:
    from tests.integration.chat_fixtures import AUTH_SECRET

    return AUTH_SECRET


def _wschat_token(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WSCHAT_AUTH_SECRET"}
    return subprocess.run(
        [*wschat_command(), "token", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_connect_without_a_token_is_refused_with_401(auth_chat: ChatGateway) -> None:
    assert auth_chat.refused_status("alice") == 401


def test_connect_with_a_token_signed_by_another_secret_is_refused_with_403(
    auth_chat: ChatGateway,
) -> None:
    assert (
        auth_chat.refused_status(token=_token("alice", "a-different-secret-at-least-32-bytes"))
        == 403
    )


def test_connect_with_an_expired_token_is_refused_with_403(auth_chat: ChatGateway) -> None:
    expired = _token("alice", _secret(auth_chat), expires_in=-60)

    assert auth_chat.refused_status(token=expired) == 403


def test_connect_with_a_token_that_is_no_jwt_is_refused_with_403(auth_chat: ChatGateway) -> None:
    assert auth_chat.refused_status(token="not.a.jwt") == 403


def test_wschat_token_issues_a_token_that_connects_as_its_user(auth_chat: ChatGateway) -> None:
    bob = auth_chat.client(token=_token("bob", _secret(auth_chat)))

    issued = _wschat_token("alice", "--secret", _secret(auth_chat))

    assert issued.returncode == 0, issued.stderr
    alice = auth_chat.client(token=issued.stdout.strip())
    assert alice.hello()["name"] == "alice"
    assert bob.next("joined", room="lobby")["name"] == "alice"
    alice.send("direct", to="bob", message="it is really me")
    assert bob.next("direct")["from"] == "alice"


def test_wschat_token_without_a_secret_exits_2_and_says_why() -> None:
    issued = _wschat_token("alice")

    assert issued.returncode == 2
    assert "secret" in issued.stderr
    assert issued.stdout == ""


def test_the_name_comes_from_the_token_not_the_query(auth_chat: ChatGateway) -> None:
    alice = auth_chat.client("mallory", token=_token("alice", _secret(auth_chat)))

    assert alice.hello()["name"] == "alice"


def test_set_name_with_auth_on_is_unauthorized_and_renames_nothing(auth_chat: ChatGateway) -> None:
    bob = auth_chat.client(token=_token("bob", _secret(auth_chat)))
    alice = auth_chat.client(token=_token("alice", _secret(auth_chat)))
    bob.next("joined", room="lobby")

    alice.send("setName", name="mallory")

    error = alice.error()
    assert (error["code"], error["action"]) == ("unauthorized", "setName")
    assert alice.sync() == []
    assert alice.hello()["name"] == "alice"
    assert bob.sync() == []

"""Sign-in through a real OIDC issuer, end to end: a Cognito user pool on ``moto_server`` issues
RS256 tokens and serves their JWKS (tests/support/cognito.py), the project's template runs with
OidcIssuer / OidcAudience / OidcMetadataUrl, and the gateway runs its authorizer function
before ``$connect``.

A pool token connects as its user (ID token by ``aud``, access token by ``client_id``) and the
name is the token's, whatever ``?name=`` says; other tokens are refused with API Gateway's
statuses and leave nothing stored and no token in any log line; with the issuer's keys out of
reach a connect fails with 500 while open connections keep chatting, and connects recover
when the keys are back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from tests.integration.chat_fixtures import ChatGateway, chat_gateway
from tests.support.cognito import HostedLogin, UserPool
from tests.support.moto_server import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pool(moto_endpoint: str) -> UserPool:
    pool = UserPool.create(moto_endpoint, name="sign-in-tests")
    for name in ("minji", "jun"):
        pool.add_user(name)
    return pool


@pytest.fixture(scope="module")
def login(pool: UserPool) -> Iterator[HostedLogin]:
    with HostedLogin(pool) as front:
        yield front


def sign_in_parameters(pool: UserPool, metadata_url: str) -> dict[str, str]:
    return {
        "OidcIssuer": pool.issuer,
        "OidcAudience": pool.client_id,
        "OidcMetadataUrl": metadata_url,
    }


@pytest.fixture(scope="module")
def signed_chat(
    pool: UserPool, login: HostedLogin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatGateway]:
    parameters = sign_in_parameters(pool, login.metadata_url)
    with chat_gateway(tmp_path_factory.mktemp("sign-in"), parameters=parameters) as gateway:
        yield gateway


@pytest.fixture
def chat(signed_chat: ChatGateway, caplog: pytest.LogCaptureFixture) -> Iterator[ChatGateway]:
    caplog.set_level("DEBUG", logger="wschat")  # the gateway's and the functions' lines
    try:
        yield signed_chat
    finally:
        signed_chat.close_clients()
        signed_chat.wait_until_nobody_is_connected()
        signed_chat.forget_everything()


def test_an_id_token_of_the_pool_connects_as_its_user_whatever_the_query_says(
    chat: ChatGateway, pool: UserPool
) -> None:
    minji = chat.client("mallory", token=pool.id_token("minji"))
    jun = chat.client(token=pool.id_token("jun"))

    assert minji.hello()["name"] == "minji"
    assert jun.hello()["name"] == "jun"
    minji.say("signed in")
    message = jun.next("message", text="signed in")
    assert message["from"] == "minji"


def test_an_access_token_names_the_client_in_client_id_and_connects(
    chat: ChatGateway, pool: UserPool
) -> None:
    access = pool.sign_in("jun")["AccessToken"]
    assert "aud" not in jwt.decode(access, options={"verify_signature": False})

    assert chat.client(token=access).hello()["name"] == "jun"


def test_set_name_is_unauthorized_for_a_signed_in_user(chat: ChatGateway, pool: UserPool) -> None:
    minji = chat.client(token=pool.id_token("minji"))
    minji.send("setName", name="jun")

    error = minji.error()
    assert (error["code"], error["action"]) == ("unauthorized", "setName")
    assert minji.hello()["name"] == "minji"


def _other_client_token(pool: UserPool) -> str:
    other = pool.client.create_user_pool_client(
        UserPoolId=pool.pool_id,
        ClientName="another-app",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
    )["UserPoolClient"]["ClientId"]
    answer = pool.client.initiate_auth(
        ClientId=other,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "minji", "PASSWORD": "Correct-horse-9"},
    )
    return str(answer["AuthenticationResult"]["IdToken"])


def _forged(pool: UserPool) -> str:
    """minji's token with jun's claims: the signature no longer matches."""
    header, _, signature = pool.id_token("minji").split(".")
    return ".".join([header, pool.id_token("jun").split(".")[1], signature])


def _resigned_with_hs256(pool: UserPool) -> str:
    """minji's claims signed HS256 with the issuer's public JWKS as the 'secret'."""
    claims = jwt.decode(pool.id_token("minji"), options={"verify_signature": False})
    return jwt.encode(claims, "the issuer's public key is no secret", "HS256")


REFUSED = {
    "no-token": (lambda pool: None, 401),
    "forged": (_forged, 403),
    "other-client": (_other_client_token, 403),
    "alg-none": (
        lambda pool: jwt.encode(
            jwt.decode(pool.id_token("minji"), options={"verify_signature": False}),
            None,
            "none",
        ),
        403,
    ),
    "hs256-confusion": (_resigned_with_hs256, 403),
    "not-a-jwt": (lambda pool: "minji", 403),
    # Past the authorizer's 8,192 characters, the request line is past the gateway's 8 KiB
    # too: refused (400) before any function runs. The authorizer's own limit, for tokens that
    # come some other way: tests/unit/test_sign_in_tokens.py.
    "oversized": (lambda pool: pool.id_token("minji").ljust(8200, "A"), 400),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_other_tokens_are_refused_with_nothing_stored_and_no_token_logged(
    chat: ChatGateway, pool: UserPool, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    make, status = REFUSED[case]
    token = make(pool)

    assert chat.refused_status("minji", token=token) == status

    assert chat.stored_connection_ids() == set()
    if token:
        signature = token.rsplit(".", 1)[-1]
        for record in caplog.records:
            if not record.name.startswith("wschat"):
                continue  # the test's own boto3 calls, which fetched the tokens
            text = record.getMessage()
            assert token not in text and (len(signature) < 16 or signature not in text), text


def test_an_expired_pool_token_is_refused(chat: ChatGateway, pool: UserPool) -> None:
    # moto's tokens last an hour: an expired one is the pool's own, with exp in the past.
    claims = jwt.decode(pool.id_token("minji"), options={"verify_signature": False})
    assert claims["exp"] > time.time()
    assert chat.refused_status(token=_forged_expired(pool)) == 403


def _forged_expired(pool: UserPool) -> str:
    # Re-signing needs the pool's private key, which moto keeps in its package.
    import gzip
    import json
    from importlib import resources

    raw = resources.files("moto.cognitoidp").joinpath("resources/jwks-private.json.gz")
    key = jwt.PyJWK(json.loads(gzip.decompress(raw.read_bytes())))
    claims = jwt.decode(pool.id_token("minji"), options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 60
    return jwt.encode(claims, key.key, "RS256", headers={"kid": "dummy"})


def test_the_issuers_keys_out_of_reach_fail_connects_with_500_until_they_are_back(
    pool: UserPool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    parameters = sign_in_parameters(
        pool, f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    )
    with chat_gateway(tmp_path / "data", parameters=parameters) as chat:
        # Nothing answers at the discovery URL: the authorizer cannot check anyone.
        assert chat.refused_status(token=pool.id_token("minji")) == 500
        assert chat.refused_status(token=pool.id_token("jun")) == 500
        assert chat.stored_connection_ids() == set()
        with HostedLogin(pool, port=port):
            minji = chat.client(token=pool.id_token("minji"))
            assert minji.hello()["name"] == "minji"
            jun = chat.client(token=pool.id_token("jun"))
        # The front is gone again; the keys are cached for this execution environment, and
        # connections that are open keep chatting whatever happens to the issuer.
        minji.say("still here")
        assert jun.next("message", text="still here")["from"] == "minji"
        assert chat.client(token=pool.id_token("jun")).hello()["name"] == "jun"
        chat.close_clients()
    assert any("issuer's keys are unavailable" in r.getMessage() for r in caplog.records)

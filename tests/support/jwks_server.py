"""An OIDC issuer on 127.0.0.1 for the authorizer's tests: real keys, a real HTTP server.

``SigningKey`` is an RSA or EC key pair made with ``cryptography`` that signs tokens as an
issuer would (its ``kid`` in the header). ``IssuerServer`` serves a discovery document at
``{url}/.well-known/openid-configuration`` (so its ``url`` is the issuer) whose ``jwks_uri``
is ``{url}/jwks.json``, the public half of each published key. Tests publish and withdraw keys
(a rotation), break the JWKS document, count requests, and ``stop()`` the server and
``start()`` it again on the same port (an outage and its end).

``authorizer_event`` is the event API Gateway sends a WebSocket API's REQUEST authorizer on
``$connect`` (the sample ``$connect`` event plus ``type`` and ``methodArn``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.events import load_event

METHOD_ARN = "arn:aws:execute-api:ap-northeast-2:123456789012:k7x2m9q4ab/prod/$connect"
CLIENT_ID = "5m2ql0hdbh6kqk8rdm1ivbu2c7"  # the app client: the tokens' aud / client_id


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str  # RS256 or ES256
    private_key: Any = field(repr=False)

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as the issuer publishes it in its JWKS."""
        convert = RSAAlgorithm if self.algorithm.startswith(("RS", "PS")) else ECAlgorithm
        public: dict[str, Any] = convert.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private_key, self.algorithm, headers={"kid": self.kid, **headers}
        )

    def renamed(self, kid: str) -> SigningKey:
        return SigningKey(kid, self.algorithm, self.private_key)


@cache
def _private_key(kind: str, index: int) -> Any:
    """Keys are slow to make (RSA): each is made once per test process."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(kid: str, index: int = 0) -> SigningKey:
    return SigningKey(kid, "RS256", _private_key("rsa", index))


def ec_key(kid: str, index: int = 0) -> SigningKey:
    return SigningKey(kid, "ES256", _private_key("ec", index))


class IssuerServer:
    """Discovery document and JWKS over HTTP; a context manager (started on enter)."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: dict[str, SigningKey] = {key.kid: key for key in keys}
        # When set, the JWKS path answers these bytes instead of the published keys.
        self.jwks_body: bytes | None = None
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what it serves ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The issuer (``iss``); its discovery document is under it."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def publish(self, key: SigningKey) -> None:
        with self._lock:
            self.keys[key.kid] = key

    def withdraw(self, kid: str) -> None:
        with self._lock:
            self.keys.pop(kid, None)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    def jwks(self) -> bytes:
        with self._lock:
            if self.jwks_body is not None:
                return self.jwks_body
            return json.dumps({"keys": [key.jwk() for key in self.keys.values()]}).encode()

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on 127.0.0.1: a free port the first time, the same one after ``stop()``."""
        assert self._server is None, "already running"
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: a connect to the port is refused until ``start()``."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> IssuerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(issuer: IssuerServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            issuer.requests[path] += 1
            if path == "/.well-known/openid-configuration":
                body, status = json.dumps(issuer.metadata()).encode(), 200
            elif path == "/jwks.json":
                body, status = issuer.jwks(), 200
            else:
                body, status = b'{"message":"not found"}', 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def id_claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    """The claims of a Cognito-like ID token for ``minji``, valid for an hour."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "7c1e9a52-4b8d-4f0e-9a61-3d2b5c8e0f14",
        "iss": issuer,
        "aud": CLIENT_ID,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "cognito:username": "minji",
        "email": "minji@example.com",
        "email_verified": True,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not ...}


def access_claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    """A Cognito access token's claims: the app client in ``client_id``, no ``aud``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "7c1e9a52-4b8d-4f0e-9a61-3d2b5c8e0f14",
        "iss": issuer,
        "client_id": CLIENT_ID,
        "origin_jti": "0b7c0e0e-4cfe-4f47-9a2f-1f3b6f0d9c11",
        "event_id": "a3b8c1d2-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "jti": "5f0e9d8c-7b6a-4c3d-9e2f-1a0b9c8d7e6f",
        "username": "minji",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not ...}


def authorizer_event(
    token: str | None = None,
    *,
    connection_id: str = "Cq3vTfXwoE0CIeQ=",
    method_arn: str = METHOD_ARN,
) -> dict[str, Any]:
    """The REQUEST authorizer event of a ``$connect`` with ``?token=`` (none when None)."""
    query = {"token": token} if token is not None else None
    event = load_event(
        "connect",
        requestContext={"connectionId": connection_id, "requestId": "Cq3vTGbdoE0FgAw="},
    )
    event.pop("isBase64Encoded", None)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in query.items()} if query else None
    )
    event["stageVariables"] = None
    return {"type": "REQUEST", "methodArn": method_arn, **event}

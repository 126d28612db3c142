"""A Cognito user pool on ``moto_server`` as the OIDC issuer tests sign in against.

moto issues a user pool's RS256 ID and access tokens (``InitiateAuth``) and serves the pool's
JWKS over HTTP, as Cognito does. It has no managed login (hosted UI), so ``HostedLogin`` is
that front, written from Cognito's documented endpoints: a discovery document, an
``/oauth2/authorize`` page with a sign-in form, and ``/oauth2/token`` redeeming a single-use
authorization code for the pool's tokens only with the PKCE verifier of its S256 challenge
(and refresh tokens for new ones). Every token it hands out is moto's, signed with the pool's
key; the front signs nothing. It answers the token endpoint with
``Access-Control-Allow-Origin: *``, as Cognito does, so a page can redeem codes from a browser.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

REGION = "ap-northeast-2"
PASSWORD = "Correct-horse-9"


@dataclass
class UserPool:
    """A user pool and one public app client on the moto server at ``endpoint``."""

    endpoint: str
    pool_id: str
    client_id: str
    client: Any = field(repr=False)

    @classmethod
    def create(cls, endpoint: str, name: str = "wschat-users") -> UserPool:
        client = boto3.client(
            "cognito-idp",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        pool_id = client.create_user_pool(PoolName=name)["UserPool"]["Id"]
        client_id = client.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName="wschat-page",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        return cls(endpoint, pool_id, client_id, client)

    @property
    def issuer(self) -> str:
        """The ``iss`` of the pool's tokens (Cognito's URL: moto signs with it)."""
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.pool_id}/.well-known/jwks.json"

    def add_user(self, username: str, password: str = PASSWORD) -> None:
        self.client.admin_create_user(
            UserPoolId=self.pool_id, Username=username, MessageAction="SUPPRESS"
        )
        self.client.admin_set_user_password(
            UserPoolId=self.pool_id, Username=username, Password=password, Permanent=True
        )

    def sign_in(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        """The pool's tokens for ``username`` (IdToken, AccessToken, RefreshToken, ...)."""
        answer = self.client.initiate_auth(
            ClientId=self.client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        result: dict[str, Any] = answer["AuthenticationResult"]
        return result

    def id_token(self, username: str) -> str:
        return str(self.sign_in(username)["IdToken"])

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        answer = self.client.initiate_auth(
            ClientId=self.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token},
        )
        result: dict[str, Any] = answer["AuthenticationResult"]
        return result


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Grant:
    tokens: dict[str, Any]
    challenge: str
    redirect_uri: str


class HostedLogin:
    """The pool's managed login on 127.0.0.1: ``metadata_url`` is its discovery document."""

    def __init__(
        self, pool: UserPool, *, callback_urls: tuple[str, ...] = (), port: int = 0
    ) -> None:
        """``port``: a fixed one, so a test can stop the front and start it again there."""
        self.pool = pool
        self.callback_urls = set(callback_urls)
        self.token_requests = 0
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.pool.issuer,
            "authorization_endpoint": f"{self.url}/oauth2/authorize",
            "token_endpoint": f"{self.url}/oauth2/token",
            "jwks_uri": self.pool.jwks_url,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def __enter__(self) -> HostedLogin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # --- the endpoints ------------------------------------------------------------------------

    def authorize_form(self, query: dict[str, str], error: str = "") -> tuple[int, str]:
        problem = self._authorize_problem(query)
        if problem:
            return 400, f"<p>{html.escape(problem)}</p>"
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in query.items()
        )
        note = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        return 200, (
            "<!doctype html><title>Sign in</title><form method=post action=/login>"
            f"{note}{hidden}"
            '<label>Username <input name="username" autocomplete="username"></label>'
            '<label>Password <input name="password" type="password"></label>'
            '<button type="submit">Sign in</button></form>'
        )

    def _authorize_problem(self, query: dict[str, str]) -> str:
        if query.get("response_type") != "code":
            return "response_type must be code"
        if query.get("client_id") != self.pool.client_id:
            return "unknown client_id"
        if query.get("redirect_uri") not in self.callback_urls:
            return "redirect_mismatch"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return "PKCE with S256 is required"
        return ""

    def login(self, form: dict[str, str]) -> tuple[int, str, str | None]:
        """Sign the user in with moto; a redirect to the client with a code, or the form."""
        query = {k: v for k, v in form.items() if k not in ("username", "password")}
        problem = self._authorize_problem(query)
        if problem:
            return 400, problem, None
        try:
            tokens = self.pool.sign_in(form.get("username", ""), form.get("password", ""))
        except self.pool.client.exceptions.ClientError:
            status, body = self.authorize_form(query, "Incorrect username or password.")
            return status, body, None
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(tokens, query["code_challenge"], query["redirect_uri"])
        target = (
            query["redirect_uri"]
            + "?"
            + urllib.parse.urlencode(
                {"code": code, **({"state": query["state"]} if "state" in query else {})}
            )
        )
        return 302, "", target

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        if form.get("client_id") != self.pool.client_id:
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") == "refresh_token":
            try:
                tokens = self.pool.refresh(form.get("refresh_token", ""))
            except self.pool.client.exceptions.ClientError:
                return 400, {"error": "invalid_grant"}
            return 200, _token_answer(tokens)
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        if s256(form.get("code_verifier", "")) != grant.challenge:
            return 400, {"error": "invalid_grant"}
        return 200, _token_answer(grant.tokens)


def _token_answer(tokens: dict[str, Any]) -> dict[str, Any]:
    answer = {
        "id_token": tokens["IdToken"],
        "access_token": tokens["AccessToken"],
        "expires_in": tokens.get("ExpiresIn", 3600),
        "token_type": "Bearer",
    }
    if "RefreshToken" in tokens:
        answer["refresh_token"] = tokens["RefreshToken"]
    return answer


def _handler_for(login: HostedLogin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests carry codes and tokens: nothing is logged

        def _send(
            self, status: int, body: str, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                cors = {"Access-Control-Allow-Origin": "*"}
                self._send(200, json.dumps(login.metadata()), "application/json", cors)
            elif url.path == "/oauth2/authorize":
                status, body = login.authorize_form(dict(urllib.parse.parse_qsl(url.query)))
                self._send(status, body, "text/html; charset=utf-8")
            else:
                self._send(404, "not found", "text/plain")

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/login":
                status, body, location = login.login(self._form())
                headers = {"Location": location} if location else {}
                self._send(status, body, "text/html; charset=utf-8", headers)
            elif url.path == "/oauth2/token":
                status, answer = login.token(self._form())
                cors = {"Access-Control-Allow-Origin": "*"}
                self._send(status, json.dumps(answer), "application/json", cors)
            else:
                self._send(404, "not found", "text/plain")

    return Handler

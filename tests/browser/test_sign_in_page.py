"""Signing in from the chat page against a Cognito user pool on moto (tests/support/cognito.py):
``wschat serve`` with the project's template and its OidcIssuer/OidcAudience/OidcMetadataUrl
parameters, the pool's managed-login front as the issuer's login page, chromium as the person.

The page goes to the login form by itself, comes back with a code it redeems (PKCE) and removes
from its URL, and connects with the ID token; the chat names the person from the token. A wrong
password stays on the form; a forged token is refused and the page asks to sign in again; an
issuer whose discovery document cannot be read is said so, until it can.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import TIMEOUT_MS, People, Person, free_port, people_on
from tests.integration.conftest import REPO, ServeProcess, recv_until
from tests.support.cognito import HostedLogin, UserPool
from websockets.sync.client import connect

from wschat.cli import OWN_ROUTES

pytestmark = pytest.mark.browser

REFUSED = "Signed-in session refused — sign in again."


@dataclass
class SignInChat:
    """``wschat serve`` signing people in with ``pool`` through ``login``."""

    pool: UserPool
    login: HostedLogin
    server: ServeProcess
    port: int

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def websocket_url(self) -> str:
        return self.server.websocket_url


@pytest.fixture(scope="module")
def signed_in_chat(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignInChat]:
    pool = UserPool.create(moto_endpoint, name="wschat-page-users")
    for name in ("minji", "jun"):
        pool.add_user(name)
    port = free_port()
    directory = tmp_path_factory.mktemp("serve-sign-in")
    with HostedLogin(pool, callback_urls=(f"http://127.0.0.1:{port}/",)) as login:
        args = ["--port", str(port), "--template", str(REPO / "template.yaml")]
        args += ["--store", "sqlite", "--data-dir", str(directory), "--log-level", "WARNING"]
        args += ["--parameter", f"OidcIssuer={pool.issuer}"]
        args += ["--parameter", f"OidcAudience={pool.client_id}"]
        args += ["--parameter", f"OidcMetadataUrl={login.metadata_url}"]
        server = ServeProcess(args, directory, cwd=REPO).wait_ready()
        try:
            assert f"  Sign-in:     {pool.issuer}" in server.stdout_lines
            yield SignInChat(pool, login, server, port)
        finally:
            server.close()


@pytest.fixture
def people(
    browser: Any, signed_in_chat: SignInChat, request: pytest.FixtureRequest
) -> Iterator[People]:
    """People's pages on the signed-in chat (their own contexts, so their own sessions);
    screenshots at the end; no page may have thrown."""
    with people_on(browser, signed_in_chat, request) as crowd:
        yield crowd


def open_page(people: People, chat: SignInChat, name: str) -> Person:
    """``name``'s page, opened: it goes to the issuer's login form by itself."""
    person = people.open(name, url=chat.page_url, connect=False)
    person.page.wait_for_url(f"{chat.login.url}/oauth2/authorize?*", timeout=TIMEOUT_MS)
    return person


def fill_in(person: Person, password: str | None = None) -> None:
    form = person.page
    form.get_by_label("Username").fill(person.name)
    form.get_by_label("Password").fill(password or "Correct-horse-9")
    form.get_by_role("button", name="Sign in").click()


def sign_in(people: People, chat: SignInChat, name: str) -> Person:
    person = open_page(people, chat, name)
    fill_in(person)
    person.page.wait_for_url(chat.page_url, timeout=TIMEOUT_MS)
    person.wait_connected()
    return person


def session_storage(person: Person) -> dict[str, str]:
    return dict(person.page.evaluate("() => ({...sessionStorage})"))


def stored_tokens(person: Person) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(session_storage(person)["wschat.signin.tokens"])
    return value


def set_tokens(person: Person, tokens: dict[str, Any]) -> None:
    person.page.evaluate(
        "(tokens) => sessionStorage.setItem('wschat.signin.tokens', JSON.stringify(tokens))",
        tokens,
    )


def forged(token: str, **claims: Any) -> str:
    """``token`` with ``claims`` changed and its signature kept (so it no longer matches)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(claims)
    changed = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


def test_signing_in_from_the_page_connects_as_the_signed_in_person(
    people: People, signed_in_chat: SignInChat
) -> None:
    chat = signed_in_chat
    token_requests = chat.login.token_requests
    minji = open_page(people, chat, "minji")
    asked = parse_qs(urlsplit(minji.page.url).query)
    assert asked["response_type"] == ["code"]
    assert asked["client_id"] == [chat.pool.client_id]
    assert asked["redirect_uri"] == [chat.page_url]
    assert asked["scope"] == ["openid email profile"]
    assert asked["code_challenge_method"] == ["S256"]
    assert len(asked["code_challenge"][0]) == 43 and len(asked["state"][0]) >= 16
    referers: list[str] = []
    minji.page.on(
        "request",
        lambda request: (
            referers.append(request.header_value("referer") or "")
            if request.url.startswith(chat.login.url + "/oauth2/token")
            else None
        ),
    )

    fill_in(minji)
    minji.page.wait_for_url(chat.page_url, timeout=TIMEOUT_MS)
    minji.wait_connected()

    # Back on the page: the code and state are gone from its URL, and no token is in it.
    assert minji.page.url == chat.page_url
    assert minji.page.evaluate("location.search + location.hash") == ""
    assert chat.login.token_requests == token_requests + 1  # the code, redeemed once
    assert referers == [""]  # the page's URL, with the code in it, went nowhere
    tokens = stored_tokens(minji)
    assert tokens["idToken"].count(".") == 2 and tokens["refreshToken"]
    assert not any(
        tokens["idToken"] in v for v in minji.page.evaluate("Object.values(localStorage)")
    )
    (socket_url,) = minji.sockets
    query = parse_qs(urlsplit(socket_url).query)
    assert query["token"] == [tokens["idToken"]] and "name" not in query

    # The token names her; there is no name to set, only a way out.
    expect(minji.page.locator("#signed-in")).to_have_text("Signed in as minji")
    expect(minji.page.locator("#name-form")).to_be_hidden()
    expect(minji.page.get_by_role("button", name="Sign out")).to_be_visible()
    minji.send("hello, signed in")
    minji.wait_for_texts(["hello, signed in"])
    assert minji.messages()[0]["from"] == "minji"

    # Someone else signed in with the same pool (by the API) talks to her.
    with connect(chat.websocket_url + "?token=" + chat.pool.id_token("jun"), open_timeout=5) as jun:
        jun.send(json.dumps({"action": "hello"}))
        assert recv_until(jun, lambda frame: frame.get("type") == "hello")["name"] == "jun"
        jun.send(json.dumps({"action": "sendMessage", "room": "lobby", "message": "hi minji"}))
        minji.wait_for_texts(["hello, signed in", "hi minji"])
    assert [m["from"] for m in minji.messages()] == ["minji", "jun"]

    # Signing out forgets the session and leaves the chat.
    minji.page.get_by_role("button", name="Sign out").click()
    expect(minji.page.locator("#signin-message")).to_have_text("You are signed out.")
    expect(minji.page.locator("#status")).to_have_attribute("data-state", "signed-out")
    assert session_storage(minji) == {}
    assert minji.texts() == []


def test_a_wrong_password_stays_on_the_login_form(
    people: People, signed_in_chat: SignInChat
) -> None:
    chat = signed_in_chat
    token_requests = chat.login.token_requests
    jun = open_page(people, chat, "jun")

    fill_in(jun, password="not-the-password")

    expect(jun.page.get_by_role("alert")).to_have_text("Incorrect username or password.")
    expect(jun.page.get_by_role("button", name="Sign in")).to_be_visible()
    assert jun.page.url.startswith(chat.login.url)
    assert jun.sockets == []
    assert chat.login.token_requests == token_requests


def test_a_forged_token_is_refused_and_the_page_asks_to_sign_in_again(
    people: People, signed_in_chat: SignInChat
) -> None:
    chat = signed_in_chat
    minji = sign_in(people, chat, "minji")
    tokens = stored_tokens(minji)
    tokens["idToken"] = forged(tokens["idToken"], **{"cognito:username": "admin"})
    set_tokens(minji, tokens)
    # What the forged token's socket receives, on its own: minji.frames mixes in every socket
    # the page opened, and the first sign-in's socket is still answering its catch-up (history
    # and who, asked for after hello) when the reload starts; those frames may reach Python
    # after any clear() of minji.frames, so they must not count against the forged socket.
    forged_sockets: list[tuple[Any, list[str | bytes]]] = []

    def on_websocket(ws: Any) -> None:
        received: list[str | bytes] = []
        ws.on("framereceived", lambda payload: received.append(payload))
        forged_sockets.append((ws, received))

    minji.page.on("websocket", on_websocket)

    minji.page.reload()

    expect(minji.page.locator("#signin-message")).to_have_text(REFUSED)
    expect(minji.page.locator("#status")).to_have_attribute("data-state", "refused")
    assert len(minji.sockets) == 2  # the first sign-in's, and the forged token's
    minji.page.remove_listener("websocket", on_websocket)
    ((forged_socket, received),) = forged_sockets  # the reloaded page opened one socket
    assert forged_socket.url == minji.sockets[1] and "token=" in forged_socket.url
    # Its close is reported after every frame it received: once Python has it, nothing is due.
    minji.wait_until(lambda: forged_socket.is_closed() or None, "the forged socket's close")
    assert received == []  # never let in
    assert "wschat.signin.tokens" not in session_storage(minji)
    # It does not try the refused token again...
    minji.page.wait_for_timeout(1_500)
    assert len(minji.sockets) == 2
    # ... and signing in again is one click away, and works.
    minji.page.get_by_role("button", name="Sign in").click()
    minji.page.wait_for_url(f"{chat.login.url}/oauth2/authorize?*", timeout=TIMEOUT_MS)
    fill_in(minji)
    minji.page.wait_for_url(chat.page_url, timeout=TIMEOUT_MS)
    minji.wait_connected()
    expect(minji.page.locator("#signin-panel")).to_be_hidden()


def test_a_token_about_to_expire_is_refreshed_before_connecting_or_asks_to_sign_in(
    people: People, signed_in_chat: SignInChat
) -> None:
    chat = signed_in_chat
    minji = sign_in(people, chat, "minji")
    tokens = stored_tokens(minji)
    soon = int(time.time()) + 30
    # Within a minute of expiring: the page refreshes it rather than connect with it (this
    # one's signature no longer matches, so it would be refused).
    expiring = {**tokens, "idToken": forged(tokens["idToken"], exp=soon)}
    set_tokens(minji, expiring)
    token_requests = chat.login.token_requests

    minji.page.reload()
    minji.wait_connected()

    assert chat.login.token_requests == token_requests + 1  # the refresh_token grant
    refreshed = stored_tokens(minji)
    assert refreshed["idToken"] != expiring["idToken"]
    assert refreshed["refreshToken"] == tokens["refreshToken"]  # Cognito sends no new one
    assert parse_qs(urlsplit(minji.sockets[-1]).query)["token"] == [refreshed["idToken"]]

    # Without a refresh token there is nothing to do but sign in again.
    set_tokens(minji, {"idToken": expiring["idToken"], "refreshToken": None})
    sockets = len(minji.sockets)
    minji.page.reload()
    expect(minji.page.locator("#signin-message")).to_have_text(
        "Your session has ended — sign in again."
    )
    expect(minji.page.locator("#status")).to_have_attribute("data-state", "signed-out")
    assert len(minji.sockets) == sockets


class FlakyDiscovery:
    """The login front's discovery document, or 503 while ``broken``."""

    def __init__(self, login: HostedLogin) -> None:
        self.broken = True
        self.reads = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.reads += 1
                status, body = (
                    (503, b"{}") if outer.broken else (200, json.dumps(login.metadata()).encode())
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/openid-configuration"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_an_issuer_that_cannot_be_read_is_said_so_until_it_can(
    browser: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    pool = UserPool.create(moto_endpoint, name="wschat-unreadable")
    port = free_port()
    with HostedLogin(pool, callback_urls=(f"http://127.0.0.1:{port}/",)) as login:
        discovery = FlakyDiscovery(login)
        # The page alone is what is tested: wschat's own routes, the issuer in their env.
        args = ["--port", str(port), "--code-dir", str(REPO / "src"), "--data-dir", str(tmp_path)]
        args += ["--log-level", "ERROR"]
        for route in OWN_ROUTES:
            args += ["--route", route]
        for name, value in (
            ("WSCHAT_OIDC_ISSUER", pool.issuer),
            ("WSCHAT_OIDC_AUDIENCE", pool.client_id),
            ("WSCHAT_OIDC_METADATA_URL", discovery.url),
        ):
            args += ["--env", f"{name}={value}"]
        server = ServeProcess(args, tmp_path, cwd=REPO).wait_ready()
        context = browser.new_context()
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/")

            expect(page.locator("#signin-message")).to_contain_text("Sign-in is unavailable")
            expect(page.locator("#status")).to_have_attribute("data-state", "error")
            assert page.url == f"http://127.0.0.1:{port}/"  # not sent anywhere
            reads = discovery.reads
            assert reads >= 1

            discovery.broken = False
            page.get_by_role("button", name="Try again").click()
            page.wait_for_url(f"{login.url}/oauth2/authorize?*", timeout=TIMEOUT_MS)
            assert discovery.reads > reads
            assert errors == []
        finally:
            context.close()
            server.close()
            discovery.close()

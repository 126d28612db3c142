"""The chat page as ``wschat.page`` serves it (no socket): its headers and Content-Security-Policy,
``config.json`` with and without sign-in, the issuer's discovery document read once (and again
after a failure), paths that name no file, methods, and the page function on an HTTP API
(payload format 2.0) event. Also where ``wschat serve`` takes the page's sign-in settings from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wschat.auth import AuthMisconfigured, AuthUnavailable
from wschat.handlers import page as page_handler
from wschat.page import WEB_DIR, ChatPage, PageResponse, SignInSettings, origin

WEBSOCKET_URL = "ws://127.0.0.1:8000/local"
ISSUER = "https://cognito-idp.ap-northeast-2.amazonaws.com/ap-northeast-2_pool"
SIGN_IN = SignInSettings(
    issuer=ISSUER, client_id="client-123", metadata_url="https://login.example/.well-known/oidc"
)
DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": "https://login.example/oauth2/authorize",
    "token_endpoint": "https://tokens.example:8443/oauth2/token",
    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
}
REPO = Path(__file__).resolve().parents[2]


class FakeIssuer:
    """Answers discovery reads with ``documents`` in turn (an exception is raised)."""

    def __init__(self, *documents: dict[str, Any] | Exception) -> None:
        self.documents = list(documents)
        self.reads: list[str] = []

    def __call__(self, url: str) -> dict[str, Any]:
        self.reads.append(url)
        answer = self.documents.pop(0) if len(self.documents) > 1 else self.documents[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def csp(response: PageResponse) -> dict[str, list[str]]:
    directives = {}
    for directive in response.headers["Content-Security-Policy"].split(";"):
        name, *sources = directive.split()
        directives[name] = sources
    return directives


def config_of(response: PageResponse) -> dict[str, Any]:
    assert response.status == 200, response.body
    value: dict[str, Any] = json.loads(response.body)
    return value


# --- headers --------------------------------------------------------------------------------------


def test_the_document_runs_only_its_own_scripts_and_styles_and_talks_only_to_its_stage() -> None:
    response = ChatPage(WEBSOCKET_URL).respond("GET", "/")

    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert b'<script type="module" src="app.js"></script>' in response.body
    assert csp(response) == {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "ws://127.0.0.1:8000"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }


def test_every_answer_carries_the_security_headers_and_http_has_no_hsts() -> None:
    page = ChatPage(WEBSOCKET_URL)
    for path in ("/", "/app.js", "/style.css", "/config.json", "/nowhere"):
        headers = page.respond("GET", path).headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert headers["Permissions-Policy"] == "camera=(), microphone=(), geolocation=()", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
        assert "Strict-Transport-Security" not in headers, path


def test_over_https_browsers_are_told_to_keep_to_https() -> None:
    page = ChatPage("wss://abc123.execute-api.ap-northeast-2.amazonaws.com/prod", https=True)
    response = page.respond("GET", "/")

    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert csp(response)["connect-src"] == [
        "'self'",
        "wss://abc123.execute-api.ap-northeast-2.amazonaws.com",
    ]


def test_files_are_revalidated_and_config_is_never_stored() -> None:
    page = ChatPage(WEBSOCKET_URL)
    assert page.respond("GET", "/app.js").headers["Cache-Control"] == "no-cache"
    assert page.respond("GET", "/config.json").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/signin.js", "text/javascript; charset=utf-8"),
        ("/connection.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/config.json", "application/json"),
    ],
)
def test_each_file_has_its_own_content_type(path: str, content_type: str) -> None:
    assert ChatPage(WEBSOCKET_URL).respond("GET", path).content_type == content_type


def test_the_page_has_no_inline_scripts_styles_or_handlers() -> None:
    text = (WEB_DIR / "index.html").read_text()
    assert not re.search(r"\sstyle\s*=", text)
    assert "<style" not in text
    assert not re.search(r"\son[a-z]+\s*=", text)  # onclick=, onload=, ...
    assert "javascript:" not in text
    assert text.count("<script") == text.count('<script type="module" src='), "inline <script>"
    for script in WEB_DIR.glob("*.js"):
        source = script.read_text()
        assert "innerHTML" not in source, script.name
        assert "console.log" not in source, script.name


def test_origins_are_only_http_or_websocket_origins() -> None:
    assert origin("wss://Example.com:443/prod?x=1") == "wss://example.com:443"
    assert origin("http://user:pw@127.0.0.1:9000/path") == "http://127.0.0.1:9000"
    assert origin("http://[::1]:8000/") == "http://[::1]:8000"
    for bad in ("javascript:alert(1)", "https://a.example;script-src *", "ftp://a.example", ""):
        with pytest.raises(ValueError):
            origin(bad)
    with pytest.raises(ValueError):
        ChatPage("wss://a.example 'unsafe-inline'/prod")


# --- config.json ----------------------------------------------------------------------------------


def test_without_sign_in_config_names_only_the_stage() -> None:
    config = config_of(ChatPage(WEBSOCKET_URL).respond("GET", "/config.json"))
    assert config == {"websocketUrl": WEBSOCKET_URL, "signIn": None}


def test_with_sign_in_config_names_the_discovered_endpoints_read_once() -> None:
    issuer = FakeIssuer(DISCOVERY)
    page = ChatPage(WEBSOCKET_URL, SIGN_IN, fetch=issuer)

    for _ in range(3):
        config = config_of(page.respond("GET", "/config.json"))
    document = page.respond("GET", "/")

    assert config == {
        "websocketUrl": WEBSOCKET_URL,
        "signIn": {
            "issuer": ISSUER,
            "clientId": "client-123",
            "authorizationEndpoint": "https://login.example/oauth2/authorize",
            "tokenEndpoint": "https://tokens.example:8443/oauth2/token",
            "endSessionEndpoint": None,
            "scope": "openid email profile",
        },
    }
    assert issuer.reads == ["https://login.example/.well-known/oidc"]
    # The page may post codes to the token endpoint, and nowhere else new.
    assert csp(document)["connect-src"] == [
        "'self'",
        "ws://127.0.0.1:8000",
        "https://tokens.example:8443",
    ]


def test_an_end_session_endpoint_is_passed_on() -> None:
    issuer = FakeIssuer({**DISCOVERY, "end_session_endpoint": "https://login.example/logout"})
    config = config_of(
        ChatPage(WEBSOCKET_URL, SIGN_IN, fetch=issuer).respond("GET", "/config.json")
    )
    assert config["signIn"]["endSessionEndpoint"] == "https://login.example/logout"


def test_when_discovery_fails_config_answers_503_and_the_next_request_tries_again() -> None:
    refused = AuthUnavailable("could not read it: Connection refused")
    issuer = FakeIssuer(refused, refused, DISCOVERY)
    page = ChatPage(WEBSOCKET_URL, SIGN_IN, fetch=issuer)

    failed = page.respond("GET", "/config.json")
    assert failed.status == 503
    assert failed.content_type == "application/json"
    assert failed.headers["Cache-Control"] == "no-store"
    message = json.loads(failed.body)["message"]
    assert "Sign-in is unavailable" in message
    assert "Connection refused" not in message  # the reason is for the log, not the page

    # The page itself still loads (to say so), with no token endpoint to connect to.
    document = page.respond("GET", "/")
    assert document.status == 200
    assert csp(document)["connect-src"] == ["'self'", "ws://127.0.0.1:8000"]

    recovered = config_of(page.respond("GET", "/config.json"))
    assert recovered["signIn"]["tokenEndpoint"] == DISCOVERY["token_endpoint"]
    assert len(issuer.reads) == 3  # no failure was kept; the success is
    page.respond("GET", "/config.json")
    assert "https://tokens.example:8443" in csp(page.respond("GET", "/"))["connect-src"]
    assert len(issuer.reads) == 3


@pytest.mark.parametrize(
    "document",
    [
        {**DISCOVERY, "issuer": "https://someone-else.example"},
        {k: v for k, v in DISCOVERY.items() if k != "token_endpoint"},
        {**DISCOVERY, "authorization_endpoint": "javascript:alert(1)"},
        {**DISCOVERY, "token_endpoint": "https://a.example; script-src *"},
        {**DISCOVERY, "token_endpoint": "wss://a.example/token"},
    ],
    ids=["another-issuer", "no-token-endpoint", "not-a-url", "csp-injection", "not-http"],
)
def test_a_discovery_document_the_page_cannot_use_is_unavailable(document: dict[str, Any]) -> None:
    page = ChatPage(WEBSOCKET_URL, SIGN_IN, fetch=FakeIssuer(document))
    assert page.respond("GET", "/config.json").status == 503
    assert "script-src *" not in page.respond("GET", "/").headers["Content-Security-Policy"]


def test_sign_in_settings_from_the_environment() -> None:
    assert SignInSettings.from_env({}) is None
    assert SignInSettings.from_env({"WSCHAT_OIDC_ISSUER": ""}) is None
    settings = SignInSettings.from_env(
        {"WSCHAT_OIDC_ISSUER": ISSUER + "/", "WSCHAT_OIDC_AUDIENCE": "client-123"}
    )
    assert settings == SignInSettings(ISSUER, "client-123")
    assert settings.discovery_url == f"{ISSUER}/.well-known/openid-configuration"
    assert settings.scope == "openid email profile"
    custom = SignInSettings.from_env(
        {
            "WSCHAT_OIDC_ISSUER": ISSUER,
            "WSCHAT_OIDC_AUDIENCE": "client-123",
            "WSCHAT_OIDC_METADATA_URL": "http://127.0.0.1:9/meta",
            "WSCHAT_OIDC_SCOPE": "openid",
        }
    )
    assert custom is not None
    assert (custom.discovery_url, custom.scope) == ("http://127.0.0.1:9/meta", "openid")
    with pytest.raises(AuthMisconfigured, match="WSCHAT_OIDC_AUDIENCE"):
        SignInSettings.from_env({"WSCHAT_OIDC_ISSUER": ISSUER})


# --- paths and methods ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/../../../pyproject.toml",
        "/index.html/../../../../pyproject.toml",
        "/..\\..\\pyproject.toml",
        "//etc/passwd",
        "/\x00",
        "/index.html\x00.js",
        "/" + "a" * 5000,
        "/nowhere.js",
        "/config.json/",
    ],
)
def test_paths_that_name_no_file_of_the_page_are_404(path: str) -> None:
    response = ChatPage(WEBSOCKET_URL).respond("GET", path)
    assert response.status == 404
    assert json.loads(response.body) == {"message": "Not Found"}


def test_other_methods_are_405_naming_the_allowed_ones() -> None:
    page = ChatPage(WEBSOCKET_URL)
    for path in ("/", "/app.js", "/config.json"):
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            response = page.respond(method, path)
            assert response.status == 405, (method, path)
            assert response.headers["Allow"] == "GET, HEAD"
    assert page.respond("POST", "/nowhere").status == 404


def test_head_answers_the_headers_of_get_without_a_body() -> None:
    page = ChatPage(WEBSOCKET_URL)
    for path in ("/", "/config.json"):
        head, get = page.respond("HEAD", path), page.respond("GET", path)
        assert (head.status, head.headers, head.body) == (200, get.headers, b"")
    assert page.respond("HEAD", "/nowhere").status == 404


# --- the page function on AWS ---------------------------------------------------------------------

AWS_WEBSOCKET_URL = "wss://abc123.execute-api.ap-northeast-2.amazonaws.com/prod"


def http_api_event(method: str, raw_path: str, stage: str = "$default") -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, as AWS documents it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"accept": "*/*", "host": "page123.execute-api.ap-northeast-2.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "page123",
            "domainName": "page123.execute-api.ap-northeast-2.amazonaws.com",
            "domainPrefix": "page123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": stage,
            "time": "10/Mar/2026:00:00:00 +0000",
            "timeEpoch": 1773100800000,
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def aws_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("WSCHAT_OIDC_ISSUER", "WSCHAT_OIDC_AUDIENCE", "WSCHAT_OIDC_METADATA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WSCHAT_WEBSOCKET_URL", AWS_WEBSOCKET_URL)
    page_handler.chat_page.cache_clear()
    yield
    page_handler.chat_page.cache_clear()


def test_the_page_function_serves_the_page_over_https(aws_page: None) -> None:
    answer = page_handler.lambda_handler(http_api_event("GET", "/"), None)

    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is False
    assert "<html" in answer["body"]
    headers = answer["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert "connect-src 'self' wss://abc123.execute-api" in headers["Content-Security-Policy"]

    config = page_handler.lambda_handler(http_api_event("GET", "/config.json"), None)
    assert json.loads(config["body"]) == {"websocketUrl": AWS_WEBSOCKET_URL, "signIn": None}
    script = page_handler.lambda_handler(http_api_event("GET", "/app.js"), None)
    assert script["headers"]["Content-Type"].startswith("text/javascript")


def test_the_page_function_refuses_traversal_other_methods_and_answers_head(
    aws_page: None,
) -> None:
    for raw_path in ("/%2e%2e/%2e%2e/pyproject.toml", "/..%2f..%2fpyproject.toml", "/x"):
        answer = page_handler.lambda_handler(http_api_event("GET", raw_path), None)
        assert answer["statusCode"] == 404, raw_path
    post = page_handler.lambda_handler(http_api_event("POST", "/"), None)
    assert (post["statusCode"], post["headers"]["Allow"]) == (405, "GET, HEAD")
    head = page_handler.lambda_handler(http_api_event("HEAD", "/"), None)
    assert (head["statusCode"], head["body"]) == (200, "")


def test_under_a_named_stage_the_stage_is_not_part_of_the_path(aws_page: None) -> None:
    for raw_path in ("/prod", "/prod/", "/prod/index.html"):
        answer = page_handler.lambda_handler(http_api_event("GET", raw_path, stage="prod"), None)
        assert answer["statusCode"] == 200, raw_path
        assert "<html" in answer["body"]


def test_the_page_function_takes_sign_in_from_its_environment(
    aws_page: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSCHAT_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("WSCHAT_OIDC_AUDIENCE", "client-123")
    # Nothing listens on port 9 of this machine: the read fails at once.
    monkeypatch.setenv("WSCHAT_OIDC_METADATA_URL", "http://127.0.0.1:9/.well-known/oidc")

    answer = page_handler.lambda_handler(http_api_event("GET", "/config.json"), None)

    assert answer["statusCode"] == 503
    assert page_handler.chat_page().sign_in == SignInSettings(
        ISSUER, "client-123", "http://127.0.0.1:9/.well-known/oidc"
    )


def test_the_page_function_imports_neither_boto3_nor_the_gateway() -> None:
    probe = (
        "import json, sys; import wschat.handlers.page as h; assert callable(h.lambda_handler);"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(json.loads(result.stdout))
    assert not {m for m in modules if m.split(".")[0] in ("boto3", "botocore", "websockets")}
    assert not {m for m in modules if m.startswith(("wschat.gateway", "wschat.cli"))}

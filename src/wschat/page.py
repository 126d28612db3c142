"""The chat page: the one place that serves ``web/`` and ``config.json``, for the local gateway
(``wschat serve``) and for the page function on AWS (``wschat.handlers.page``).

``ChatPage.respond(method, path)`` answers one request with the page's security headers: a
Content-Security-Policy under which only the page's own scripts and styles run and it connects
only to its stage (and the issuer's token endpoint when sign-in is on), no referrer (the sign-in
code is in the URL for a moment), no framing. With sign-in settings, ``config.json`` names the
issuer's endpoints from its discovery document, read once and kept; when it cannot be read,
``config.json`` answers 503 and the next request tries again.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wschat.auth import AuthMisconfigured, AuthUnavailable, fetch_json

log = logging.getLogger("wschat.page")

WEB_DIR = Path(__file__).resolve().parent / "web"
CONFIG_PATH = "/config.json"
DEFAULT_SCOPE = "openid email profile"
METHODS = ("GET", "HEAD")
# Fixed rather than the host's mime.types: with nosniff, a module script served as anything
# but JavaScript does not run.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# What a CSP source may be: an origin, nothing that could end the directive or add a source.
_ORIGIN = re.compile(r"(?:https?|wss?)://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, as a CSP source; ValueError if it is not one."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    value = f"{parts.scheme.lower()}://{host.lower()}"
    if not _ORIGIN.fullmatch(value):
        raise ValueError(f"not an http(s) or ws(s) URL: {url[:200]!r}")
    return value


@dataclass(frozen=True)
class SignInSettings:
    """How the page signs people in: the OIDC issuer and the app client it signs in as."""

    issuer: str
    client_id: str
    metadata_url: str | None = None
    scope: str = DEFAULT_SCOPE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SignInSettings | None:
        """From ``WSCHAT_OIDC_ISSUER``, ``_AUDIENCE``, ``_METADATA_URL`` and ``_SCOPE``; None
        without an issuer (the page asks for a name instead)."""
        issuer = (env.get("WSCHAT_OIDC_ISSUER") or "").rstrip("/")
        if not issuer:
            return None
        client_id = env.get("WSCHAT_OIDC_AUDIENCE") or ""
        if not client_id:
            raise AuthMisconfigured(
                "WSCHAT_OIDC_ISSUER is set without WSCHAT_OIDC_AUDIENCE: the page has no app "
                "client id to sign in as"
            )
        return cls(
            issuer=issuer,
            client_id=client_id,
            metadata_url=env.get("WSCHAT_OIDC_METADATA_URL") or None,
            scope=env.get("WSCHAT_OIDC_SCOPE") or DEFAULT_SCOPE,
        )

    @property
    def discovery_url(self) -> str:
        return self.metadata_url or f"{self.issuer}/.well-known/openid-configuration"


@dataclass(frozen=True)
class Endpoints:
    """The issuer's endpoints the page uses, from its discovery document."""

    authorization: str
    token: str
    end_session: str | None = None

    @classmethod
    def discovered(cls, document: Mapping[str, Any], settings: SignInSettings) -> Endpoints:
        """AuthUnavailable when ``document`` is not the issuer's or lacks an endpoint."""
        url = settings.discovery_url
        issuer = str(document.get("issuer") or "").rstrip("/")
        if issuer != settings.issuer:
            # OpenID Connect Discovery 4.3: the document must name the issuer it was read for.
            raise AuthUnavailable(f"{url} names issuer {issuer[:200]!r}, not {settings.issuer!r}")
        found: dict[str, str | None] = {}
        for key in ("authorization_endpoint", "token_endpoint", "end_session_endpoint"):
            value = document.get(key)
            if value is None and key == "end_session_endpoint":
                found[key] = None
                continue
            if not isinstance(value, str):
                raise AuthUnavailable(f"{url} names no {key}")
            try:
                if not origin(value).startswith(("https://", "http://")):
                    raise ValueError(value)
            except ValueError:
                raise AuthUnavailable(f"{url}: {key} is not an http(s) URL") from None
            found[key] = value
        token = found["token_endpoint"]
        authorization = found["authorization_endpoint"]
        assert token is not None and authorization is not None
        return cls(authorization, token, found["end_session_endpoint"])


@dataclass(frozen=True)
class PageResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers["Content-Type"]


@dataclass
class ChatPage:
    """The page of one stage: its files, its ``config.json`` and its headers.

    ``https`` when it is served over https (Strict-Transport-Security is sent then);
    ``fetch`` reads the discovery document (``wschat.auth.fetch_json``; tests pass a fake).
    Thread-safe: the discovery document is read by one request at a time.
    """

    websocket_url: str
    sign_in: SignInSettings | None = None
    https: bool = False
    web_dir: Path = WEB_DIR
    fetch: Callable[[str], dict[str, Any]] = fetch_json
    _endpoints: Endpoints | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._websocket_origin = origin(self.websocket_url)

    def respond(self, method: str, path: str) -> PageResponse:
        """The answer to ``method path`` (``path`` percent-decoded, without the query)."""
        target = None if path == CONFIG_PATH else self._file(path)
        if path != CONFIG_PATH and target is None:
            return self._json(404, {"message": "Not Found"})
        if method not in METHODS:
            response = self._json(405, {"message": "Method Not Allowed"})
            response.headers["Allow"] = ", ".join(METHODS)
            return response
        if target is None:
            response = self._config()
        else:
            content_type = CONTENT_TYPES.get(target.suffix.lower()) or (
                mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            )
            # Only a document's CSP governs what runs: the other files go with what is known,
            # without waiting on the issuer.
            endpoints = self._endpoints_or_none() if content_type.startswith("text/html") else None
            headers = self.headers(content_type, "no-cache", endpoints)
            response = PageResponse(200, headers, target.read_bytes())
        if method == "HEAD":
            return PageResponse(response.status, response.headers)
        return response

    def endpoints(self, *, read: bool = True) -> Endpoints | None:
        """The issuer's endpoints: None when sign-in is off (or, with ``read=False``, when they
        are not known yet). A document that cannot be read is not kept: AuthUnavailable, and
        the next call tries again."""
        if self.sign_in is None:
            return None
        with self._lock:
            if self._endpoints is None and read:
                self._endpoints = Endpoints.discovered(
                    self.fetch(self.sign_in.discovery_url), self.sign_in
                )
            return self._endpoints

    def _endpoints_or_none(self) -> Endpoints | None:
        try:
            return self.endpoints()
        except AuthUnavailable as exc:
            # The page still loads, to say so: config.json answers 503.
            log.warning("sign-in unavailable: %s", exc)
            return None

    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds; AuthUnavailable when the issuer cannot be read."""
        sign_in: dict[str, Any] | None = None
        endpoints = self.endpoints()
        if self.sign_in is not None and endpoints is not None:
            sign_in = {
                "issuer": self.sign_in.issuer,
                "clientId": self.sign_in.client_id,
                "authorizationEndpoint": endpoints.authorization,
                "tokenEndpoint": endpoints.token,
                "endSessionEndpoint": endpoints.end_session,
                "scope": self.sign_in.scope,
            }
        return {"websocketUrl": self.websocket_url, "signIn": sign_in}

    def content_security_policy(self, endpoints: Endpoints | None) -> str:
        connect = ["'self'", self._websocket_origin]
        if endpoints is not None:
            connect.append(origin(endpoints.token))
        return "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",  # the icon is a data: URL
                "connect-src " + " ".join(dict.fromkeys(connect)),
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            ]
        )

    def headers(
        self, content_type: str, cache_control: str, endpoints: Endpoints | None = None
    ) -> dict[str, str]:
        """Every response's headers; ``endpoints`` adds the token endpoint to connect-src."""
        if endpoints is None:
            endpoints = self.endpoints(read=False)
        headers = {
            "Content-Type": content_type,
            "Cache-Control": cache_control,
            "Content-Security-Policy": self.content_security_policy(endpoints),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        }
        if self.https:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return headers

    def _config(self) -> PageResponse:
        try:
            payload = self.config()
        except AuthUnavailable as exc:
            # The reason (a URL, a socket error) is for the operator's log, not the page.
            log.warning("sign-in unavailable: %s", exc)
            return self._json(
                503,
                {
                    "message": "Sign-in is unavailable: the issuer's discovery document could "
                    "not be read. Try again in a moment."
                },
            )
        return self._json(200, payload)

    def _json(self, status: int, payload: object) -> PageResponse:
        body = json.dumps(payload).encode()
        return PageResponse(status, self.headers("application/json", "no-store"), body)

    def _file(self, path: str) -> Path | None:
        """The file under ``web_dir`` that ``path`` names, or None (also for ``..``, a NUL, a
        name too long: anything that is not a file inside it)."""
        relative = path.lstrip("/") or "index.html"
        root = self.web_dir.resolve()
        try:
            target = (root / relative).resolve()
            found = (root in target.parents or target == root) and target.is_file()
        except (ValueError, OSError):
            found = False
        return target if found else None

"""Who a ``$connect`` token names: the one place tokens are checked (the authorizer function,
``wschat.handlers.authorize``, calls it once per connection).

Two kinds of token, told apart by their ``alg`` header and each checked only with its own key:

- **HS256** with the stage's secret (``WSCHAT_AUTH_SECRET``; ``wschat token`` issues them): the
  development setting. ``sub`` is the user name.
- **RS256/ES256 from an OIDC issuer** (``WSCHAT_OIDC_ISSUER`` and ``WSCHAT_OIDC_AUDIENCE``, e.g.
  a Cognito user pool and its app client): keys from the issuer's JWKS through PyJWT's
  ``PyJWKClient``, found through its discovery document (``WSCHAT_OIDC_METADATA_URL``, by
  default ``{issuer}/.well-known/openid-configuration``), cached for the life of the execution
  environment and fetched again for a ``kid`` the cache does not hold. The name comes from
  the first of ``preferred_username``, ``cognito:username``, ``username``, ``email`` (its part
  before the ``@``) and ``sub`` that is a valid chat name, or from ``WSCHAT_OIDC_NAME_CLAIM``.

A missing token is AuthError(401); a token that fails any check AuthError(403), as API Gateway
answers an authorizer's Deny; keys that cannot be read right now AuthUnavailable (the
authorizer fails: API Gateway answers 500). No message here holds the token.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from wschat import protocol

ALGORITHM = "HS256"
ISSUER_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256")
DEFAULT_TTL_SECONDS = 12 * 60 * 60
# A Cognito ID token is 1-2 KB; API Gateway refuses a request line past 10 KB anyway. Anything
# longer is refused before it is parsed.
MAX_TOKEN_CHARS = 8192
NAME_CLAIMS = ("preferred_username", "cognito:username", "username", "email", "sub")
FETCH_TIMEOUT_SECONDS = 5.0
LEEWAY_SECONDS = 0  # as PyJWT and aws-jwt-verify default: an expired token is expired


class AuthError(Exception):
    """The caller may not connect: ``status`` 401 (no token) or 403 (a bad one)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AuthUnavailable(Exception):
    """The issuer's keys could not be read: nobody can be checked until they can."""


class AuthMisconfigured(Exception):
    """The settings cannot check anyone (an issuer without an audience, say)."""


@dataclass(frozen=True)
class Identity:
    """Who a valid token names: ``name`` in the chat, ``subject`` the issuer's stable id."""

    name: str
    subject: str
    issuer: str | None = None

    def context(self) -> dict[str, str]:
        """The authorizer's context: every later event of the connection carries it."""
        context = {"name": self.name, "sub": self.subject}
        if self.issuer is not None:
            context["iss"] = self.issuer
        return context


@dataclass(frozen=True)
class AuthSettings:
    secret: str | None = None
    issuer: str | None = None
    audience: str | None = None
    metadata_url: str | None = None
    name_claim: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthSettings:
        issuer = (env.get("WSCHAT_OIDC_ISSUER") or "").rstrip("/") or None
        return cls(
            secret=env.get("WSCHAT_AUTH_SECRET") or None,
            issuer=issuer,
            audience=env.get("WSCHAT_OIDC_AUDIENCE") or None,
            metadata_url=env.get("WSCHAT_OIDC_METADATA_URL") or None,
            name_claim=env.get("WSCHAT_OIDC_NAME_CLAIM") or None,
        )

    @property
    def enabled(self) -> bool:
        """Whether connects need a token at all."""
        return self.secret is not None or self.issuer is not None

    @property
    def discovery_url(self) -> str | None:
        if self.metadata_url is not None:
            return self.metadata_url
        if self.issuer is None:
            return None
        return f"{self.issuer}/.well-known/openid-configuration"


def issue_token(name: str, secret: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
    protocol.check_name(name, None)
    now = int(time.time())
    return jwt.encode({"sub": name, "iat": now, "exp": now + ttl_seconds}, secret, ALGORITHM)


def verify_token(token: str | None, secret: str) -> str:
    """The user name a valid HS256 token carries; AuthError(401 | 403) otherwise."""
    return TokenVerifier(AuthSettings(secret=secret)).verify(token).name


def fetch_json(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET a JSON object; AuthUnavailable when it cannot be had."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            document = json.load(response)
    except (OSError, ValueError) as exc:
        raise AuthUnavailable(f"could not read {url}: {exc}") from None
    if not isinstance(document, dict):
        raise AuthUnavailable(f"{url} did not answer a JSON object")
    return document


class TokenVerifier:
    """Checks tokens with ``settings``; keep one per execution environment, so the issuer's
    discovery document and keys are fetched once, not once per connect. Thread-safe."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.issuer is not None and settings.audience is None:
            raise AuthMisconfigured(
                "WSCHAT_OIDC_ISSUER is set without WSCHAT_OIDC_AUDIENCE (the app client id): "
                "tokens issued to any other client of that issuer would be accepted"
            )
        self.settings = settings
        self._lock = threading.Lock()
        self._keys: jwt.PyJWKClient | None = None

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError(401, "a token is required: connect with ?token=...")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(403, f"invalid token: longer than {MAX_TOKEN_CHARS} characters")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise AuthError(403, "invalid token: not a JWT") from None
        except (UnicodeError, ValueError, TypeError):  # a lone surrogate, a non-object header
            raise AuthError(403, "invalid token: not a JWT") from None
        if algorithm == ALGORITHM and self.settings.secret is not None:
            return self._verify_with_secret(token, self.settings.secret)
        if algorithm in ISSUER_ALGORITHMS and self.settings.issuer is not None:
            return self._verify_with_issuer(token, self.settings.issuer)
        raise AuthError(403, f"invalid token: {str(algorithm)[:16]!r} tokens are not accepted")

    def _verify_with_secret(self, token: str, secret: str) -> Identity:
        claims = _decode(token, secret, ALGORITHM, require=["exp", "sub"])
        name = _name(claims.get("sub"), "sub")
        return Identity(name=name, subject=name)

    def _verify_with_issuer(self, token: str, issuer: str) -> Identity:
        try:
            key = self._key_client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable(f"the issuer's keys could not be read: {exc}") from None
        except jwt.PyJWKClientError:
            # No key with the token's kid, even after fetching the set again.
            raise AuthError(
                403, "invalid token: signed with a key the issuer does not publish"
            ) from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise AuthError(403, "invalid token: not a JWT") from None
        claims = _decode(
            token, key.key, key.algorithm_name, require=["exp", "iss", "sub"], issuer=issuer
        )
        _check_audience(claims, self.settings.audience)
        if claims.get("token_use", "id") not in ("id", "access"):
            raise AuthError(403, "invalid token: not an ID or access token")
        return Identity(
            name=self._oidc_name(claims), subject=str(claims["sub"])[:256], issuer=issuer
        )

    def _oidc_name(self, claims: Mapping[str, Any]) -> str:
        wanted = (self.settings.name_claim,) if self.settings.name_claim else NAME_CLAIMS
        for claim in wanted:
            value = claims.get(claim)
            if not isinstance(value, str):
                continue
            if claim == "email":
                value = value.partition("@")[0]
            try:
                return protocol.check_name(value, None, claim)
            except protocol.ProtocolError:
                continue
        raise AuthError(403, f"invalid token: none of {', '.join(wanted)} is a valid chat name")

    def _key_client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                url = self.settings.discovery_url
                assert url is not None
                jwks_uri = fetch_json(url).get("jwks_uri")
                if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https:", "http:")):
                    raise AuthUnavailable(f"{url} names no jwks_uri")
                # A failed discovery is not cached: the next connect tries again.
                self._keys = jwt.PyJWKClient(
                    jwks_uri, cache_keys=True, lifespan=3600, timeout=FETCH_TIMEOUT_SECONDS
                )
            return self._keys


def _decode(
    token: str, key: Any, algorithm: str, *, require: list[str], issuer: str | None = None
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            # The audience is checked by _check_audience: Cognito's access tokens name it in
            # client_id, not aud.
            options={"require": require, "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(403, "token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError(403, "invalid token: not valid yet") from None
    except jwt.InvalidIssuerError:
        raise AuthError(403, "invalid token: issued by someone else") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(403, f"invalid token: {exc}") from None
    except (UnicodeError, ValueError, TypeError):
        raise AuthError(403, "invalid token: not a JWT") from None
    return claims


def _check_audience(claims: Mapping[str, Any], audience: str | None) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud] if aud is not None else []
    if audience in audiences or (aud is None and claims.get("client_id") == audience):
        return
    raise AuthError(403, "invalid token: issued for another client")


def _name(value: object, claim: str) -> str:
    try:
        return protocol.check_name(str(value), None, claim)
    except protocol.ProtocolError as exc:
        raise AuthError(403, f"invalid token: {exc.message}") from None

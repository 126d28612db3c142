"""Who a ``$connect`` token names: the one place tokens are checked (the authorizer function,
``wschat.handlers.authorize``, calls it once per connection).

Two kinds of token, told apart by their ``alg`` header and each checked only with its own key:

- **HS256** with the stage's secret (``WSCHAT_AUTH_SECRET``; ``wschat token`` issues them): the
  development setting. ``sub`` is the user name.
- **RS256/ES256 from an OIDC issuer** (``WSCHAT_OIDC_ISSUER`` and ``WSCHAT_OIDC_AUDIENCE``, e.g.
  a Cognito user pool and its app client): keys from the issuer's JWKS (read and parsed by
  PyJWT's ``PyJWKClient``), found through its discovery document (``WSCHAT_OIDC_METADATA_URL``,
  by default ``{issuer}/.well-known/openid-configuration``), kept for an hour by the execution
  environment and fetched again for a ``kid`` they do not hold (a rotation), at most once per
  ``REFRESH_COOLDOWN_SECONDS``: tokens naming made-up kids do not each cost a fetch. A failed
  discovery or fetch is not kept: the next connect tries again. The name comes from
  the first of ``cognito:username``, ``username`` (the pool's own user name, unique and fixed:
  Cognito's ID and access tokens), ``preferred_username``, ``email`` (its part before the
  ``@``, only when ``email_verified``) and ``sub`` that is a valid chat name, or from
  ``WSCHAT_OIDC_NAME_CLAIM``. The user name goes first because a signed-in user may change
  their own ``preferred_username`` and ``email`` (Cognito's UpdateUserAttributes) to another
  user's name.

A token is three canonical base64url segments (RFC 7515's compact form, no padding), so each
token has one spelling. A missing token is AuthError(401); a token that fails any check
AuthError(403), as API Gateway answers an authorizer's Deny; keys that cannot be read right now
(the issuer unreachable, its JWKS no key set) AuthUnavailable (the authorizer fails: API Gateway
answers 500). No message here holds the token or any part of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
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
NAME_CLAIMS = ("cognito:username", "username", "preferred_username", "email", "sub")
FETCH_TIMEOUT_SECONDS = 5.0
KEYS_LIFESPAN_SECONDS = 3600.0
REFRESH_COOLDOWN_SECONDS = 30.0  # as recent PyJWKClients default to
MAX_SUBJECT_CHARS = 256
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
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
    discovery document and keys are fetched once, not once per connect. Thread-safe.
    ``clock`` (monotonic seconds) times the key set's lifespan and the refresh cooldown."""

    def __init__(
        self, settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if settings.issuer is not None and settings.audience is None:
            raise AuthMisconfigured(
                "WSCHAT_OIDC_ISSUER is set without WSCHAT_OIDC_AUDIENCE (the app client id): "
                "tokens issued to any other client of that issuer would be accepted"
            )
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str, jwt.PyJWK] | None = None  # by kid
        self._fetched_at = 0.0  # when _keys were fetched
        self._tried_at = 0.0  # the last fetch of the key set, whatever came of it

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError(401, "a token is required: connect with ?token=...")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(403, f"invalid token: longer than {MAX_TOKEN_CHARS} characters")
        if not _compact_form(token):
            raise AuthError(403, "invalid token: not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
            # Not JSON, not an object, nested past the parser's depth.
            raise AuthError(403, "invalid token: not a JWT") from None
        algorithm = header.get("alg")
        if algorithm == ALGORITHM and self.settings.secret is not None:
            return self._verify_with_secret(token, self.settings.secret)
        if algorithm in ISSUER_ALGORITHMS and self.settings.issuer is not None:
            return self._verify_with_issuer(token, header.get("kid"), self.settings.issuer)
        raise AuthError(403, f"invalid token: {str(algorithm)[:16]!r} tokens are not accepted")

    def _verify_with_secret(self, token: str, secret: str) -> Identity:
        claims = _decode(token, secret, ALGORITHM, require=["exp", "sub"])
        name = _name(claims.get("sub"), "sub")
        return Identity(name=name, subject=name)

    def _verify_with_issuer(self, token: str, kid: object, issuer: str) -> Identity:
        key = self._signing_key(kid)
        claims = _decode(
            token, key.key, key.algorithm_name, require=["exp", "iss", "sub"], issuer=issuer
        )
        _check_audience(claims, self.settings.audience)
        if claims.get("token_use", "id") not in ("id", "access"):
            raise AuthError(403, "invalid token: not an ID or access token")
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            # API Gateway fails an Allow without a principalId; a cut one could name another.
            raise AuthError(403, f'invalid token: "sub" is not 1-{MAX_SUBJECT_CHARS} characters')
        return Identity(name=self._oidc_name(claims), subject=subject, issuer=issuer)

    def _oidc_name(self, claims: Mapping[str, Any]) -> str:
        wanted = (self.settings.name_claim,) if self.settings.name_claim else NAME_CLAIMS
        for claim in wanted:
            value = claims.get(claim)
            if not isinstance(value, str):
                continue
            if claim == "email":
                if claims.get("email_verified") not in (True, "true"):
                    continue  # anyone may type any address; only a verified one names them
                value = value.partition("@")[0]
            try:
                return protocol.check_name(value, None, claim)
            except protocol.ProtocolError:
                continue
        raise AuthError(403, f"invalid token: none of {', '.join(wanted)} is a valid chat name")

    def _signing_key(self, kid: object) -> jwt.PyJWK:
        """The issuer's key named ``kid``: from the key set kept, else from a fresh one
        (a rotation) unless the set was fetched less than the cooldown ago."""
        if not isinstance(kid, str) or not kid:
            raise AuthError(403, "invalid token: it names no key (kid)")
        with self._lock:
            if self._keys is None or self.clock() - self._fetched_at >= KEYS_LIFESPAN_SECONDS:
                self._fetch_keys()
            assert self._keys is not None
            key = self._keys.get(kid)
            if key is None and self.clock() - self._tried_at >= REFRESH_COOLDOWN_SECONDS:
                self._fetch_keys()
                key = self._keys.get(kid)
        if key is None:
            raise AuthError(403, "invalid token: signed with a key the issuer does not publish")
        return key

    def _fetch_keys(self) -> None:
        """Fetch the issuer's signing keys (the lock held); AuthUnavailable when they cannot be
        had, keeping what was kept before."""
        client = self._jwks_client()
        self._tried_at = self.clock()
        try:
            found = client.get_signing_keys(refresh=True)
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable(f"the issuer's keys could not be read: {exc}") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            # Not JSON, not a JWK set, no signing key in it: nobody can be checked, which is
            # the issuer's failure, not the token's.
            raise AuthUnavailable(
                f"{client.uri} holds no usable signing key ({type(exc).__name__})"
            ) from None
        self._keys = {
            key.key_id: key
            for key in found
            if key.key_id and key.algorithm_name in ISSUER_ALGORITHMS
        }
        self._fetched_at = self._tried_at

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            url = self.settings.discovery_url
            assert url is not None
            jwks_uri = fetch_json(url).get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https:", "http:")):
                raise AuthUnavailable(f"{url} names no jwks_uri")
            # A failed discovery is not kept: the next connect tries again. The key set is kept
            # here (_keys), not by the client.
            self._client = jwt.PyJWKClient(
                jwks_uri, cache_jwk_set=False, timeout=FETCH_TIMEOUT_SECONDS
            )
        return self._client


def _compact_form(token: str) -> bool:
    """Whether ``token`` is three base64url segments, each as base64url spells its bytes (no
    padding, no stray bits or characters): one spelling per token, so a token changed in any
    character is another token, not the same one accepted again."""
    segments = token.split(".")
    if len(segments) != 3:
        return False
    for segment in segments:
        if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
            return False
        try:
            decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError):
            return False
        if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != segment:
            return False
    return True


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
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(403, f'invalid token: no "{exc.claim}" claim') from None
    except jwt.InvalidSignatureError:
        raise AuthError(403, "invalid token: the signature does not match") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(403, "invalid token: not signed as its key signs") from None
    except jwt.InvalidTokenError as exc:
        # Not str(exc): PyJWT's messages may quote the token's header.
        raise AuthError(403, f"invalid token: {type(exc).__name__}") from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
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

"""Optional token auth for ``$connect``: HS256 JWTs whose ``sub`` is the user name.

Off unless a secret is configured (``WSCHAT_AUTH_SECRET``). A missing token is refused with 401,
a forged, malformed or expired one with 403, as API Gateway answers a failed authorizer.
"""

from __future__ import annotations

import time

import jwt

from wschat import protocol

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 12 * 60 * 60


class AuthError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def issue_token(name: str, secret: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
    protocol.check_name(name, None)
    now = int(time.time())
    return jwt.encode({"sub": name, "iat": now, "exp": now + ttl_seconds}, secret, ALGORITHM)


def verify_token(token: str | None, secret: str) -> str:
    """The user name a valid token carries; AuthError(401 | 403) otherwise."""
    if not token:
        raise AuthError(401, "a token is required: connect with ?token=...")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(403, "token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(403, f"invalid token: {exc}") from None
    except (UnicodeError, ValueError):  # e.g. a lone surrogate: not a token at all
        raise AuthError(403, "invalid token: not a JWT") from None
    name = claims.get("sub")
    try:
        return protocol.check_name(str(name), None, "sub")
    except protocol.ProtocolError as exc:
        raise AuthError(403, f"invalid token: {exc.message}") from None

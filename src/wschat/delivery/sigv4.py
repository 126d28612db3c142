"""AWS Signature Version 4 for body-carrying requests without a query string, with hashlib/hmac.

What botocore's ``SigV4Auth`` does for a service other than S3, minus its per-request machinery,
so a fan-out can sign a thousand posts cheaply: the caller hashes the body once
(:func:`payload_hash`) and the signing key is derived once per day and secret. Signed headers
are ``host``, ``x-amz-date`` and, with temporary credentials, ``x-amz-security-token``; the
canonical URI percent-encodes the already encoded wire path a second time, as AWS expects for
every service but S3. No botocore import: credentials come in as :class:`Credentials`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None  # temporary credentials: sent and signed as X-Amz-Security-Token


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def amz_date(epoch_seconds: float | None = None) -> str:
    """``20240501T120000Z``, the X-Amz-Date form; now when no time is given."""
    return time.strftime(AMZ_DATE_FORMAT, time.gmtime(epoch_seconds))


def canonical_uri(path: str) -> str:
    """The canonical URI of a wire path (already percent-encoded): dot segments and empty
    segments removed (as botocore's ``remove_dot_segments``), then percent-encoded again."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalized = "/".join(segments)
    if path.startswith("/"):
        normalized = "/" + normalized
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(normalized or "/", safe="/~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class Signer:
    """Signs requests to one service in one region; safe to share between threads."""

    def __init__(self, service: str, region: str) -> None:
        self.service = service
        self.region = region
        self._key: tuple[str, str, bytes] | None = None  # (secret, yyyymmdd, signing key)

    def signing_key(self, secret_key: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret_key and cached[1] == day:
            return cached[2]
        key = _hmac(f"AWS4{secret_key}".encode(), day)
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        self._key = (secret_key, day, key)  # one tuple swap: readers see old or new, whole
        return key

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        body_sha256: str,
        credentials: Credentials,
        timestamp: str | None = None,
    ) -> dict[str, str]:
        """Host, X-Amz-Date, X-Amz-Security-Token (if any) and Authorization for one request.

        ``host`` is the Host header as sent (lower case, port only if not the scheme's
        default), ``path`` the percent-encoded path as sent, ``timestamp`` an :func:`amz_date`.
        """
        timestamp = timestamp or amz_date()
        day = timestamp[:8]
        token = credentials.token
        canonical_headers = f"host:{host}\nx-amz-date:{timestamp}\n"
        signed_headers = "host;x-amz-date"
        if token:
            canonical_headers += f"x-amz-security-token:{' '.join(token.split())}\n"
            signed_headers += ";x-amz-security-token"
        canonical_request = "\n".join(
            (method, canonical_uri(path), "", canonical_headers, signed_headers, body_sha256)
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                timestamp,
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        signature = hmac.new(
            self.signing_key(credentials.secret_key, day),
            string_to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        headers = {"Host": host, "X-Amz-Date": timestamp}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return headers

"""API Gateway's IAM authorization of @connections requests: AWS Signature Version 4, checked.

With management credentials configured, the gateway accepts an @connections request only when it
carries a valid ``AWS4-HMAC-SHA256`` Authorization header made with them, as API Gateway does for
a caller's IAM credentials: scope service ``execute-api`` (any region: the local gateway has
none), ``host`` and ``x-amz-date`` among the signed headers, X-Amz-Date within 15 minutes of the
gateway's clock, and a signature over the request exactly as it arrived (method, wire path,
query, signed headers, body). The signing steps are the client's own
(``wschat.delivery.sigv4``); this module rebuilds the canonical request from the wire and
compares.

Every refusal is :class:`SignatureRejected`, whose message is the one AWS gives for that case.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

from wschat.delivery.sigv4 import (
    ALGORITHM,
    AMZ_DATE_FORMAT,
    Credentials,
    Signer,
    canonical_uri,
    payload_hash,
)
from wschat.gateway import http

SERVICE = "execute-api"
# How far X-Amz-Date may be from the gateway's clock, either way (AWS's own window).
MAX_SKEW_SECONDS = 15 * 60
ACCESS_KEY_ENV = "WSCHAT_MANAGEMENT_ACCESS_KEY_ID"
SECRET_KEY_ENV = "WSCHAT_MANAGEMENT_SECRET_ACCESS_KEY"

MISSING_TOKEN = "Missing Authentication Token"
UNKNOWN_KEY = "The security token included in the request is invalid."
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


class SignatureRejected(Exception):
    """The request is not signed, or not signed right, with the configured credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_credentials(text: str) -> Credentials:
    """``ACCESS_KEY:SECRET`` (the secret may itself hold ``:``)."""
    access_key, sep, secret_key = text.partition(":")
    if not sep or not access_key.strip() or not secret_key.strip():
        raise ValueError("expected ACCESS_KEY:SECRET")
    return Credentials(access_key.strip(), secret_key.strip())


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials in WSCHAT_MANAGEMENT_ACCESS_KEY_ID / _SECRET_ACCESS_KEY, if both are set."""
    env = os.environ if env is None else env
    access_key = env.get(ACCESS_KEY_ENV, "").strip()
    secret_key = env.get(SECRET_KEY_ENV, "").strip()
    if not access_key and not secret_key:
        return None
    if not access_key or not secret_key:
        raise ValueError(f"set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or neither")
    return Credentials(access_key, secret_key)


def _parse_authorization(value: str) -> tuple[str, list[str], list[str], str]:
    """(credential scope parts, signed header names, signature) of an Authorization header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected(MISSING_TOKEN)
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)
    ]
    if missing:
        raise SignatureRejected(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={value.strip()[:200]}"
        )
    access_key, _, scope = fields["Credential"].partition("/")
    return (
        access_key,
        scope.split("/"),
        fields["SignedHeaders"].split(";"),
        fields["Signature"],
    )


def _canonical_query(raw_query: str) -> str:
    """Each name and value decoded, then encoded as SigV4 wants (RFC 3986 unreserved kept),
    sorted by name then value."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_headers(headers: Sequence[tuple[str, str]], signed: list[str]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def _check_time(timestamp: str, now: float) -> None:
    try:
        signed_at = calendar.timegm(time.strptime(timestamp, AMZ_DATE_FORMAT))
    except ValueError:
        raise SignatureRejected(
            f"Date must be in ISO-8601 'basic format'. Got '{timestamp[:40]}'."
        ) from None
    window = MAX_SKEW_SECONDS
    now_text = time.strftime(AMZ_DATE_FORMAT, time.gmtime(now))
    if signed_at < now - window:
        earliest = time.strftime(AMZ_DATE_FORMAT, time.gmtime(now - window))
        raise SignatureRejected(
            f"Signature expired: {timestamp} is now earlier than {earliest} ({now_text} - 15 min.)"
        )
    if signed_at > now + window:
        latest = time.strftime(AMZ_DATE_FORMAT, time.gmtime(now + window))
        raise SignatureRejected(
            f"Signature not yet current: {timestamp} is still later than {latest} "
            f"({now_text} + 15 min.)"
        )


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    credentials: Credentials,
    now: float | None = None,
    service: str = SERVICE,
) -> None:
    """Return if the request is signed with ``credentials`` for ``service`` (``execute-api``
    for @connections, ``sqs`` for the local SQS API); else raise SignatureRejected.

    ``raw_path`` and ``raw_query`` are as they arrived (still percent-encoded), ``headers`` every
    header line in order.
    """
    authorization = [value for name, value in headers if name.lower() == "authorization"]
    if not authorization:
        raise SignatureRejected(MISSING_TOKEN)
    access_key, scope, signed, signature = _parse_authorization(authorization[0])
    if len(scope) != 4 or scope[3] != "aws4_request":
        raise SignatureRejected(
            f"Credential should be scoped to a valid region. Credential={access_key}/"
            + "/".join(scope)
        )
    day, region, scoped_service, _ = scope
    if scoped_service != service:
        raise SignatureRejected(f"Credential should be scoped to correct service: '{service}'.")
    # Compared in constant time: the answer must not tell how much of a key was right.
    if not hmac.compare_digest(access_key.encode(), credentials.access_key.encode()):
        raise SignatureRejected(UNKNOWN_KEY)
    if "host" not in signed:
        raise SignatureRejected("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in signed:
        raise SignatureRejected("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    timestamp = next((value for name, value in headers if name.lower() == "x-amz-date"), "")
    _check_time(timestamp, time.time() if now is None else now)
    if day != timestamp[:8]:
        raise SignatureRejected(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{day}' != '{timestamp[:8]}', from '{timestamp}'."
        )
    canonical_request = "\n".join(
        (
            method,
            canonical_uri(raw_path),
            _canonical_query(raw_query),
            _canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash(body),  # the body as it arrived: a changed byte changes the signature
        )
    )
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            timestamp,
            "/".join(scope),
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    key = Signer(service, region).signing_key(credentials.secret_key, day)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureRejected(BAD_SIGNATURE)


def is_loopback(peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def access_refused(
    request: http.Request,
    peer: str,
    credentials: Credentials | None,
    *,
    api: str,
    service: str = SERVICE,
) -> str | None:
    """Why a request to one of the gateway's AWS APIs (``api``, for the message) is not
    served, or None. With credentials, it must be signed with them for ``service``; without,
    it must come from this machine: an unsigned API reachable from elsewhere would let anyone
    post to every connection or read every queue."""
    if credentials is None:
        if is_loopback(peer):
            return None
        return (
            f"the {api} answers only this machine unless the gateway has management "
            "credentials (wschat serve --management-credentials) to check signatures with"
        )
    _, _, raw_query = request.target.partition("?")
    try:
        verify(
            request.method,
            request.raw_path,
            raw_query.partition("#")[0],
            request.headers,
            request.body,
            credentials,
            service=service,
        )
    except SignatureRejected as rejected:
        return rejected.message
    return None

"""Sender for API Gateway's Management API (@connections): the real one on AWS.

Posts, the hot path of every fan-out, skip boto3: each ``POST /{stage}/@connections/{id}`` is
signed with AWS Signature Version 4 here (:mod:`wschat.delivery.sigv4`) and sent over one
urllib3 connection pool as large as the fan-out's thread pool. boto3's ``post_to_connection``
spent ~1.1 ms of CPU per call (building, signing and parsing the request, event hooks), taken
in turns on the GIL, which capped a 64-thread fan-out at ~850 posts/s; this path spends ~0.35
ms (bench/README.md). Computed once: the body's SHA-256 per fan-out, the signing key per day
and secret, the credentials per fan-out (botocore's credential chain, which refreshes
temporary ones). The request is the one boto3 would send: same path encoding, same signed
headers, same signature (tests/unit/test_sigv4.py). ``get`` and ``delete`` are rare and stay
on boto3's ``apigatewaymanagementapi`` client.

Answers: 2xx delivered; 410 GoneConnection; 429 and 5xx retried with exponential backoff and
full jitter (:mod:`wschat.delivery.pacing`): once when no deadline is given (a post inside a
chat action), else until the deadline (a delivery job's time), then DeliveryError; anything
else DeliveryError naming the status and ``x-amzn-ErrorType``. A sender built with ``rate``
paces its posts with a token bucket: the delivery workers' share of the account's budget.

urllib3 ships with botocore, so it is in Lambda's runtime; like boto3 it is imported on first
use, never at a handler's import.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from wschat.delivery.base import (
    API_GATEWAY_INLINE_LIMIT,
    DeliveryError,
    FanoutResult,
    GoneConnection,
    post_many_each,
)
from wschat.delivery.pacing import Backoff, TokenBucket
from wschat.delivery.sigv4 import Credentials, Signer, payload_hash

DEFAULT_FANOUT_WORKERS = 64
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
RETRY_BACKOFF = Backoff(base=0.05, cap=2.0)  # before each retry of a 429 or 5xx
SERVICE = "execute-api"

_EXECUTE_API_HOST = re.compile(
    r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$", re.IGNORECASE
)


def management_endpoint(domain_name: str, stage: str) -> str:
    """The @connections endpoint for an event's domainName and stage.

    ``AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`` (botocore's standard per-service override) wins,
    which is how the local gateway points plain-HTTP clients at itself.
    """
    override = os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
    if override:
        return override.rstrip("/")
    return f"https://{domain_name}/{stage}"


def region_for(host: str) -> str | None:
    """The region to sign for: from ``{api}.execute-api.{region}.amazonaws.com``, else (custom
    domains, the local gateway) ``AWS_REGION`` or ``AWS_DEFAULT_REGION``."""
    match = _EXECUTE_API_HOST.match(host)
    if match:
        return match.group(1).lower()
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def connection_path(endpoint_path: str, connection_id: str) -> str:
    """``{endpoint path}/@connections/{id}`` as sent, the id percent-encoded as botocore's
    rest serializer does it: all but unreserved characters, ``/`` ``+`` ``=`` included."""
    return f"{endpoint_path.rstrip('/')}/@connections/{quote(connection_id, safe='~')}"


def _host_header(url: str) -> str:
    """The Host header as botocore signs it: lower case, the port only if not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _describe(status: int, headers: Any, body: bytes) -> str:
    """``HTTP 403 ForbiddenException: Forbidden``: the status, x-amzn-ErrorType (without what
    follows a ``:`` in it, as botocore reads it) and the message of the JSON body, if any."""
    error_type = str(headers.get("x-amzn-ErrorType") or "").split(":")[0]
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {"message": body[:200].decode("utf-8", "replace")}
    message = ""
    if isinstance(document, dict):
        message = str(document.get("message") or document.get("Message") or "")
    described = f"HTTP {status}"
    if error_type:
        described += f" {error_type}"
    return f"{described}: {message}" if message else described


class ApiGatewaySender:
    """Posts through API Gateway's Management API; 410 GoneException becomes GoneConnection.

    Built once per endpoint and kept while the execution environment is warm: the thread pool,
    the HTTP connections, the credentials and the boto3 client are made on first use (under a
    lock: fan-outs may start from several threads) and reused.
    """

    inline_limit: int | None = API_GATEWAY_INLINE_LIMIT

    def __init__(
        self,
        endpoint_url: str,
        *,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
        region: str | None = None,
        rate: float | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url.rstrip("/")
        parts = urlsplit(self._endpoint_url)
        self._host = _host_header(self._endpoint_url)
        self._path = parts.path
        self._region = region or region_for(parts.hostname or "")
        self._max_workers = max_workers
        # Posts a second this sender may make (None: unpaced), shared by its threads.
        self._bucket = TokenBucket(rate) if rate else None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._http: Any = None  # urllib3.HTTPConnectionPool
        self._botocore: Any = None  # botocore.session.Session, under self._session
        self._session: Any = None  # boto3.Session
        self._credentials: Any = None  # botocore Credentials, maybe refreshable
        self._signer: Signer | None = None

    @classmethod
    def for_endpoint(
        cls,
        endpoint_url: str,
        *,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
        rate: float | None = None,
    ) -> ApiGatewaySender:
        return cls(endpoint_url, max_workers=max_workers, rate=rate)

    # -- built on first use ----------------------------------------------------------------

    def _boto3_session(self) -> Any:
        # Called with self._lock held.
        if self._session is None:
            import boto3
            import botocore.session

            self._botocore = botocore.session.get_session()
            self._session = boto3.Session(botocore_session=self._botocore)
            if self._region is None:
                self._region = self._session.region_name  # ~/.aws/config, AWS_PROFILE
        return self._session

    def _http_pool(self) -> Any:
        http = self._http
        if http is not None:
            return http
        with self._lock:
            if self._http is None:
                import urllib3

                options: dict[str, Any] = {}
                if self._endpoint_url.startswith("https:"):
                    options["ssl_context"] = self._ssl_context()
                self._http = urllib3.connection_from_url(
                    self._endpoint_url,
                    maxsize=self._max_workers,
                    block=False,
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                    retries=False,
                    **options,
                )
            return self._http

    def _ssl_context(self) -> Any:
        """One context for every connection, trusting what botocore trusts: AWS_CA_BUNDLE (or
        ca_bundle in the AWS config), else botocore's default bundle."""
        from botocore.httpsession import get_cert_path
        from urllib3.util.ssl_ import create_urllib3_context

        self._boto3_session()
        bundle = self._botocore.get_config_variable("ca_bundle")
        context = create_urllib3_context()
        context.load_verify_locations(cafile=bundle or get_cert_path(True))
        return context

    def _signing(self) -> tuple[Signer, Credentials]:
        """The signer and the current credentials (botocore refreshes temporary ones)."""
        with self._lock:
            if self._signer is None:
                session = self._boto3_session()
                self._credentials = session.get_credentials()
                if self._credentials is None:
                    raise DeliveryError("no AWS credentials to sign @connections calls with")
                if not self._region:
                    raise DeliveryError(
                        f"no AWS region for {self._host}: set AWS_REGION or AWS_DEFAULT_REGION"
                    )
                self._signer = Signer(SERVICE, self._region)
            signer, source = self._signer, self._credentials
        try:
            frozen = source.get_frozen_credentials()
        except Exception as exc:  # a failed refresh: botocore's own error types
            raise DeliveryError(f"refreshing AWS credentials failed: {exc}") from exc
        return signer, Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    def _thread_pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                # Kept for the life of the execution environment: warm invocations reuse it.
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="fanout")
            return self._pool

    # -- posting ---------------------------------------------------------------------------

    def _post(
        self,
        connection_id: str,
        data: bytes,
        body_sha256: str,
        signer: Signer,
        credentials: Credentials,
        deadline: float | None = None,
    ) -> None:
        """One signed POST, paced when the sender has a rate. A 429 or 5xx answer is retried
        after a backoff: once without a ``deadline`` (a ``time.monotonic()`` value), else
        while the next try can start before it. A connection that failed before the request
        went out is retried once (not a read timeout: that post may have been delivered)."""
        from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError

        http = self._http_pool()
        path = connection_path(self._path, connection_id)
        reconnected = False
        attempt = 0
        while True:
            if self._bucket is not None and not self._bucket.acquire(deadline):
                raise DeliveryError(f"post {connection_id}: no time left within the budget")
            headers = signer.headers("POST", self._host, path, body_sha256, credentials)
            try:
                response = http.urlopen(
                    "POST",
                    path,
                    body=data,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                )
            except (ConnectTimeoutError, ProtocolError) as exc:
                # No connection, or a kept-alive one the server had closed.
                if not reconnected:
                    reconnected = True
                    continue
                raise DeliveryError(f"post {connection_id}: {exc}") from exc
            except HTTPError as exc:
                raise DeliveryError(f"post {connection_id}: {exc}") from exc
            status = int(response.status)
            if 200 <= status < 300:
                return
            if status == 410:
                raise GoneConnection(connection_id)
            if status == 429 or status >= 500:
                attempt += 1
                wait = RETRY_BACKOFF.delay(attempt)
                if deadline is None and attempt == 1:
                    time.sleep(max(wait, 0.05))
                    continue
                if deadline is not None and time.monotonic() + wait < deadline:
                    time.sleep(wait)
                    continue
            reason = _describe(status, response.headers, response.data)
            raise DeliveryError(f"post {connection_id}: {reason}")

    def post(self, connection_id: str, data: bytes) -> None:
        signer, credentials = self._signing()
        self._post(connection_id, data, payload_hash(data), signer, credentials)

    def post_many(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> FanoutResult:
        """Post ``data`` to each id from the thread pool; with ``deadline`` (a
        ``time.monotonic()`` value) throttled posts are retried until it."""
        result = FanoutResult()
        if not connection_ids:
            return result
        try:
            signer, credentials = self._signing()
        except DeliveryError as exc:
            result.failed = dict.fromkeys(connection_ids, str(exc))
            return result
        body_sha256 = payload_hash(data)  # the same body for every recipient

        def post_one(connection_id: str) -> tuple[str, Exception | None]:
            try:
                self._post(connection_id, data, body_sha256, signer, credentials, deadline)
            except Exception as exc:  # one recipient's failure never stops the others
                return connection_id, exc
            return connection_id, None

        for connection_id, error in self._thread_pool().map(post_one, connection_ids):
            if error is None:
                result.delivered += 1
            elif isinstance(error, GoneConnection):
                result.gone.append(connection_id)
            else:
                result.failed[connection_id] = str(error) or type(error).__name__
        return result

    def post_batch(self, batches: Sequence[tuple[Sequence[str], bytes]]) -> list[FanoutResult]:
        return post_many_each(self, batches)  # each batch through the pool, in order

    def close(self) -> None:
        """Stop the fan-out threads and close the HTTP connections (tests, process shutdown)."""
        with self._lock:
            pool, http = self._pool, self._http
            self._pool = self._http = None
        if pool is not None:
            pool.shutdown(wait=True)
        if http is not None:
            http.close()

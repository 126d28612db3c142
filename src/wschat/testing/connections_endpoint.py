"""A real HTTP server that answers API Gateway's Management API (``@connections``) on 127.0.0.1.

It speaks the wire format boto3's ``apigatewaymanagementapi`` client (protocol ``rest-json``)
sends and parses, so the delivery path (wschat's own SigV4-signed posts and boto3's calls) is
exercised over real sockets:

- ``POST   /{stage}/@connections/{connectionId}``  body = the data; 200 with an empty body
- ``GET    /{stage}/@connections/{connectionId}``  200 ``{"connectedAt", "identity": {"sourceIp",
  "userAgent"}, "lastActiveAt"}`` (the wire names of boto3's ConnectedAt, Identity, LastActiveAt)
- ``DELETE /{stage}/@connections/{connectionId}``  204; the connection is gone afterwards
- an unknown or gone id: 410 with ``x-amzn-ErrorType: GoneException`` and an empty body.
  botocore's RestJSONParser takes the error code from that header first (then from a ``code``
  key in the JSON body) and strips anything after ``:``, so
  ``e.response["Error"]["Code"] == "GoneException"``.
- an id in ``failing``: 500 ``InternalServerErrorException`` (senders retry it, so one post may
  arrive more than once in ``attempts``); ``mark_throttled``: 429 ``LimitExceededException``;
  both forever or for the next ``times`` calls. ``mark_dropping``: the TCP connection is closed
  without an answer.
- a POST body over 128 KB: 413 ``PayloadTooLargeException``.
- a request with no SigV4 ``Authorization`` header: 403 ``ForbiddenException``, as on AWS.
- given ``credentials``, the SigV4 signature is verified, as API Gateway does before anything
  else (computed here with hashlib/hmac, independently of wschat's signer and botocore's): an
  unknown access key or security token answers 403 ``UnrecognizedClientException``, a wrong
  signature (secret, region, service, path, body, a signed header changed) or a clock more than
  5 minutes off 403 ``InvalidSignatureException``. Without credentials any signature passes.
- given ``ssl_context``, it serves https.

Concurrency: one daemon thread per TCP connection (ThreadingHTTPServer), HTTP/1.1 keep-alive so
botocore's pooled connections are reused, a listen backlog far above socketserver's default of 5
(a burst of 64+ connects would otherwise overflow it and stall on SYN retransmits for a second),
and TCP_NODELAY so a response's header and body writes are not held back by Nagle's algorithm
waiting on the client's delayed ACK.

Usage::

    with ConnectionsEndpoint(connections=["a", "b"], gone={"c"}, delay=0.02) as endpoint:
        client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint.url)
        client.post_to_connection(ConnectionId="a", Data=b"hi")
        assert endpoint.received() == [("a", b"hi")]
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DEFAULT_STAGE = "prod"
MAX_PAYLOAD = 128 * 1024  # API Gateway WebSocket's message limit
SIGNATURE_MAX_SKEW = 300.0  # seconds
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,]+)/(?P<day>\d{8})/(?P<region>[^/,]+)/"
    r"(?P<service>[^/,]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True, slots=True)
class SigningCredentials:
    """Credentials the endpoint accepts signatures from (``token``: temporary credentials)."""

    access_key: str
    secret_key: str
    token: str | None = None


def _iso8601(epoch_seconds: float) -> str:
    """API Gateway's timestamp form: ``2024-05-01T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class _Connection:
    connected_at: float
    last_active_at: float
    source_ip: str
    user_agent: str


class ConnectionsEndpoint:
    """The @connections API of one stage, served over HTTP/1.1 from a background thread.

    ``connections`` are live; ``gone`` ids (and any id never added) answer 410; ``failing`` ids
    answer 500. ``delay`` seconds are slept on every call before answering, like the network and
    API Gateway's own latency. All state is guarded by one lock; the sets may be changed while
    the server runs through the methods below.
    """

    def __init__(
        self,
        *,
        stage: str = DEFAULT_STAGE,
        connections: Iterable[str] = (),
        gone: Iterable[str] = (),
        failing: Iterable[str] = (),
        delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Iterable[SigningCredentials] = (),
        region: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.stage = stage
        self.delay = delay
        # access key -> credentials; empty: any signature passes. ``region``: the scope's
        # region must be this one (None: any).
        self.credentials = {c.access_key: c for c in credentials}
        self.region = region
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._gone: set[str] = set(gone)
        # connection id -> (status, error type, calls left or None for all of them)
        self._faults: dict[str, tuple[int, str, int | None]] = {}
        self._dropping: set[str] = set()
        self._received: list[tuple[str, bytes]] = []
        self._attempts: list[tuple[str, str]] = []  # (method, connection id) of every call
        self._signed_by: list[str] = []  # access key of every verified signature
        self._rejected: list[tuple[str, str]] = []  # (error type, message) of every 403
        self._in_flight = 0
        self.max_in_flight = 0
        self._server = _Server((host, port), _Handler)
        self._server.endpoint = self
        self._scheme = "http"
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None
        self.add(*connections)
        self.mark_failing(*failing)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint_url to give boto3: ``http://127.0.0.1:PORT/{stage}`` (or https)."""
        return f"{self._scheme}://127.0.0.1:{self.port}/{self.stage}"

    def start(self) -> ConnectionsEndpoint:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"connections-endpoint-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._server.close_open_connections()

    def __enter__(self) -> ConnectionsEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration -----------------------------------------------------------------------

    def add(
        self,
        *connection_ids: str,
        source_ip: str = "203.0.113.10",
        user_agent: str = "wscat/6.0",
    ) -> None:
        """Open connections: they accept posts from now on."""
        now = time.time()
        with self._lock:
            for connection_id in connection_ids:
                self._gone.discard(connection_id)
                self._connections[connection_id] = _Connection(now, now, source_ip, user_agent)

    def mark_gone(self, *connection_ids: str) -> None:
        """Close connections from the client side: they answer 410 from now on."""
        with self._lock:
            for connection_id in connection_ids:
                self._connections.pop(connection_id, None)
                self._gone.add(connection_id)

    def mark_failing(self, *connection_ids: str, times: int | None = None) -> None:
        """Make calls for these ids answer 500 InternalServerErrorException (the next ``times``
        calls for each, or all of them)."""
        with self._lock:
            for connection_id in connection_ids:
                self._faults[connection_id] = (500, "InternalServerErrorException", times)

    def mark_throttled(self, *connection_ids: str, times: int | None = None) -> None:
        """Make calls for these ids answer 429 LimitExceededException, as API Gateway does
        over its rate limit (the next ``times`` calls for each, or all of them)."""
        with self._lock:
            for connection_id in connection_ids:
                self._faults[connection_id] = (429, "LimitExceededException", times)

    def mark_dropping(self, *connection_ids: str) -> None:
        """Close the TCP connection of calls for these ids without answering."""
        with self._lock:
            self._dropping.update(connection_ids)

    # -- what happened -----------------------------------------------------------------------

    def received(self) -> list[tuple[str, bytes]]:
        """Every (connection id, data) delivered by a successful POST, in arrival order."""
        with self._lock:
            return list(self._received)

    def received_by(self, connection_id: str) -> list[bytes]:
        with self._lock:
            return [data for cid, data in self._received if cid == connection_id]

    def attempts(self) -> list[tuple[str, str]]:
        """Every call that reached a connection route, as (method, connection id)."""
        with self._lock:
            return list(self._attempts)

    def signed_by(self) -> list[str]:
        """The access key of every request whose signature was verified, in arrival order."""
        with self._lock:
            return list(self._signed_by)

    def rejected(self) -> list[tuple[str, str]]:
        """(error type, message) of every request refused with 403, in arrival order."""
        with self._lock:
            return list(self._rejected)

    def is_live(self, connection_id: str) -> bool:
        with self._lock:
            return connection_id in self._connections

    def reset_records(self) -> None:
        with self._lock:
            self._received.clear()
            self._attempts.clear()
            self._signed_by.clear()
            self._rejected.clear()
            self.max_in_flight = 0

    # -- the API, called from the handler threads --------------------------------------------

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _reject(self, error_type: str, message: str) -> None:
        with self._lock:
            self._rejected.append((error_type, message))

    def _drops(self, method: str, connection_id: str) -> bool:
        with self._lock:
            if connection_id not in self._dropping:
                return False
            self._attempts.append((method, connection_id))
            return True

    def _signature_problem(
        self, method: str, target: str, headers: Message, body: bytes
    ) -> tuple[str, str] | None:
        """None if the request's SigV4 signature holds, else (error type, message) of the 403
        API Gateway would answer."""
        if not self.credentials:
            return None
        match = _AUTHORIZATION.fullmatch(headers.get("Authorization", ""))
        if match is None:
            return "IncompleteSignatureException", "Authorization header is malformed"
        credentials = self.credentials.get(match["key"])
        token = headers.get("X-Amz-Security-Token") or None
        if credentials is None or credentials.token != token:
            return (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        timestamp = headers.get("X-Amz-Date", "")
        try:
            signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "IncompleteSignatureException", f"X-Amz-Date {timestamp!r} is not valid"
        if abs(time.time() - signed_at.timestamp()) > SIGNATURE_MAX_SKEW:
            return "InvalidSignatureException", f"Signature expired: {timestamp}"
        names = match["signed"].split(";")
        if not {"host", "x-amz-date"} <= set(names) or names != sorted(set(names)):
            return "InvalidSignatureException", f"SignedHeaders {match['signed']} is not valid"
        if match["day"] != timestamp[:8] or match["service"] != "execute-api":
            return "InvalidSignatureException", "Credential should be scoped to a valid service"
        if self.region is not None and match["region"] != self.region:
            return (
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{match['region']}'.",
            )
        payload = hashlib.sha256(body).hexdigest()
        claimed = headers.get("X-Amz-Content-SHA256")
        if claimed is not None and claimed not in (payload, "UNSIGNED-PAYLOAD"):
            return "InvalidSignatureException", "X-Amz-Content-SHA256 does not match the body"
        path, _, query = target.partition("?")
        canonical_headers = "".join(
            f"{name}:{','.join(' '.join(v.split()) for v in headers.get_all(name, []))}\n"
            for name in names
        )
        canonical_request = "\n".join(
            (
                method,
                _canonical_uri(path),
                "&".join(sorted(query.split("&"))) if query else "",
                canonical_headers,
                match["signed"],
                claimed or payload,
            )
        )
        scope = f"{match['day']}/{match['region']}/{match['service']}/aws4_request"
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                timestamp,
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        key = f"AWS4{credentials.secret_key}".encode()
        for part in (match["day"], match["region"], match["service"], "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            return (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )
        with self._lock:
            self._signed_by.append(credentials.access_key)
        return None

    def _answer(self, method: str, connection_id: str, body: bytes) -> tuple[int, str | None, Any]:
        """(status, error type or None, JSON document or None) for one call."""
        with self._lock:
            self._attempts.append((method, connection_id))
            fault = self._faults.get(connection_id)
            if fault is not None:
                status, error_type, left = fault
                if left is None or left > 0:
                    if left is not None:
                        self._faults[connection_id] = (status, error_type, left - 1)
                    message = "Internal server error" if status == 500 else "Too Many Requests"
                    return status, error_type, {"message": message}
            if method == "POST" and len(body) > MAX_PAYLOAD:
                return 413, "PayloadTooLargeException", {"message": "Request entity too large"}
            connection = self._connections.get(connection_id)
            if connection is None:
                # Empty body, as AWS sends it: SDKs report the code from the header and no
                # message (Java "GoneException: null"; PHP "Unable to parse error information").
                return 410, "GoneException", None
            if method == "POST":
                connection.last_active_at = time.time()
                self._received.append((connection_id, body))
                return 200, None, None
            if method == "DELETE":
                del self._connections[connection_id]
                self._gone.add(connection_id)
                return 204, None, None
            return (
                200,
                None,
                {
                    "connectedAt": _iso8601(connection.connected_at),
                    "identity": {
                        "sourceIp": connection.source_ip,
                        "userAgent": connection.user_agent,
                    },
                    "lastActiveAt": _iso8601(connection.last_active_at),
                },
            )


def _canonical_uri(path: str) -> str:
    """SigV4's canonical URI of a path as received: without empty and dot segments, encoded
    once more (every AWS service but S3 signs the path double-encoded)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return quote("/" + "/".join(segments) + trailing, safe="/~")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # listen backlog: socketserver's default of 5 drops connect bursts
    endpoint: ConnectionsEndpoint

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End kept-alive connections, whose threads would otherwise serve on after stop()."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses its pooled connections
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would swamp test output and slow the benchmark

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        endpoint = self.server.endpoint
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        endpoint._enter()
        try:
            if endpoint.delay:
                time.sleep(endpoint.delay)
            connection_id = self._connection_id(endpoint.stage)
            problem: tuple[str, str] | None = None
            if connection_id is None:
                # API Gateway answers any other path of the execute-api host this way.
                problem = "ForbiddenException", "Forbidden"
            elif "authorization" not in {key.lower() for key in self.headers}:
                problem = "ForbiddenException", "Missing Authentication Token"
            else:
                problem = endpoint._signature_problem(method, self.path, self.headers, body)
            if problem is not None:
                endpoint._reject(*problem)
                self._reply(403, problem[0], {"message": problem[1]})
            elif connection_id is not None and endpoint._drops(method, connection_id):
                self.close_connection = True  # no answer: the client reads a closed socket
            elif connection_id is not None:
                self._reply(*endpoint._answer(method, connection_id, body))
        finally:
            endpoint._leave()

    def _connection_id(self, stage: str) -> str | None:
        prefix = f"/{stage}/@connections/"
        path = urlsplit(self.path).path
        if not path.startswith(prefix) or len(path) == len(prefix):
            return None
        rest = path[len(prefix) :]
        if "/" in rest:
            return None
        # botocore percent-encodes the id (API Gateway ids end in "=", e.g. "L0SM9cOFvHcCIhw=").
        return unquote(rest)

    def _reply(self, status: int, error_type: str | None, document: Any) -> None:
        payload = b"" if document is None else json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_type is not None:
            self.send_header("x-amzn-ErrorType", error_type)
        if document is not None:
            self.send_header("Content-Type", "application/json")
        if status != 204:  # a 204 carries no Content-Length (RFC 9110, section 8.6)
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

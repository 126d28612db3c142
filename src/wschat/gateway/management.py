"""The @connections management API, over HTTP and over the workers' fast path.

HTTP: ``POST|GET|DELETE /{stage}/@connections/{connectionId}``, with API Gateway's status codes
and error shapes (the error name in ``x-amzn-ErrorType``, as boto3's rest-json parser reads it),
so boto3's ``apigatewaymanagementapi`` client works against the gateway unchanged.

Who may call it: with management credentials configured, only requests signed with them (AWS
Signature V4, as API Gateway's IAM auth checks a caller's); without, only clients on this machine
(loopback), since an unsigned @connections API reachable from elsewhere would let anyone post to,
read or close every connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from wschat.delivery.sigv4 import Credentials
from wschat.gateway import http, iam, ipc
from wschat.gateway.connection import frame_for
from wschat.gateway.registry import ConnectionRegistry


def _error(status: int, error_type: str, message: str | None) -> bytes:
    return http.json_response(
        status, {"message": message}, headers={"x-amzn-ErrorType": error_type}
    )


class ManagementApi:
    """``/{stage}/@connections`` over HTTP, and the same posts from workers over their pipes.

    ``http_requests`` and ``fast_path_calls`` count how calls arrived: tests and benchmarks
    read them to tell which path a handler took."""

    def __init__(
        self,
        connections: ConnectionRegistry,
        stage: str,
        *,
        credentials: Credentials | None,
        max_message_bytes: int,
    ) -> None:
        self.connections = connections
        self.prefix = f"/{stage}/@connections"
        self.credentials = credentials
        self.max_message_bytes = max_message_bytes
        self.http_requests = 0
        self.fast_path_calls = 0

    def refusal(self, request: http.Request, peer: str) -> bytes | None:
        """The 403 API Gateway would answer this @connections request, or None to serve it."""
        reason = iam.access_refused(request, peer, self.credentials, api="@connections API")
        return None if reason is None else _error(403, "ForbiddenException", reason)

    async def handle(self, request: http.Request, peer: str) -> bytes:
        self.http_requests += 1
        refused = self.refusal(request, peer)
        if refused is not None:
            return refused
        # Split the raw path: an id may hold characters that arrive percent-encoded.
        raw_id = request.raw_path[len(self.prefix) :]
        connection_id = unquote(raw_id[1:]) if raw_id.startswith("/") else ""
        if not connection_id or "/" in raw_id[1:]:
            return _error(404, "NotFoundException", "Not Found")
        if request.method == "POST":
            if len(request.body) > self.max_message_bytes:
                return _error(413, "PayloadTooLargeException", "Message too long")
            if self.connections.post(connection_id, frame_for(request.body)):
                return http.response(200, b"")
            return _error(410, "GoneException", None)
        if request.method == "GET":
            description = self.connections.describe(connection_id)
            if description is None:
                return _error(410, "GoneException", None)
            return http.json_response(200, description)
        if request.method == "DELETE":
            if self.connections.close(connection_id):
                return http.response(204, b"")
            return _error(410, "GoneException", None)
        return _error(405, "MethodNotAllowedException", f"{request.method} is not supported")

    def channel_call(self, message: dict[str, Any]) -> None:
        """A worker's fast-path post, done without leaving the event loop: the same frame to
        many connections in one go (or a few such batches, in order: an ack, then the message
        to the room). It gets no answer: the worker knows who is gone (``changes_since``).
        Handlers that describe or close a connection go through the HTTP API."""
        self.fast_path_calls += 1
        op = message.get("op")
        if op == "post_many":
            self._post_many(message)
        elif op == "post_batch":
            for batch in message.get("batches", []):
                self._post_many(batch)
        else:
            raise ValueError(f"unknown fast-path call {op!r}")

    def changes_since(self, version: int) -> tuple[int, dict[str, list[str]]]:
        """Told to each Python worker with an invocation: who is open, so its posts need no
        reply (``worker_main.PipeChannel``)."""
        return self.connections.changes_since(version)

    def _post_many(self, message: dict[str, Any]) -> None:
        self.connections.post_many(message.get("ids", []), frame_for(ipc.unpack_data(message)))

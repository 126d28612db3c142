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

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from wschat.gateway import http, iam, ipc
from wschat.gateway.connection import frame_for

if TYPE_CHECKING:
    from wschat.gateway.server import Gateway


def _error(status: int, error_type: str, message: str | None) -> bytes:
    return http.json_response(
        status, {"message": message}, headers={"x-amzn-ErrorType": error_type}
    )


def refusal(gateway: Gateway, request: http.Request, peer: str) -> bytes | None:
    """The 403 API Gateway would answer this @connections request, or None to serve it."""
    reason = iam.access_refused(
        request, peer, gateway.config.management_credentials, api="@connections API"
    )
    return None if reason is None else _error(403, "ForbiddenException", reason)


def handle_request(gateway: Gateway, request: http.Request, prefix: str, peer: str) -> bytes:
    refused = refusal(gateway, request, peer)
    if refused is not None:
        return refused
    # Split the raw path: an id may hold characters that arrive percent-encoded.
    raw_id = request.raw_path[len(prefix) :]
    connection_id = unquote(raw_id[1:]) if raw_id.startswith("/") else ""
    if not connection_id or "/" in raw_id[1:]:
        return _error(404, "NotFoundException", "Not Found")
    if request.method == "POST":
        if len(request.body) > gateway.config.limits.max_message_bytes:
            return _error(413, "PayloadTooLargeException", "Message too long")
        if gateway.post_to_connection(connection_id, frame_for(request.body)):
            return http.response(200, b"")
        return _error(410, "GoneException", None)
    if request.method == "GET":
        description = gateway.connection_description(connection_id)
        if description is None:
            return _error(410, "GoneException", None)
        return http.json_response(200, description)
    if request.method == "DELETE":
        if gateway.delete_connection(connection_id):
            return http.response(204, b"")
        return _error(410, "GoneException", None)
    return _error(405, "MethodNotAllowedException", f"{request.method} is not supported")


def handle_channel_call(gateway: Gateway, message: dict[str, Any]) -> dict[str, Any]:
    """A worker's fast-path call: post the same frame to many connections in one go (or a few
    such batches). Handlers that describe or close a connection go through the HTTP API."""
    op = message.get("op")
    if op == "post_many":
        return _post_many(gateway, message)
    if op == "post_batch":
        # Several post_many in one call, in order (an ack, then the message to the room).
        return {"results": [_post_many(gateway, batch) for batch in message.get("batches", [])]}
    return {"error": f"unknown call {op!r}"}


def _post_many(gateway: Gateway, message: dict[str, Any]) -> dict[str, Any]:
    frame = frame_for(ipc.unpack_data(message))
    # Gateway.post_to_connection inlined: this loop runs once per recipient of every message.
    lookup = gateway.connections.get
    gone = []
    ids = message.get("ids", [])
    for connection_id in ids:
        ws = lookup(connection_id)
        if ws is None or not ws.write_frame(frame):
            gone.append(connection_id)
    return {"delivered": len(ids) - len(gone), "gone": gone, "failed": {}}

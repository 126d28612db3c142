"""``$connect``: register the connection (the seed's ``put_item`` of the connectionId) with its
name and rooms; a refused token or a bad name refuses the handshake."""

from __future__ import annotations

from typing import Any

from wschat.auth import AuthError
from wschat.events import WebSocketEvent
from wschat.handlers import _runtime
from wschat.observability import bind_invocation, publish_counts
from wschat.protocol import ProtocolError
from wschat.storage import StoreError, StoreUnavailable


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    log = bind_invocation(ws, context)
    try:
        name = _runtime.service_for(ws).connect(
            ws.connection_id, ws.connected_at, ws.query, ws.authorizer
        )
    except AuthError as exc:
        # A non-2xx from $connect makes API Gateway refuse the handshake with that status.
        log.info("connect refused", extra={"status": exc.status, "reason": exc.reason})
        return {"statusCode": exc.status, "body": exc.reason}
    except ProtocolError as error:
        log.info("connect refused", extra={"status": 400, "reason": error.message})
        return {"statusCode": 400, "body": error.message}
    except StoreError as exc:
        # Better no connection than one nobody can reach.
        log.error("connect failed: store error", extra={"reason": str(exc)})
        return {"statusCode": 503 if isinstance(exc, StoreUnavailable) else 500}
    log.info("connected", extra={"user_name": name})
    publish_counts({"ConnectionsOpened": 1})
    return _runtime.ok()

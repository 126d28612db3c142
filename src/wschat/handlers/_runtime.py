"""What a handler builds once per execution environment (cold start) and reuses while warm:
the store named by the environment and one sender per @connections endpoint."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from wschat.delivery import sender_for
from wschat.delivery.aws import management_endpoint
from wschat.events import WebSocketEvent
from wschat.observability import get_logger
from wschat.protocol import ProtocolError
from wschat.service import ChatService
from wschat.storage import ConnectionStore, open_store_from_env


@cache
def store() -> ConnectionStore:
    return open_store_from_env()


def service_for(event: WebSocketEvent) -> ChatService:
    sender = sender_for(management_endpoint(event.domain_name, event.stage))
    return ChatService(store(), sender, log=get_logger())


def ok() -> dict[str, Any]:
    return {"statusCode": 200}


def rejected(status: int, error: ProtocolError) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(error.to_event())}

"""Structured JSON logs (aws-lambda-powertools Logger): one line per event, with the
connectionId and API Gateway requestId on every line an invocation writes."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from wschat.events import WebSocketEvent


@cache
def get_logger() -> Logger:
    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "wschat"))


def bind_invocation(event: WebSocketEvent, context: Any) -> Logger:
    """Attach the invocation's ids to every log line until the next invocation."""
    logger = get_logger()
    logger.clear_state()
    logger.append_keys(
        connection_id=event.connection_id,
        request_id=event.request_id,
        route=event.route_key,
        function_request_id=getattr(context, "aws_request_id", None),
    )
    return logger

"""Structured JSON logs (aws-lambda-powertools) and EMF metrics: one log line per event, with the
connectionId and API Gateway requestId on every line an invocation writes."""

from __future__ import annotations

import json
import os
import sys
import time
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
        request_id=event.context.get("requestId", ""),
        route=event.route_key,
        function_request_id=getattr(context, "aws_request_id", None),
    )
    return logger


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # built once, not on every invocation


def publish_counts(counts: dict[str, int]) -> None:
    """Emit the non-zero counters of one invocation (connections opened and closed, messages
    delivered, delivery failures) as one CloudWatch Embedded Metric Format line on stdout,
    which CloudWatch turns into metrics on AWS and the local gateway keeps as a counter line.

    Written directly (one ``json.dumps``, one write): the same line powertools' Metrics would
    flush, without its per-invocation bookkeeping on every warm invocation."""
    present = {name: value for name, value in counts.items() if value}
    if not present:
        return
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "wschat")
    line: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "wschat"),
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in present],
                }
            ],
        },
        "service": service,
    }
    for name, value in present.items():
        line[name] = [value]  # a list of values, as powertools writes them
    sys.stdout.write(_COMPACT.encode(line) + "\n")

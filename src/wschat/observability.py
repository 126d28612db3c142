"""Structured JSON logs and metrics (aws-lambda-powertools): one log line per event, with the
connectionId and API Gateway requestId on every line an invocation writes."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

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


@cache
def get_metrics() -> Metrics:
    """CloudWatch metrics in Embedded Metric Format: a JSON line per invocation on stdout, which
    CloudWatch turns into metrics on AWS and the local gateway keeps as a counter line."""
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "wschat"),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "wschat"),
    )


def publish_counts(counts: dict[str, int]) -> None:
    """Emit the non-zero counters of one invocation (connections opened and closed, messages
    delivered, delivery failures)."""
    present = {name: value for name, value in counts.items() if value}
    if not present:
        return
    metrics = get_metrics()
    for name, value in present.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()

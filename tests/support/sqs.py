"""boto3 SQS helpers for tests: a client for the gateway's (or moto's) SQS API, and a queue's
depth counting every message not yet deleted: visible, in flight or delayed."""

from __future__ import annotations

from typing import Any

import boto3

DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def sqs_client(endpoint: str, region: str = "ap-northeast-2") -> Any:
    """boto3's sqs client with test credentials, pointed at ``endpoint``."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def depth(sqs: Any, url: str) -> int:
    """Messages on the queue not yet deleted (moto does not count a message's own
    DelaySeconds as delayed)."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in DEPTH_ATTRIBUTES)

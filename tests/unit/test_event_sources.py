"""Lambda's decisions for an SQS event source, with no queue and no process: the event it
builds and which messages it deletes after an invocation (partial batch responses)."""

from __future__ import annotations

from typing import Any

import pytest

from wschat.gateway.event_sources import messages_to_delete, sqs_event
from wschat.gateway.queues import QueueStore, SendEntry
from wschat.gateway.workers import InvocationResult

IDS = ["m1", "m2", "m3"]


def ok(value: Any) -> InvocationResult:
    return InvocationResult(ok=True, value=value)


def test_success_without_reporting_deletes_everything() -> None:
    assert (
        messages_to_delete(ok({"batchItemFailures": [{"itemIdentifier": "m1"}]}), IDS, False) == IDS
    )


@pytest.mark.parametrize(
    "value", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}]
)
def test_an_empty_partial_response_is_complete_success(value: Any) -> None:
    assert messages_to_delete(ok(value), IDS, True) == IDS


def test_reported_failures_are_kept() -> None:
    value = {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert messages_to_delete(ok(value), IDS, True) == ["m1", "m3"]


@pytest.mark.parametrize(
    "value",
    [
        "not an object",
        [1],
        {"batchItemFailures": "m1"},
        {"batchItemFailures": [{"itemIdentifier": "unknown"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"id": "m1"}]},
        {"batchItemFailures": ["m1"]},
    ],
)
def test_an_invalid_partial_response_fails_the_whole_batch(value: Any) -> None:
    assert messages_to_delete(ok(value), IDS, True) == []


def test_a_failed_invocation_deletes_nothing() -> None:
    failed = InvocationResult(ok=False, error={"errorType": "RuntimeError"})
    assert messages_to_delete(failed, IDS, False) == []
    timed_out = InvocationResult(ok=False, timed_out=True)
    assert messages_to_delete(timed_out, IDS, True) == []


def test_the_event_has_lambdas_sqs_record_shape() -> None:
    store = QueueStore()
    store.create_queue("jobs")
    attributes = {"kind": {"DataType": "String", "StringValue": "plan"}}
    store.send("jobs", SendEntry("hello", attributes=attributes))
    (message,) = store.receive("jobs")
    (record,) = sqs_event([message], "arn:aws:sqs:eu-west-1:123456789012:jobs", "eu-west-1")[
        "Records"
    ]
    assert record == {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": "hello",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": message.attributes["SentTimestamp"],
            "SenderId": message.attributes["SenderId"],
            "ApproximateFirstReceiveTimestamp": message.attributes[
                "ApproximateFirstReceiveTimestamp"
            ],
        },
        "messageAttributes": {
            "kind": {
                "stringValue": "plan",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": message.md5_of_body,
        "md5OfMessageAttributes": message.md5_of_attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:jobs",
        "awsRegion": "eu-west-1",
    }

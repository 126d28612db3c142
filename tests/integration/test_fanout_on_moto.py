"""The fan-out pipeline against a real SQS-compatible server over HTTP (moto_server), as it
runs on AWS: the delivery handler in this process, fed by a small poller doing what Lambda's
SQS event source does (receive, invoke, delete what the partial batch response does not name),
posting through ``ApiGatewaySender`` to a real HTTP @connections endpoint.

The same paths on the gateway's own queue are in tests/integration/test_fanout_faults.py.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.conftest import TEST_REGION
from tests.support.sqs import depth as queue_depth

import wschat.delivery
from wschat.delivery.jobs import FanoutJob
from wschat.handlers import _runtime, deliver
from wschat.storage.base import Connection
from wschat.storage.sqlite import SqliteStore
from wschat.testing import lambda_context
from wschat.testing.connections_endpoint import ConnectionsEndpoint

pytestmark = pytest.mark.integration

FRAME = b'{"type":"message","room":"big","id":"01J","text":"hello"}'


@pytest.fixture
def sqs(moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name=TEST_REGION)


@pytest.fixture
def queues(sqs: Any) -> tuple[str, str]:
    name = f"fanout-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    url = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "2", "RedrivePolicy": redrive}
    )["QueueUrl"]
    return url, dlq


@pytest.fixture
def store(
    tmp_path: Path, queues: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SqliteStore]:
    """The delivery handler's environment: SQLite store, the moto queue, pages of 10."""
    path = tmp_path / "wschat.sqlite3"
    for name, value in {
        "WSCHAT_STORE": "sqlite",
        "WSCHAT_SQLITE_PATH": str(path),
        "WSCHAT_FANOUT_QUEUE_URL": queues[0],
        "WSCHAT_FANOUT_PAGE_SIZE": "10",
    }.items():
        monkeypatch.setenv(name, value)
    clear_runtime()
    opened = SqliteStore(path)
    yield opened
    opened.close()
    clear_runtime()


def clear_runtime() -> None:
    if _runtime.store.cache_info().currsize:
        _runtime.store().close()
    for cached in (_runtime.store, _runtime.config, _runtime.job_queue):
        cached.cache_clear()
    for sender in wschat.delivery._senders.values():
        sender.close()  # type: ignore[attr-defined]
    wschat.delivery._senders.clear()


def poll(sqs: Any, url: str, *, rounds: int = 60, quiet: int = 4) -> int:
    """Lambda's event source in miniature: batches of up to 5, each record deleted unless the
    handler's ``batchItemFailures`` names it. Stops once the queue has looked empty for
    ``quiet`` long polls in a row (moto does not count a message's own DelaySeconds as
    delayed, and a re-queued job waits 2 s or more)."""
    invocations = 0
    empty_polls = 0
    for _ in range(rounds):
        received = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=5, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not received:
            empty_polls = empty_polls + 1 if queue_depth(sqs, url) == 0 else 0
            if empty_polls >= quiet:
                return invocations
            continue
        empty_polls = 0
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "eventSource": "aws:sqs",
                }
                for m in received
            ]
        }
        reply = deliver.lambda_handler(event, lambda_context(remaining_ms=3000))
        invocations += 1
        failed = {item["itemIdentifier"] for item in reply["batchItemFailures"]}
        for message in received:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"the queue did not drain in {rounds} rounds")


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_plan_job_on_sqs_reaches_every_stored_member_once(
    sqs: Any, queues: tuple[str, str], store: SqliteStore
) -> None:
    ids = [f"member-{n:02d}=" for n in range(25)]
    for connection_id in ids:
        store.put_connection(Connection.opened(connection_id, 0, rooms=frozenset({"big"})))
    with ConnectionsEndpoint(connections=ids) as endpoint:
        sqs.send_message(
            QueueUrl=queues[0], MessageBody=FanoutJob.plan("big", endpoint.url, FRAME).to_json()
        )

        invocations = poll(sqs, queues[0])

        assert Counter(cid for cid, _ in endpoint.received()) == dict.fromkeys(ids, 1)
    assert invocations >= 1
    assert depth(sqs, queues[1]) == 0


def test_throttled_recipients_come_back_as_a_delayed_job_and_are_reached_once(
    sqs: Any, queues: tuple[str, str], store: SqliteStore
) -> None:
    ids = [f"member-{n:02d}=" for n in range(12)]
    with ConnectionsEndpoint(connections=ids) as endpoint:
        endpoint.mark_throttled(*ids[6:], times=15)  # past one job's retries
        sqs.send_message(
            QueueUrl=queues[0],
            MessageBody=FanoutJob.deliver("big", endpoint.url, FRAME, ids).to_json(),
        )

        poll(sqs, queues[0])

        # Each recipient once: the ones reached first were not in the later job.
        assert Counter(cid for cid, _ in endpoint.received()) == dict.fromkeys(ids, 1)
    assert depth(sqs, queues[1]) == 0


def test_a_job_sqs_cannot_see_finished_is_dead_lettered_on_sqs(
    sqs: Any, queues: tuple[str, str], store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSCHAT_FANOUT_RETRIES", "0")  # no later jobs: SQS's redrive decides
    clear_runtime()
    with ConnectionsEndpoint(connections=["ok=", "broken="]) as endpoint:
        endpoint.mark_failing("broken=")
        sqs.send_message(
            QueueUrl=queues[0],
            MessageBody=FanoutJob.deliver("big", endpoint.url, FRAME, ["ok=", "broken="]).to_json(),
        )

        poll(sqs, queues[0])

        assert Counter(cid for cid, _ in endpoint.received())["ok="] == 3  # maxReceiveCount
    [dead] = sqs.receive_message(QueueUrl=queues[1])["Messages"]
    assert FanoutJob.from_json(dead["Body"]).ids == ("ok=", "broken=")

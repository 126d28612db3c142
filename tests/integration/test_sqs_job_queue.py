"""The SQS JobQueue adapter against a real SQS-compatible server over HTTP (moto_server), as
the chat's functions will enqueue fan-out jobs on AWS: batches, big jobs, and every way the
queue can fail turned into QueueUnavailable."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from tests.conftest import TEST_REGION

from wschat.delivery.jobs import FanoutJob, QueueUnavailable
from wschat.delivery.sqs import SqsJobQueue

pytestmark = pytest.mark.integration

ENDPOINT = "https://abc123.execute-api.ap-northeast-2.amazonaws.com/prod"


@pytest.fixture
def sqs(moto_endpoint: str, aws_env: None) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name=TEST_REGION)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName=f"fanout-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return url


def drain(sqs: Any, queue_url: str) -> list[FanoutJob]:
    jobs: list[FanoutJob] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return jobs
        for message in messages:
            jobs.append(FanoutJob.from_json(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_every_job_sent_arrives_on_the_queue_intact(sqs: Any, queue_url: str) -> None:
    jobs = [
        FanoutJob.deliver("general", ENDPOINT, f"frame {i}".encode(), [f"c{i}a", f"c{i}b"])
        for i in range(23)
    ]
    jobs.append(FanoutJob.plan("general", ENDPOINT, b"frame", after="c22b"))

    SqsJobQueue(queue_url, client=sqs).send(jobs)

    received = drain(sqs, queue_url)
    assert sorted(received, key=lambda job: job.to_json()) == sorted(
        jobs, key=lambda job: job.to_json()
    )


def test_big_jobs_are_split_across_batches_under_256_kib(sqs: Any, queue_url: str) -> None:
    ids = [f"L0SM{i:05d}cOFvHcCIhw=" for i in range(4000)]  # ~100 KiB a job
    jobs = [FanoutJob.deliver("big", ENDPOINT, b"x", ids) for _ in range(5)]

    SqsJobQueue(queue_url, client=sqs).send(jobs)

    assert len(drain(sqs, queue_url)) == 5


def test_a_queue_that_does_not_exist_is_unavailable(sqs: Any, moto_endpoint: str) -> None:
    missing = f"{moto_endpoint}/123456789012/no-such-queue-{uuid.uuid4().hex[:6]}"
    with pytest.raises(QueueUnavailable, match="SendMessageBatch"):
        SqsJobQueue(missing, client=sqs).send([FanoutJob.plan("r", ENDPOINT, b"x")])


def test_an_unreachable_queue_is_unavailable(aws_env: None) -> None:
    from botocore.config import Config
    from tests.support.moto_server import free_port

    client = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=TEST_REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    queue = SqsJobQueue("http://127.0.0.1:1/123456789012/q", client=client)
    with pytest.raises(QueueUnavailable):
        queue.send([FanoutJob.plan("r", ENDPOINT, b"x")])


def test_the_queue_url_comes_from_the_environment() -> None:
    assert SqsJobQueue.from_env({}) is None
    queue = SqsJobQueue.from_env({"WSCHAT_FANOUT_QUEUE_URL": "https://sqs/1/q"})
    assert queue is not None and queue.queue_url == "https://sqs/1/q"

"""The queued delivery path under faults (issue 10): wschat's own delivery function run by the
local gateway from its SQS event source, posting to a real HTTP @connections endpoint.

- a delivery worker killed mid-job: the job comes back after its visibility timeout and every
  recipient gets the message (once, or twice if reached before the kill);
- a 10 s storm of 429s: nothing lost, the queue drains once it ends, nothing in the DLQ;
- a job that can never finish ends in the dead-letter queue, counted;
- a plan job pages a room of stored members into deliver jobs.

The template here is the project's delivery function and queue with times shrunk to seconds
(the project's queue keeps a job invisible 180 s). The same queue semantics are checked
against moto_server in tests/integration/test_gateway_sqs.py's contract test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import REPO, RunningGateway, running_gateway, wait_for
from tests.support.sqs import depth, sqs_client

from wschat.delivery.jobs import FanoutJob
from wschat.gateway import core
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import load_api
from wschat.storage.base import Connection
from wschat.storage.sqlite import SqliteStore
from wschat.testing.connections_endpoint import ConnectionsEndpoint

pytestmark = pytest.mark.integration

TEMPLATE = f"""
Transform: AWS::Serverless-2016-10-31
Parameters:
  SqlitePath: {{Type: String}}
  PostBudget: {{Type: Number, Default: 0}}
  VisibilityTimeout: {{Type: Number, Default: 4}}
  Retries: {{Type: Number, Default: 4}}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {{Name: fanout-faults, ProtocolType: WEBSOCKET}}
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $default
      Target: !Sub "integrations/${{Integration}}"
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt DefaultFunction.Arn
  DefaultFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: wschat.handlers.default.lambda_handler
      Runtime: python3.12
      CodeUri: {REPO / "src"}
  FanoutQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: fanout
      VisibilityTimeout: !Ref VisibilityTimeout
      RedrivePolicy: {{deadLetterTargetArn: !GetAtt FanoutDeadLetterQueue.Arn, maxReceiveCount: 5}}
  FanoutDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties: {{QueueName: fanout-dlq}}
  DeliveryFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: wschat.handlers.deliver.lambda_handler
      Runtime: python3.12
      CodeUri: {REPO / "src"}
      Timeout: 3
      Environment:
        Variables:
          WSCHAT_STORE: sqlite
          WSCHAT_SQLITE_PATH: !Ref SqlitePath
          WSCHAT_FANOUT_QUEUE_URL: !Ref FanoutQueue
          WSCHAT_FANOUT_PAGE_SIZE: "10"
          WSCHAT_POST_BUDGET: !Ref PostBudget
          WSCHAT_DELIVERY_CONCURRENCY: "1"
          WSCHAT_FANOUT_RETRIES: !Ref Retries
      Events:
        Fanout:
          Type: SQS
          Properties:
            Queue: !GetAtt FanoutQueue.Arn
            BatchSize: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {{MaximumConcurrency: 2}}
"""


@dataclass
class Pipeline:
    """The gateway running the delivery function, its queues, and the endpoint it posts to."""

    running: RunningGateway
    endpoint: ConnectionsEndpoint
    store: SqliteStore
    sqs: Any
    queue_url: str
    dlq_url: str

    def send(self, *jobs: FanoutJob) -> None:
        for job in jobs:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=job.to_json())

    def depth(self, url: str) -> int:
        return depth(self.sqs, url)

    def posts(self) -> Counter[str]:
        return Counter(cid for cid, _ in self.endpoint.received())

    def counters(self) -> Any:
        [counters] = self.running.gateway.event_source_counters.values()
        return counters

    def busy_worker_pids(self) -> list[int]:
        pool = self.running.gateway.pools["DeliveryFunction"]

        def busy() -> list[int]:
            return [
                worker.process.pid
                for worker in pool._all
                if worker not in pool._idle and worker.process is not None
            ]

        pids: list[int] = self.running.call(busy)
        return pids


def start_pipeline(tmp_path: Path, endpoint: ConnectionsEndpoint, **parameters: str) -> Any:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    database = tmp_path / "wschat.sqlite3"
    store = SqliteStore(database)
    api = load_api(
        tmp_path / "template.yaml", parameters={"SqlitePath": str(database), **parameters}
    )
    config = GatewayConfig(
        api=api,
        limits=core.Limits(integration_timeout=3.0),
        shutdown_timeout=3.0,
        queue_store_path=tmp_path / "queues.sqlite3",
    )
    return store, running_gateway(config)


@pytest.fixture
def endpoint() -> Iterator[ConnectionsEndpoint]:
    with ConnectionsEndpoint() as served:
        yield served


@contextlib.contextmanager
def pipeline_for(
    tmp_path: Path, endpoint: ConnectionsEndpoint, **parameters: str
) -> Iterator[Pipeline]:
    store, gateway = start_pipeline(tmp_path, endpoint, **parameters)
    try:
        with gateway as running:
            sqs = sqs_client(running.gateway.sqs_endpoint)
            queue_url = sqs.get_queue_url(QueueName="fanout")["QueueUrl"]
            dlq_url = sqs.get_queue_url(QueueName="fanout-dlq")["QueueUrl"]
            yield Pipeline(running, endpoint, store, sqs, queue_url, dlq_url)
    finally:
        store.close()


def members(count: int, prefix: str = "member") -> list[str]:
    return [f"{prefix}-{n:03d}=" for n in range(count)]


FRAME = b'{"type":"message","room":"big","id":"01J","text":"hello"}'


def test_a_plan_job_pages_the_stored_room_into_deliveries(
    tmp_path: Path, endpoint: ConnectionsEndpoint
) -> None:
    ids = members(35)
    endpoint.add(*ids)
    with pipeline_for(tmp_path, endpoint) as pipeline:
        for connection_id in ids:
            pipeline.store.put_connection(
                Connection.opened(connection_id, 0, rooms=frozenset({"big"}))
            )

        pipeline.send(FanoutJob.plan("big", endpoint.url, FRAME))

        wait_for(lambda: len(pipeline.posts()) == 35, 20, "every member posted to")
        wait_for(lambda: pipeline.depth(pipeline.queue_url) == 0, 10, "the queue to drain")
        assert set(pipeline.posts().values()) == {1}
        # One plan job, four deliver jobs of 10, 10, 10 and 5 ids.
        assert pipeline.counters().records == 5
        assert pipeline.depth(pipeline.dlq_url) == 0


def test_a_worker_killed_mid_job_is_redelivered_and_everyone_gets_the_message(
    tmp_path: Path, endpoint: ConnectionsEndpoint
) -> None:
    ids = members(40)
    endpoint.add(*ids)
    endpoint.delay = 0.02
    # 20 posts a second: the job takes ~2 s, time to kill its worker in the middle.
    with pipeline_for(tmp_path, endpoint, PostBudget="20") as pipeline:
        pipeline.send(FanoutJob.deliver("big", endpoint.url, FRAME, ids))
        wait_for(lambda: len(pipeline.posts()) >= 5, 20, "the job to start posting")
        [pid] = pipeline.busy_worker_pids()
        os.kill(pid, signal.SIGKILL)
        reached_before_the_kill = len(pipeline.posts())
        assert reached_before_the_kill < len(ids)

        # Back after the visibility timeout (4 s), run by a fresh worker to the end.
        wait_for(lambda: set(pipeline.posts()) == set(ids), 30, "every recipient reached")
        wait_for(lambda: pipeline.depth(pipeline.queue_url) == 0, 10, "the queue to drain")
        posts = pipeline.posts()
        assert set(posts.values()) <= {1, 2}
        duplicates = sum(count - 1 for count in posts.values())
        assert duplicates <= reached_before_the_kill + 2  # the ones posted before the kill
        assert pipeline.counters().errors >= 1
        assert pipeline.depth(pipeline.dlq_url) == 0


def test_a_ten_second_429_storm_loses_nothing_and_the_queue_drains_after(
    tmp_path: Path, endpoint: ConnectionsEndpoint
) -> None:
    ids = members(30)
    endpoint.add(*ids)
    endpoint.mark_throttled(*ids)
    storm_ends = time.monotonic() + 10
    with pipeline_for(tmp_path, endpoint) as pipeline:
        pipeline.send(*(FanoutJob.deliver("big", endpoint.url, FRAME, ids[i::3]) for i in range(3)))

        def end_the_storm() -> None:
            time.sleep(max(0.0, storm_ends - time.monotonic()))
            endpoint.mark_throttled(*ids, times=0)

        ender = threading.Thread(target=end_the_storm, daemon=True)
        ender.start()
        time.sleep(3)
        assert pipeline.posts() == Counter()  # throttled: nothing delivered, nothing dropped
        # Each job handed its unreached recipients on as a later job: still 3 on the queue.
        assert pipeline.depth(pipeline.queue_url) == 3

        wait_for(lambda: set(pipeline.posts()) == set(ids), 30, "every recipient reached")
        wait_for(lambda: pipeline.depth(pipeline.queue_url) == 0, 10, "the queue to drain")
        assert set(pipeline.posts().values()) == {1}  # a throttled post was not delivered
        assert pipeline.depth(pipeline.dlq_url) == 0
        ender.join()


def test_a_job_that_cannot_finish_ends_in_the_dead_letter_queue(
    tmp_path: Path, endpoint: ConnectionsEndpoint
) -> None:
    ids = members(3)
    endpoint.add(*ids)
    endpoint.mark_failing(ids[1])  # 500 on every try
    # No later jobs of the failing recipient: the job itself fails, receive after receive.
    with pipeline_for(tmp_path, endpoint, VisibilityTimeout="3", Retries="0") as pipeline:
        pipeline.send(FanoutJob.deliver("big", endpoint.url, FRAME, ids))

        wait_for(lambda: pipeline.depth(pipeline.dlq_url) == 1, 40, "the job in the DLQ")
        assert pipeline.depth(pipeline.queue_url) == 0
        # The others were reached (each redelivery reposts them: duplicates, never losses).
        posts = pipeline.posts()
        assert set(posts) == {ids[0], ids[2]}
        assert posts[ids[0]] == 5  # maxReceiveCount receives
        [dead] = pipeline.sqs.receive_message(QueueUrl=pipeline.dlq_url)["Messages"]
        assert FanoutJob.from_json(dead["Body"]).ids == tuple(ids)


def test_jobs_queued_or_in_flight_survive_a_gateway_restart(
    tmp_path: Path, endpoint: ConnectionsEndpoint
) -> None:
    ids = members(30)
    endpoint.add(*ids)
    # 10 posts a second: 3 s of work, and the gateway is stopped a second in.
    with pipeline_for(tmp_path, endpoint, PostBudget="10") as pipeline:
        pipeline.send(
            FanoutJob.deliver("big", endpoint.url, FRAME, ids[:15]),
            FanoutJob.deliver("big", endpoint.url, FRAME, ids[15:]),
        )
        wait_for(lambda: len(pipeline.posts()) >= 3, 20, "the jobs to start")
    reached_before = set(pipeline.posts())
    assert len(reached_before) < len(ids)

    # The same data directory: the queue's state lives there (queues.sqlite3).
    with pipeline_for(tmp_path, endpoint, PostBudget="100") as restarted:
        wait_for(lambda: set(restarted.posts()) == set(ids), 30, "every recipient reached")
        wait_for(lambda: restarted.depth(restarted.queue_url) == 0, 10, "the queue to drain")
        assert set(restarted.posts().values()) <= {1, 2}
        assert restarted.depth(restarted.dlq_url) == 0

"""The gateway's local SQS: boto3's sqs client against AWS_ENDPOINT_URL_SQS, SQS event sources
from a template (partial batch failures, redrive to the dead-letter queue), a restart on the
same data dir, and one queue contract run against the gateway and against moto_server."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_REGION
from tests.integration.conftest import INSPECTOR, RunningGateway, running_gateway, wait_for
from tests.support.sqs import sqs_client

from wschat.gateway import core
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import api_from_routes, load_api

pytestmark = pytest.mark.integration

HANDLER = """
import json, os

def on_message(event, context):
    return {"statusCode": 200}

def on_jobs(event, context):
    with open(os.environ["RECORDS_LOG"], "a") as log:
        for record in event["Records"]:
            log.write(json.dumps(record) + "\\n")
    if any(record["body"] == "crash" for record in event["Records"]):
        raise RuntimeError("crash")
    return {"batchItemFailures": [
        {"itemIdentifier": record["messageId"]}
        for record in event["Records"] if record["body"].startswith("fail")
    ]}
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: sqs-app, ProtocolType: WEBSOCKET}
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Sub "integrations/${Integration}"}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt MessageFunction.Arn
  MessageFunction:
    Type: AWS::Serverless::Function
    Properties: {Handler: app.on_message, Runtime: python3.12, CodeUri: .}
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: jobs
      VisibilityTimeout: 1
      RedrivePolicy: {deadLetterTargetArn: !GetAtt JobsDlq.Arn, maxReceiveCount: 2}
  JobsDlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: jobs-dlq}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.on_jobs
      Runtime: python3.12
      CodeUri: .
      Timeout: 1
      Environment:
        Variables: {RECORDS_LOG: !Sub "${RecordsLog}", JOBS_URL: !Ref Jobs}
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 0
            FunctionResponseTypes: [ReportBatchItemFailures]
            Enabled: !Ref WorkerEnabled
Parameters:
  RecordsLog: {Type: String}
  WorkerEnabled: {Type: String, Default: "true"}
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path


def app_config(app_dir: Path, *, worker: bool = True) -> GatewayConfig:
    api = load_api(
        app_dir / "template.yaml",
        parameters={
            "RecordsLog": str(app_dir / "records.jsonl"),
            "WorkerEnabled": "true" if worker else "false",
        },
    )
    return GatewayConfig(
        api=api,
        limits=core.Limits(integration_timeout=3.0),
        shutdown_timeout=3.0,
        queue_store_path=app_dir / "data" / "queues.sqlite3",
    )


def records(app_dir: Path) -> list[dict[str, Any]]:
    path = app_dir / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def plain_gateway() -> Iterator[RunningGateway]:
    """A gateway with no template queues: queues come from CreateQueue."""
    api = api_from_routes(
        ["$default=app.on_message"],
        environment={"EVENTS_LOG": "/dev/null"},
        code_dir=INSPECTOR,
        timeout=3.0,
    )
    with running_gateway(GatewayConfig(api=api, limits=core.Limits())) as running:
        yield running


# --- the SQS API ------------------------------------------------------------------------------


def test_send_receive_delete_round_trip(plain_gateway: RunningGateway) -> None:
    sqs = sqs_client(plain_gateway.gateway.sqs_endpoint)
    url = sqs.create_queue(QueueName="round-trip")["QueueUrl"]
    assert url == f"{plain_gateway.gateway.sqs_endpoint}/123456789012/round-trip"
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="hello",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
    )
    (message,) = sqs.receive_message(
        QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "hello"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"]["kind"]["StringValue"] == "greeting"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert plain_gateway.gateway.sqs_requests >= 5


def test_the_aws_queue_url_a_template_ref_gives_works(plain_gateway: RunningGateway) -> None:
    sqs = sqs_client(plain_gateway.gateway.sqs_endpoint)
    sqs.create_queue(QueueName="by-aws-url")
    aws_url = f"https://sqs.{TEST_REGION}.amazonaws.com/123456789012/by-aws-url"
    sqs.send_message(QueueUrl=aws_url, MessageBody="x")
    assert sqs.receive_message(QueueUrl=aws_url)["Messages"][0]["Body"] == "x"


def test_a_missing_queue_is_boto3s_queue_does_not_exist(plain_gateway: RunningGateway) -> None:
    sqs = sqs_client(plain_gateway.gateway.sqs_endpoint)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as raised:
        sqs.send_message(QueueUrl="http://x/123456789012/nope", MessageBody="x")
    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_long_polling_waits_without_blocking_the_gateway(plain_gateway: RunningGateway) -> None:
    endpoint = plain_gateway.gateway.sqs_endpoint
    url = sqs_client(endpoint).create_queue(QueueName="long-poll")["QueueUrl"]
    got: list[Any] = []

    def poll() -> None:
        started = time.monotonic()
        reply = sqs_client(endpoint).receive_message(QueueUrl=url, WaitTimeSeconds=5)
        got.append((reply.get("Messages", []), time.monotonic() - started))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    sqs_client(endpoint).send_message(QueueUrl=url, MessageBody="wake up")  # served meanwhile
    poller.join(6)
    ((messages, waited),) = got
    assert [m["Body"] for m in messages] == ["wake up"]
    assert 0.2 < waited < 2.0


def test_an_empty_long_poll_returns_after_its_wait(plain_gateway: RunningGateway) -> None:
    sqs = sqs_client(plain_gateway.gateway.sqs_endpoint)
    url = sqs.create_queue(QueueName="empty-poll")["QueueUrl"]
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert 0.9 < time.monotonic() - started < 2.0


def raw_post(port: int, target: str, body: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST /_aws/sqs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n"
            f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("target", "body", "error"),
    [
        ("AmazonSQS.SendMessage", b"not json", "InvalidParameterValue"),
        ("AmazonSQS.SendMessage", b"[1, 2]", "InvalidParameterValue"),
        ("AmazonSQS.SendMessage", b'{"QueueUrl": 5}', "MissingParameter"),
        ("AmazonSQS.ReceiveMessage", b'{"QueueUrl": "q", "MaxNumberOfMessages": "x"}', ""),
        ("AmazonSQS.Frobnicate", b"{}", "UnsupportedOperation"),
        ("Other.Thing", b"{}", "UnsupportedOperation"),
        ("AmazonSQS.DeleteMessageBatch", b'{"QueueUrl": "q", "Entries": {}}', ""),
    ],
)
def test_bad_requests_get_sqs_errors_and_the_gateway_keeps_serving(
    plain_gateway: RunningGateway, target: str, body: bytes, error: str
) -> None:
    sqs = sqs_client(plain_gateway.gateway.sqs_endpoint)
    sqs.create_queue(QueueName="q")
    status, reply = raw_post(plain_gateway.gateway.port, target, body)
    assert status == 400
    assert json.loads(reply)["__type"].startswith("com.amazonaws.sqs#")
    if error:
        assert json.loads(reply)["__type"].endswith(error)
    assert sqs.list_queues()["QueueUrls"]  # still serving


# --- event sources ----------------------------------------------------------------------------


def test_failed_items_are_redelivered_then_dead_lettered(app_dir: Path) -> None:
    with running_gateway(app_config(app_dir)) as running:
        gateway = running.gateway
        assert gateway.config.api.queues["jobs"].dead_letter_queue == "jobs-dlq"
        sqs = sqs_client(gateway.sqs_endpoint)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "ok", "MessageBody": "ok"},
                {"Id": "fail", "MessageBody": "fail me"},
            ],
        )
        dlq = sqs.get_queue_url(QueueName="jobs-dlq")["QueueUrl"]
        dead = wait_for(
            lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"),
            what="the failing message in the DLQ",
        )
        counters = running.call(lambda: gateway.event_source_counters["Worker.Jobs"])
    assert [m["Body"] for m in dead] == ["fail me"]
    seen = records(app_dir)
    assert sorted(r["body"] for r in seen) == ["fail me", "fail me", "ok"]
    failing = [r for r in seen if r["body"] == "fail me"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in failing] == ["1", "2"]
    record = seen[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":123456789012:jobs")
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageAttributes"] == {}
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert counters.deleted == 1
    assert counters.failed == 2


def test_a_raising_handler_deletes_nothing(app_dir: Path) -> None:
    with running_gateway(app_config(app_dir)) as running:
        sqs = sqs_client(running.gateway.sqs_endpoint)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="crash")
        wait_for(lambda: len(records(app_dir)) >= 2, what="two deliveries of the crash")
        counters = running.call(lambda: running.gateway.event_source_counters["Worker.Jobs"])
    assert counters.errors >= 1
    assert counters.deleted == 0


def test_a_restart_keeps_queued_messages_and_frees_in_flight_ones(app_dir: Path) -> None:
    # First run: the worker is disabled; one message queued, one received and not deleted.
    with running_gateway(app_config(app_dir, worker=False)) as running:
        sqs = sqs_client(running.gateway.sqs_endpoint)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="in flight")
        assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
        sqs.send_message(QueueUrl=url, MessageBody="queued")
    # Second run, same data dir: both reach the worker.
    with running_gateway(app_config(app_dir)) as running:
        wait_for(lambda: len(records(app_dir)) >= 2, what="both messages delivered")
    assert sorted(r["body"] for r in records(app_dir)) == ["in flight", "queued"]


def test_functions_get_the_sqs_endpoint(app_dir: Path) -> None:
    with running_gateway(app_config(app_dir, worker=False)) as running:
        pool = running.gateway.pools["Worker"]
        assert pool.env["AWS_ENDPOINT_URL_SQS"] == running.gateway.sqs_endpoint
        assert pool.env["JOBS_URL"].endswith("/123456789012/jobs")


# --- one contract, two servers ----------------------------------------------------------------


@pytest.fixture(params=["local", "moto"])
def contract_sqs(request: pytest.FixtureRequest, aws_env: None) -> Iterator[Any]:
    if request.param == "moto":
        yield sqs_client(request.getfixturevalue("moto_endpoint"))
        return
    api = api_from_routes(
        ["$default=app.on_message"],
        environment={"EVENTS_LOG": "/dev/null"},
        code_dir=INSPECTOR,
        timeout=3.0,
    )
    with running_gateway(GatewayConfig(api=api, limits=core.Limits())) as running:
        yield sqs_client(running.gateway.sqs_endpoint)


def test_queue_contract(contract_sqs: Any) -> None:
    sqs = contract_sqs
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"contract-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=f"contract-{suffix}",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    assert sqs.get_queue_url(QueueName=f"contract-{suffix}")["QueueUrl"] == url

    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(3)],
    )
    assert sorted(entry["Id"] for entry in sent["Successful"]) == ["m0", "m1", "m2"]
    assert not sent.get("Failed")
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)]
        )

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])[
        "Messages"
    ]
    assert sorted(m["Body"] for m in received) == ["body 0", "body 1", "body 2"]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in received} == {"1"}
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # all in flight

    by_body = {m["Body"]: m for m in received}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=by_body["body 0"]["ReceiptHandle"])
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "v", "ReceiptHandle": by_body["body 1"]["ReceiptHandle"], "VisibilityTimeout": 0}
        ],
    )
    assert [entry["Id"] for entry in changed["Successful"]] == ["v"]
    again = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    assert [(m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in again] == [
        ("body 1", "2")
    ]
    deleted = sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": "d", "ReceiptHandle": again[0]["ReceiptHandle"]}]
    )
    assert [entry["Id"] for entry in deleted["Successful"]] == ["d"]

    # "body 2" was received once; after its visibility timeout, a second receive, then the
    # third moves it to the dead-letter queue.
    time.sleep(1.1)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    assert [(m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in second] == [
        ("body 2", "2")
    ]
    time.sleep(1.1)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    dead = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert [m["Body"] for m in dead] == ["body 2"]

    sqs.purge_queue(QueueUrl=dlq)
    attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=f"contract-{suffix}")

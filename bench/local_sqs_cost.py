"""What the local gateway's embedded SQS queue costs (docs/scaling.md): a send and a receive +
delete, in the SQLite store alone and through boto3's sqs client over HTTP to a running gateway.

    .venv/bin/python bench/local_sqs_cost.py [--n 500]

Prints the mean over ``--n`` operations of 200-byte bodies (each operation is short
and uniform; the mean is the cost per operation). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import boto3

from wschat.gateway.queues import QueueStore, SendEntry
from wschat.gateway.server import Gateway, GatewayConfig
from wschat.gateway.template import api_from_routes

ROOT = Path(__file__).resolve().parents[1]
BODY = "x" * 200


def per_op(seconds: float, n: int) -> float:
    return seconds / n


def measure_store(directory: Path, n: int) -> tuple[float, float]:
    store = QueueStore(directory / "store.sqlite3")
    store.create_queue("q")
    started = time.perf_counter()
    for _ in range(n):
        store.send("q", SendEntry(BODY))
    send = per_op(time.perf_counter() - started, n)
    started = time.perf_counter()
    for _ in range(n):
        (message,) = store.receive("q")
        store.delete("q", message.receipt_handle)
    return send, per_op(time.perf_counter() - started, n)


def measure_http(directory: Path, n: int) -> tuple[float, float, float]:
    api = api_from_routes(
        ["$default=app.on_message"],
        environment={"EVENTS_LOG": "/dev/null"},
        code_dir=ROOT / "tests" / "fixtures" / "apps" / "inspector",
        timeout=3.0,
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    gateway = Gateway(GatewayConfig(api=api, port=0, queue_store_path=directory / "gw.sqlite3"))
    asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(30)
    try:
        sqs = boto3.client(
            "sqs",
            endpoint_url=gateway.sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for _ in range(20):  # warm the client and the connection
            sqs.send_message(QueueUrl=url, MessageBody="warm")
        sqs.purge_queue(QueueUrl=url)
        started = time.perf_counter()
        for _ in range(n):
            sqs.send_message(QueueUrl=url, MessageBody=BODY)
        send = per_op(time.perf_counter() - started, n)
        started = time.perf_counter()
        for _ in range(n):
            message = sqs.receive_message(QueueUrl=url)["Messages"][0]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        receive_delete = per_op(time.perf_counter() - started, n)
        batches = max(1, n // 10)
        entries = [{"Id": str(i), "MessageBody": BODY} for i in range(10)]
        started = time.perf_counter()
        for _ in range(batches):
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        return send, receive_delete, per_op(time.perf_counter() - started, batches)
    finally:
        asyncio.run_coroutine_threadsafe(gateway.shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="operations of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wschat-sqs-cost-") as tmp:
        directory = Path(tmp)
        send, receive_delete = measure_store(directory, args.n)
        print(
            f"store alone:      send {send * 1e6:.0f} us, "
            f"receive + delete {receive_delete * 1e6:.0f} us"
        )
        send, receive_delete, batch = measure_http(directory, args.n)
        print(
            f"boto3 over HTTP:  send {send * 1e3:.2f} ms, receive + delete "
            f"{receive_delete * 1e3:.2f} ms, send_message_batch of 10 {batch * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()

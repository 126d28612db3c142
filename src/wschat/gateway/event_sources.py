"""SQS event sources: Lambda's poller, run locally against the gateway's queues.

For each enabled event source a ``Poller`` long-polls its queue, gathers up to BatchSize
messages (waiting up to MaximumBatchingWindowInSeconds to fill a batch once one message is in
hand), invokes the function with the SQS event Lambda builds, then decides as Lambda does
(``messages_to_delete``):

* the invocation succeeded → every message is deleted; with ``ReportBatchItemFailures``, all
  but the ``batchItemFailures`` the function returned;
* a response that names an id not in the batch, an empty or missing ``itemIdentifier``, or is
  not an object → the whole batch failed (AWS's rule);
* the function raised or timed out → nothing is deleted.

What is not deleted stays hidden until its visibility timeout ends, is received again (its
ApproximateReceiveCount grows) and, past the queue's maxReceiveCount, moves to the dead-letter
queue: at-least-once delivery, as on AWS. Up to ``concurrency`` batches are in flight per event
source (ScalingConfig.MaximumConcurrency, capped by the function's worker count). At shutdown a
poller stops receiving, lets in-flight batches finish for a while, and makes the messages of
those it abandons visible again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wschat.gateway.queues import QueueError, ReceivedMessage, queue_arn
from wschat.gateway.spec import EventSourceSpec
from wschat.gateway.sqs_api import QueueService
from wschat.gateway.workers import InvocationResult

log = logging.getLogger("wschat.gateway")

# Lambda's pollers long-poll with the longest wait SQS allows.
POLL_WAIT_SECONDS = 20.0
# After a receive fails (the queue was deleted), the poller retries this much later.
RETRY_SECONDS = 1.0

Invoke = Callable[[dict[str, Any]], Awaitable[InvocationResult]]


def sqs_event(messages: list[ReceivedMessage], arn: str, region: str) -> dict[str, Any]:
    """The event Lambda hands an SQS-triggered function."""
    return {
        "Records": [
            {
                "messageId": message.message_id,
                "receiptHandle": message.receipt_handle,
                "body": message.body,
                "attributes": {
                    key: message.attributes[key]
                    for key in (
                        "ApproximateReceiveCount",
                        "SentTimestamp",
                        "SenderId",
                        "ApproximateFirstReceiveTimestamp",
                        "DeadLetterQueueSourceArn",
                    )
                    if key in message.attributes
                },
                "messageAttributes": {
                    name: _event_attribute(value)
                    for name, value in message.message_attributes.items()
                },
                "md5OfBody": message.md5_of_body,
                **(
                    {"md5OfMessageAttributes": message.md5_of_attributes}
                    if message.md5_of_attributes
                    else {}
                ),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def _event_attribute(value: dict[str, str]) -> dict[str, Any]:
    """A message attribute in the event's camelCase form."""
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = value["BinaryValue"]
    return attribute


def messages_to_delete(
    result: InvocationResult, message_ids: list[str], report_batch_item_failures: bool
) -> list[str]:
    """The ids Lambda deletes after an invocation (the rest are redelivered later)."""
    if not result.ok:
        return []
    if not report_batch_item_failures:
        return list(message_ids)
    response = result.value
    if response is None:
        return list(message_ids)
    if not isinstance(response, dict):
        return []  # not a partial batch response: the whole batch failed
    failures = response.get("batchItemFailures")
    if failures is None:
        return list(message_ids)
    if not isinstance(failures, list):
        return []
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            return []  # an empty, missing or unknown id fails the whole batch
        failed.add(identifier)
    return [message_id for message_id in message_ids if message_id not in failed]


@dataclass
class EventSourceCounters:
    """What one event source did; tests and benchmarks read them."""

    invocations: int = 0
    records: int = 0
    deleted: int = 0
    failed: int = 0  # records left for redelivery
    errors: int = 0  # invocations that raised or timed out


class Poller:
    """Lambda's poller for one SQS event source."""

    def __init__(
        self,
        spec: EventSourceSpec,
        service: QueueService,
        invoke: Invoke,
        *,
        region: str,
        concurrency: int,
    ) -> None:
        self.spec = spec
        self.service = service
        self.invoke = invoke
        self.region = region
        self.arn = queue_arn(spec.queue, region)
        self.concurrency = max(1, concurrency)
        self.counters = EventSourceCounters()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._receiver: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._receiver = asyncio.create_task(self._receive_forever())

    def stop_receiving(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()

    async def stop(self, timeout: float) -> None:
        """Stop receiving; wait up to ``timeout`` for in-flight batches, abandon the rest
        (their messages become visible again)."""
        self.stop_receiving()
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        if self._batches:
            _, pending = await asyncio.wait(list(self._batches), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    async def _receive_forever(self) -> None:
        while not self.service.closed:
            await self._slots.acquire()
            try:
                batch = await self._gather()
            except QueueError as error:
                self._slots.release()
                log.warning("event source %s: %s", self.spec.name, error.message)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _gather(self) -> list[ReceivedMessage]:
        """One batch: a long poll, then up to the batching window to fill it."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        batch = await self.service.receive(
            spec.queue, min(10, spec.batch_size), None, POLL_WAIT_SECONDS
        )
        if not batch or spec.maximum_batching_window <= 0:
            return batch
        deadline = loop.time() + spec.maximum_batching_window
        try:
            while len(batch) < spec.batch_size and (remaining := deadline - loop.time()) > 0:
                batch += await self.service.receive(
                    spec.queue, min(10, spec.batch_size - len(batch)), None, remaining
                )
        except BaseException:
            self._release(batch)
            raise
        return batch

    def _release(self, batch: list[ReceivedMessage]) -> None:
        """Make abandoned messages visible again (what a poller that stops owes the queue)."""
        for message in batch:
            with contextlib.suppress(QueueError):
                self.service.store.change_visibility(self.spec.queue, message.receipt_handle, 0)

    async def _run_batch(self, batch: list[ReceivedMessage]) -> None:
        spec = self.spec
        ids = [message.message_id for message in batch]
        started = time.perf_counter()
        try:
            result = await self.invoke(sqs_event(batch, self.arn, self.region))
        except asyncio.CancelledError:
            self._release(batch)
            raise
        delete = set(messages_to_delete(result, ids, spec.report_batch_item_failures))
        deleted = 0
        for message in batch:
            if message.message_id in delete:
                try:
                    self.service.store.delete(spec.queue, message.receipt_handle)
                except QueueError:
                    continue  # the queue was deleted meanwhile
                deleted += 1
        counters = self.counters
        counters.invocations += 1
        counters.records += len(batch)
        counters.deleted += deleted
        counters.failed += len(batch) - deleted
        if not result.ok:
            counters.errors += 1
        log.info(
            "sqs %s %s %d records %s deleted %d %.1fms",
            spec.queue,
            spec.function.name,
            len(batch),
            "ok" if result.ok else result.error_type,
            deleted,
            (time.perf_counter() - started) * 1000,
        )
        result.log_failure(log, spec.function.name)

"""The delivery function: runs the fan-out jobs of big rooms, triggered by the SQS queue.

Each record of the SQS event is one job (``wschat.delivery.jobs``): a plan job queues a room's
next pages as deliver jobs, a deliver job posts one page, paced by this worker's share of the
account's @connections budget (``WSCHAT_POST_BUDGET`` posts a second across
``WSCHAT_DELIVERY_CONCURRENCY`` workers, the event source's MaximumConcurrency) and retrying
throttles until the invocation's time runs out; the recipients it could not reach go back on
the queue as a later job of their own. The answer is a partial batch response
(``ReportBatchItemFailures``): the records that did not finish (and could not be handed on)
are named, so SQS deletes the rest and redelivers only those; after ``maxReceiveCount``
receives a record moves to the dead-letter queue. A record that is not a job at all is named
too, and so ends there.
"""

from __future__ import annotations

import os
import time
from typing import Any

from wschat.delivery.base import DeliveryError
from wschat.delivery.jobs import FanoutJob, JobError, QueueUnavailable
from wschat.handlers import _runtime
from wschat.observability import get_logger, publish_counts
from wschat.storage import StoreError

# Time kept back from the function's timeout: what an unfinished post may still take to
# return (the HTTP read timeout is 10 s, but a throttled retry stops at the deadline).
DEADLINE_MARGIN_SECONDS = 2.0


def worker_rate(env: dict[str, str] | None = None) -> float | None:
    """This worker's posts a second: the budget shared by the workers, or None (unpaced)."""
    env = dict(os.environ) if env is None else env
    budget = float(env.get("WSCHAT_POST_BUDGET") or 0)
    if budget <= 0:
        return None
    workers = max(1, int(env.get("WSCHAT_DELIVERY_CONCURRENCY") or 1))
    return budget / workers


def deadline_of(context: Any) -> float:
    """The ``time.monotonic()`` by which this invocation's posts must be done."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    seconds = remaining() / 1000 if callable(remaining) else 60.0
    return time.monotonic() + max(0.5, seconds - DEADLINE_MARGIN_SECONDS)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    log = get_logger()
    log.clear_state()
    log.append_keys(function_request_id=getattr(context, "aws_request_id", None))
    deadline = deadline_of(context)
    rate = worker_rate()
    unfinished: list[str] = []
    counts = {
        "FanoutJobs": 0,
        "MessagesDelivered": 0,
        "DeliveryFailures": 0,
        "RecipientsRequeued": 0,
        "PostsRepeated": 0,
    }
    jobs: list[tuple[str, dict[str, Any], FanoutJob]] = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId") or "")
        try:
            jobs.append((message_id, record, FanoutJob.from_json(str(record.get("body") or ""))))
        except JobError as exc:
            log.error("not a fan-out job", extra={"message_id": message_id, "reason": str(exc)})
            unfinished.append(message_id)
    # Plan jobs first: the pages they queue are other workers' work, and should not wait
    # behind this batch's posts.
    jobs.sort(key=lambda item: item[2].kind != "plan")
    for message_id, record, job in jobs:
        if time.monotonic() >= deadline:  # no time left: SQS gives it to the next worker
            unfinished.append(message_id)
            continue
        try:
            outcome = _runtime.service_at(job.endpoint, rate=rate).deliver(job, deadline)
        except (StoreError, QueueUnavailable, DeliveryError) as exc:
            log.warning(
                "fan-out job not done",
                extra={"message_id": message_id, "kind": job.kind, "reason": str(exc)},
            )
            unfinished.append(message_id)
            continue
        if outcome.failed:
            unfinished.append(message_id)
        counts["FanoutJobs"] += 1
        counts["MessagesDelivered"] += outcome.delivered
        counts["DeliveryFailures"] += outcome.failed + outcome.gone
        counts["RecipientsRequeued"] += outcome.requeued
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
        if receives > 1:  # a redelivered job: some of these posts may be second copies
            counts["PostsRepeated"] += outcome.delivered
        log.info(
            "fan-out job run",
            extra={
                "message_id": message_id,
                "kind": job.kind,
                "room": job.room,
                "receives": receives,
                "delivered": outcome.delivered,
                "gone": outcome.gone,
                "failed": outcome.failed,
                "queued": outcome.queued,
                "requeued": outcome.requeued,
            },
        )
    publish_counts(counts)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in unfinished]}

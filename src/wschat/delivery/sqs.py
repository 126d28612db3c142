"""The JobQueue adapter for Amazon SQS (and any SQS-compatible server), through boto3.

Jobs go out with ``SendMessageBatch``: at most 10 entries and 256 KiB per call, as SQS allows.
Entries SQS reports failed in an otherwise successful call are sent again (twice at most);
whatever still fails, and any error of the call itself (unreachable endpoint, throttling,
access denied), becomes :class:`QueueUnavailable` at this boundary, once, so the chat service
never sees botocore's exceptions. boto3 is imported on first use, never at a handler's import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from wschat.delivery.jobs import MAX_JOB_BYTES, FanoutJob, QueueUnavailable

MAX_BATCH_ENTRIES = 10  # SendMessageBatch's limit
RESENDS = 2  # of entries SQS reported failed within a successful call
QUEUE_URL_ENV = "WSCHAT_FANOUT_QUEUE_URL"


class SqsJobQueue:
    """Sends fan-out jobs to one queue by URL; the client is built once and kept warm."""

    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SqsJobQueue | None:
        """The queue named by ``WSCHAT_FANOUT_QUEUE_URL``, or None when big rooms are
        delivered inline (no queue configured)."""
        url = (os.environ if env is None else env).get(QUEUE_URL_ENV)
        return cls(url) if url else None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # Standard retries already back off on throttling; a send that still fails
                # falls back to inline delivery, so do not wait long for it.
                config = Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=2,
                    read_timeout=5,
                )
                self._client = boto3.client("sqs", config=config)
            return self._client

    def send(self, jobs: Sequence[FanoutJob], *, delay_seconds: int = 0) -> None:
        for batch in _batches([job.to_json() for job in jobs]):
            self._send_batch(batch, max(0, min(900, delay_seconds)))

    def _send_batch(self, bodies: list[str], delay_seconds: int) -> None:
        pending = {str(i): body for i, body in enumerate(bodies)}
        reasons: list[str] = []
        for _ in range(1 + RESENDS):
            entries: list[dict[str, Any]] = [
                {"Id": key, "MessageBody": body} for key, body in pending.items()
            ]
            if delay_seconds:
                for entry in entries:
                    entry["DelaySeconds"] = delay_seconds
            try:
                response = self.client().send_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except Exception as exc:  # botocore's ClientError, EndpointConnectionError, ...
                raise QueueUnavailable(f"SendMessageBatch to {self.queue_url}: {exc}") from exc
            for success in response.get("Successful", []):
                pending.pop(str(success["Id"]), None)
            failed = response.get("Failed", [])
            reasons = [f"{f.get('Code')}: {f.get('Message', '')}" for f in failed]
            sender_fault = [f for f in failed if f.get("SenderFault")]
            if sender_fault:  # our request is wrong: resending it cannot help
                break
            if not pending:
                return
        raise QueueUnavailable(
            f"SendMessageBatch to {self.queue_url}: {len(pending)} job(s) not taken: {reasons}"
        )


def _batches(bodies: list[str]) -> list[list[str]]:
    """Bodies grouped as SendMessageBatch takes them: 10 entries, 256 KiB in all, per call."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8"))
        if current and (len(current) == MAX_BATCH_ENTRIES or size + length > MAX_JOB_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        batches.append(current)
    return batches

"""Local SQS queues: a standard queue's semantics over one SQLite file in the data dir.

``QueueStore`` is the queue's whole state and every decision SQS makes about it, with no
asyncio and no HTTP: the SQS API (``sqs_api``) and the event source pollers (``event_sources``)
are its two callers, and long polling waits outside it (``listener`` says when a queue may have
messages to receive). Time comes from an injected clock, so visibility timeouts, delays and
retention are tested without sleeping.

What SQS does and this copies:

* a received message is hidden for the queue's VisibilityTimeout (or the receive's own), then
  visible again unless deleted; every receive hands out a new receipt handle, and a stale one
  (the message was received again since) deletes nothing, yet the call succeeds, as SQS's
  DeleteMessage documents;
* ApproximateReceiveCount, ApproximateFirstReceiveTimestamp, SentTimestamp, SenderId;
* a receive that would take a message past its queue's RedrivePolicy ``maxReceiveCount`` moves
  it to the dead-letter queue instead (same id, body and SentTimestamp);
* DelaySeconds (queue and message), MessageRetentionPeriod, MaximumMessageSize, batch limits
  (10 entries, 256 KiB) with per-entry failures, message attributes and their MD5.

Not modelled: FIFO queues (refused: ``UnsupportedOperation``), the 60 s quarantine after
PurgeQueue and DeleteQueue, SSE/KMS and queue policies (accepted and stored, never enforced).

Durability: WAL with ``synchronous=NORMAL`` — a committed send survives the gateway process
dying (not a power cut), which is what "the queued path survives a restart" asks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ACCOUNT_ID: Final = "123456789012"
MAX_BATCH_ENTRIES: Final = 10
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_VISIBILITY_TIMEOUT: Final = 12 * 60 * 60
MAX_WAIT_SECONDS: Final = 20
DEFAULT_SENDER_ID: Final = "AIDAWSCHATLOCALGATEWAY"

# The attributes SetQueueAttributes takes, with SQS's defaults and allowed ranges.
_DEFAULTS: Final = {
    "VisibilityTimeout": "30",
    "MaximumMessageSize": str(MAX_PAYLOAD_BYTES),
    "MessageRetentionPeriod": str(4 * 24 * 60 * 60),
    "DelaySeconds": "0",
    "ReceiveMessageWaitTimeSeconds": "0",
}
_RANGES: Final = {
    "VisibilityTimeout": (0, MAX_VISIBILITY_TIMEOUT),
    "MaximumMessageSize": (1024, MAX_PAYLOAD_BYTES),
    "MessageRetentionPeriod": (60, 14 * 24 * 60 * 60),
    "DelaySeconds": (0, 15 * 60),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_SECONDS),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}
# Accepted and stored so templates and clients that set them work; not enforced locally.
_STORED_ONLY: Final = frozenset(
    {"Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled"}
    | {"RedriveAllowPolicy"}
)
_FIFO_ONLY: Final = frozenset(
    {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
)
SETTABLE: Final = frozenset(_DEFAULTS) | _STORED_ONLY | {"RedrivePolicy"}
READ_ONLY: Final = frozenset(
    {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}
    | {"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp"}
    | {"QueueArn"}
)
MESSAGE_SYSTEM_ATTRIBUTES: Final = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "DeadLetterQueueSourceArn",
)
_QUEUE_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_BATCH_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# SQS's allowed characters: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000+
_INVALID_CHARACTER: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# JSON-protocol error name -> (the query-compatible code boto3 reports as Error.Code).
_QUERY_CODES: Final = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "InvalidMessageContents": "InvalidMessageContents",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidParameterValue": "InvalidParameterValue",
    "MissingParameter": "MissingParameter",
    "InvalidAddress": "InvalidAddress",
}


class QueueError(Exception):
    """An error SQS would answer: ``kind`` is its JSON-protocol name (``QueueDoesNotExist``),
    ``code`` the query-compatible code boto3 shows as Error.Code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def code(self) -> str:
        return _QUERY_CODES.get(self.kind, self.kind)


def no_queue() -> QueueError:
    return QueueError("QueueDoesNotExist", "The specified queue does not exist.")


def queue_arn(name: str, region: str) -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"


def name_from_arn(arn: str) -> str | None:
    """The queue name of ``arn:aws:sqs:{region}:{account}:{name}``, None if it is not one."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        return None
    return parts[5]


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str:
    """SQS's MD5OfMessageAttributes: each attribute by name, each field length-prefixed."""
    digest = hashlib.md5(usedforsecurity=False)

    def field(data: bytes) -> None:
        digest.update(struct.pack(">I", len(data)) + data)

    for name in sorted(attributes):
        value = attributes[name]
        field(name.encode())
        field(value["DataType"].encode())
        if "BinaryValue" in value:
            digest.update(b"\x02")
            field(base64.b64decode(value["BinaryValue"]))
        else:
            digest.update(b"\x01")
            field(value.get("StringValue", "").encode())
    return digest.hexdigest()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class SendEntry:
    """One message to send; ``entry_id`` names it in a batch's results."""

    body: str
    delay_seconds: int | None = None
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    entry_id: str = ""


@dataclass(frozen=True)
class Sent:
    entry_id: str
    message_id: str
    md5_of_body: str
    md5_of_attributes: str | None


@dataclass(frozen=True)
class EntryFailure:
    """A batch entry SQS refused while accepting the others."""

    entry_id: str
    code: str
    message: str
    sender_fault: bool = True


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    attributes: dict[str, str]  # every system attribute; callers pick the requested ones
    message_attributes: dict[str, dict[str, str]]
    md5_of_attributes: str | None


@dataclass(frozen=True)
class Counts:
    visible: int
    not_visible: int
    delayed: int


@dataclass(frozen=True)
class _Queue:
    name: str
    attributes: dict[str, str]
    created: int
    modified: int

    def number(self, key: str) -> int:
        return int(self.attributes.get(key, _DEFAULTS.get(key, "0")))

    @property
    def redrive(self) -> tuple[str, int] | None:
        policy = self.attributes.get("RedrivePolicy")
        if not policy:
            return None
        parsed = json.loads(policy)
        target = name_from_arn(str(parsed["deadLetterTargetArn"]))
        return (target, int(parsed["maxReceiveCount"])) if target else None


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    md5 TEXT NOT NULL,
    message_attributes TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER,
    receipt TEXT,
    source_queue TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at);
"""


class QueueStore:
    """Every local queue and its messages, in one SQLite file (``":memory:"`` for none).

    One connection, used from one thread (the gateway's event loop); every call is a short
    transaction. ``listener(queue_name)`` is called when messages may have become receivable
    in that queue (a send, a move to it as dead-letter queue, a visibility change to 0).
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
        listener: Callable[[str], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.region = region
        self.clock = clock
        self.listener = listener
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._queues: dict[str, _Queue] = {
            row["name"]: _Queue(
                row["name"], json.loads(row["attributes"]), row["created"], row["modified"]
            )
            for row in self._db.execute("SELECT * FROM queues")
        }

    def close(self) -> None:
        self._db.close()

    def _notify(self, name: str) -> None:
        if self.listener is not None:
            self.listener(name)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- queues ------------------------------------------------------------------------------

    def queue_names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self._queues if name.startswith(prefix))

    def exists(self, name: str) -> bool:
        return name in self._queues

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise no_queue()
        return queue

    def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> None:
        """CreateQueue: a new queue, or nothing if one of that name has the same attributes
        (SQS's QueueNameExists when they differ)."""
        if name.endswith(".fifo"):
            raise _fifo_refused()
        if not _QUEUE_NAME.match(name):
            raise QueueError(
                "InvalidParameterValue",
                "Can only include alphanumeric characters, hyphens, or underscores. "
                "1 to 80 in length",
            )
        wanted = self._checked(attributes or {}, name)
        existing = self._queues.get(name)
        if existing is not None:
            current = {key: existing.attributes.get(key, _DEFAULTS.get(key)) for key in wanted}
            if any(current[key] != value for key, value in wanted.items()):
                raise QueueError(
                    "QueueNameExists",
                    f"A queue already exists with the same name and a different value for "
                    f"attribute(s) {', '.join(sorted(wanted))}",
                )
            return
        self._write_queue(name, wanted, created=None)

    def ensure_queue(self, name: str, attributes: Mapping[str, str]) -> None:
        """A template's queue: created, or its attributes set to the template's (what a stack
        update does); messages already queued stay."""
        if name in self._queues:
            self.set_attributes(name, attributes, replace=True)
        else:
            self.create_queue(name, attributes)

    def set_attributes(
        self, name: str, attributes: Mapping[str, str], *, replace: bool = False
    ) -> None:
        """SetQueueAttributes; ``replace`` drops settable attributes not given (back to SQS's
        defaults), as a template's resource properties replace the queue's."""
        queue = self._queue(name)
        wanted = self._checked(attributes, name)
        merged = {} if replace else dict(queue.attributes)
        merged.update(wanted)
        self._write_queue(name, merged, created=queue.created)
        self._notify(name)  # a shorter wait or delay may make messages receivable sooner

    def _write_queue(self, name: str, attributes: dict[str, str], created: int | None) -> None:
        now = int(self.clock())
        self._db.execute(
            "INSERT OR REPLACE INTO queues (name, attributes, created, modified) "
            "VALUES (?, ?, ?, ?)",
            (name, json.dumps(attributes), now if created is None else created, now),
        )
        self._queues[name] = _Queue(name, attributes, now if created is None else created, now)

    def _checked(self, attributes: Mapping[str, str], queue_name: str) -> dict[str, str]:
        checked: dict[str, str] = {}
        for key, raw in attributes.items():
            value = str(raw)
            if key in _FIFO_ONLY:
                if key == "FifoQueue" and value.lower() == "false":
                    continue
                raise _fifo_refused()
            if key not in SETTABLE:
                raise QueueError("InvalidAttributeName", f"Unknown Attribute {key}.")
            if key in _RANGES:
                low, high = _RANGES[key]
                if not (value.isdigit() and low <= int(value) <= high):
                    raise QueueError(
                        "InvalidAttributeValue",
                        f"Invalid value for the parameter {key}. Reason: must be an integer "
                        f"from {low} to {high}.",
                    )
            if key == "RedrivePolicy" and value:
                value = self._checked_redrive(value, queue_name)
            checked[key] = value
        return checked

    def _checked_redrive(self, value: str, queue_name: str) -> str:
        try:
            policy = json.loads(value)
            target = name_from_arn(str(policy["deadLetterTargetArn"]))
            count = int(policy["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            raise QueueError(
                "InvalidAttributeValue",
                "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a "
                "JSON object with deadLetterTargetArn and maxReceiveCount.",
            ) from None
        if target is None or target not in self._queues or target == queue_name:
            raise QueueError(
                "InvalidAttributeValue",
                "Value for parameter RedrivePolicy is invalid. Reason: Dead letter target "
                f"does not exist: {policy['deadLetterTargetArn']}",
            )
        if not 1 <= count <= 1000:
            raise QueueError(
                "InvalidAttributeValue",
                "Value for parameter RedrivePolicy is invalid. Reason: Invalid value for "
                "maxReceiveCount: must be an integer from 1 to 1000.",
            )
        return json.dumps(
            {"deadLetterTargetArn": policy["deadLetterTargetArn"], "maxReceiveCount": count}
        )

    def delete_queue(self, name: str) -> None:
        self._queue(name)
        with self._transaction():
            self._db.execute("DELETE FROM messages WHERE queue = ?", (name,))
            self._db.execute("DELETE FROM queues WHERE name = ?", (name,))
        del self._queues[name]
        self._notify(name)  # long polls on it end (with QueueDoesNotExist)

    def purge(self, name: str) -> None:
        self._queue(name)
        self._db.execute("DELETE FROM messages WHERE queue = ?", (name,))

    def attributes(self, name: str, names: Iterable[str] = ("All",)) -> dict[str, str]:
        """GetQueueAttributes: the named attributes ("All" for every one) that have values."""
        queue = self._queue(name)
        wanted = set(names)
        for key in wanted:
            if key != "All" and key not in SETTABLE | READ_ONLY | _FIFO_ONLY:
                raise QueueError("InvalidAttributeName", f"Unknown Attribute {key}.")
        counts = self.counts(name)
        values = {
            **_DEFAULTS,
            "SqsManagedSseEnabled": "false",
            **queue.attributes,
            "QueueArn": queue_arn(name, self.region),
            "ApproximateNumberOfMessages": str(counts.visible),
            "ApproximateNumberOfMessagesNotVisible": str(counts.not_visible),
            "ApproximateNumberOfMessagesDelayed": str(counts.delayed),
            "CreatedTimestamp": str(queue.created),
            "LastModifiedTimestamp": str(queue.modified),
        }
        values = {key: value for key, value in values.items() if value != ""}
        if "All" in wanted:
            return values
        return {key: value for key, value in values.items() if key in wanted}

    def visibility_timeout(self, name: str) -> int:
        return self._queue(name).number("VisibilityTimeout")

    def wait_time(self, name: str) -> int:
        return self._queue(name).number("ReceiveMessageWaitTimeSeconds")

    def counts(self, name: str) -> Counts:
        self._queue(name)
        self._expire(name)
        row = self._db.execute(
            "SELECT"
            " COALESCE(SUM(visible_at <= :now), 0),"
            " COALESCE(SUM(visible_at > :now AND receipt IS NOT NULL), 0),"
            " COALESCE(SUM(visible_at > :now AND receipt IS NULL), 0)"
            " FROM messages WHERE queue = :queue",
            {"now": self.clock(), "queue": name},
        ).fetchone()
        return Counts(int(row[0]), int(row[1]), int(row[2]))

    def next_visible_at(self, name: str) -> float | None:
        """When the next hidden message (in flight or delayed) becomes visible, if any."""
        row = self._db.execute(
            "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND visible_at > ?",
            (name, self.clock()),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _expire(self, name: str) -> None:
        retention = self._queue(name).number("MessageRetentionPeriod")
        cutoff_ms = int((self.clock() - retention) * 1000)
        self._db.execute("DELETE FROM messages WHERE queue = ? AND sent_ms < ?", (name, cutoff_ms))

    # --- sending -----------------------------------------------------------------------------

    def send(self, name: str, entry: SendEntry, *, sender_id: str = DEFAULT_SENDER_ID) -> Sent:
        """SendMessage; a refused message raises QueueError."""
        queue = self._queue(name)
        result = self._prepare(queue, entry)
        if isinstance(result, EntryFailure):
            raise QueueError(result.code, result.message)
        with self._transaction():
            sent = self._insert(queue, entry, sender_id)
        self._notify(name)
        return sent

    def send_batch(
        self, name: str, entries: Sequence[SendEntry], *, sender_id: str = DEFAULT_SENDER_ID
    ) -> tuple[list[Sent], list[EntryFailure]]:
        """SendMessageBatch: the whole batch is refused for its shape (count, ids, total size);
        each entry otherwise succeeds or fails on its own."""
        queue = self._queue(name)
        check_batch_ids([entry.entry_id for entry in entries], "SendMessageBatchRequestEntry")
        total = sum(_payload_size(entry) for entry in entries)
        if total > MAX_PAYLOAD_BYTES:
            raise QueueError(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {MAX_PAYLOAD_BYTES} bytes. "
                f"You have sent {total} bytes.",
            )
        sent: list[Sent] = []
        failed: list[EntryFailure] = []
        with self._transaction():
            for entry in entries:
                refused = self._prepare(queue, entry)
                if refused is not None:
                    failed.append(refused)
                else:
                    sent.append(self._insert(queue, entry, sender_id))
        if sent:
            self._notify(name)
        return sent, failed

    def _prepare(self, queue: _Queue, entry: SendEntry) -> EntryFailure | None:
        limit = queue.number("MaximumMessageSize")
        size = _payload_size(entry)
        if not entry.body:
            return EntryFailure(
                entry.entry_id,
                "MissingParameter",
                "The request must contain the parameter MessageBody.",
            )
        if size > limit:
            return EntryFailure(
                entry.entry_id,
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than "
                f"{limit} bytes.",
            )
        if _INVALID_CHARACTER.search(entry.body):
            return EntryFailure(
                entry.entry_id,
                "InvalidMessageContents",
                "Invalid characters found. Valid values: #x9 | #xA | #xD | #x20 to #xD7FF | "
                "#xE000 to #xFFFD | #x10000 to #x10FFFF",
            )
        if entry.delay_seconds is not None and not 0 <= entry.delay_seconds <= 900:
            return EntryFailure(
                entry.entry_id,
                "InvalidParameterValue",
                f"Value {entry.delay_seconds} for parameter DelaySeconds is invalid. Reason: "
                "DelaySeconds must be >= 0 and <= 900.",
            )
        problem = _attributes_problem(entry.attributes)
        if problem:
            return EntryFailure(entry.entry_id, "InvalidParameterValue", problem)
        return None

    def _insert(self, queue: _Queue, entry: SendEntry, sender_id: str) -> Sent:
        now = self.clock()
        delay = (
            entry.delay_seconds if entry.delay_seconds is not None else queue.number("DelaySeconds")
        )
        message_id = str(uuid.uuid4())
        md5 = _md5(entry.body)
        attributes = {key: dict(value) for key, value in entry.attributes.items()}
        self._db.execute(
            "INSERT INTO messages (queue, id, body, md5, message_attributes, sender_id, sent_ms,"
            " visible_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                queue.name,
                message_id,
                entry.body,
                md5,
                json.dumps(attributes),
                sender_id,
                int(now * 1000),
                now + delay,
            ),
        )
        md5_attributes = md5_of_message_attributes(attributes) if attributes else None
        return Sent(entry.entry_id, message_id, md5, md5_attributes)

    # --- receiving ---------------------------------------------------------------------------

    def receive(
        self, name: str, max_messages: int = 1, visibility_timeout: int | None = None
    ) -> list[ReceivedMessage]:
        """ReceiveMessage without waiting (the async layer long-polls by calling again)."""
        queue = self._queue(name)
        if not 1 <= max_messages <= MAX_BATCH_ENTRIES:
            raise QueueError(
                "InvalidParameterValue",
                f"Value {max_messages} for parameter MaxNumberOfMessages is invalid. Reason: "
                "Must be between 1 and 10, if provided.",
            )
        hidden_for = (
            queue.number("VisibilityTimeout") if visibility_timeout is None else visibility_timeout
        )
        check_visibility_timeout(hidden_for)
        self._expire(name)
        redrive = queue.redrive
        if redrive is not None and redrive[0] not in self._queues:
            redrive = None  # its dead-letter queue was deleted: SQS keeps delivering
        now = self.clock()
        now_ms = int(now * 1000)
        received: list[ReceivedMessage] = []
        moved = False
        with self._transaction():
            while len(received) < max_messages:
                rows = self._db.execute(
                    "SELECT * FROM messages WHERE queue = ? AND visible_at <= ?"
                    " ORDER BY seq LIMIT ?",
                    (name, now, max_messages - len(received)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    count = row["receive_count"] + 1
                    if redrive is not None and count > redrive[1]:
                        # This receive would exceed maxReceiveCount: to the dead-letter queue.
                        self._db.execute(
                            "UPDATE messages SET queue = ?, receipt = NULL, visible_at = ?,"
                            " source_queue = ? WHERE seq = ?",
                            (redrive[0], now, name, row["seq"]),
                        )
                        moved = True
                        continue
                    receipt = _receipt_handle(name, row["id"])
                    first = row["first_receive_ms"] or now_ms
                    self._db.execute(
                        "UPDATE messages SET receive_count = ?, first_receive_ms = ?, receipt = ?,"
                        " visible_at = ? WHERE seq = ?",
                        (count, first, receipt, now + hidden_for, row["seq"]),
                    )
                    received.append(self._received(row, receipt, count, first))
        if moved and redrive is not None:
            self._notify(redrive[0])
        return received

    def _received(
        self, row: sqlite3.Row, receipt: str, count: int, first_ms: int
    ) -> ReceivedMessage:
        attributes = {
            "SenderId": row["sender_id"],
            "SentTimestamp": str(row["sent_ms"]),
            "ApproximateReceiveCount": str(count),
            "ApproximateFirstReceiveTimestamp": str(first_ms),
        }
        if row["source_queue"]:
            attributes["DeadLetterQueueSourceArn"] = queue_arn(row["source_queue"], self.region)
        message_attributes: dict[str, dict[str, str]] = json.loads(row["message_attributes"])
        return ReceivedMessage(
            message_id=row["id"],
            receipt_handle=receipt,
            body=row["body"],
            md5_of_body=row["md5"],
            attributes=attributes,
            message_attributes=message_attributes,
            md5_of_attributes=(
                md5_of_message_attributes(message_attributes) if message_attributes else None
            ),
        )

    def delete(self, name: str, receipt_handle: str) -> None:
        """DeleteMessage: a stale receipt handle (received again since) or a message already
        deleted succeeds without deleting anything, as SQS does."""
        self._queue(name)
        message_id = _parse_receipt(name, receipt_handle)
        self._db.execute(
            "DELETE FROM messages WHERE queue = ? AND id = ? AND receipt = ?",
            (name, message_id, receipt_handle),
        )

    def change_visibility(self, name: str, receipt_handle: str, timeout: int) -> None:
        """ChangeMessageVisibility: hide an in-flight message for ``timeout`` s from now (0
        makes it visible at once)."""
        self._queue(name)
        message_id = _parse_receipt(name, receipt_handle)
        check_visibility_timeout(timeout)
        now = self.clock()
        row = self._db.execute(
            "SELECT visible_at, receipt FROM messages WHERE queue = ? AND id = ?",
            (name, message_id),
        ).fetchone()
        if row is None or row["receipt"] != receipt_handle:
            raise QueueError(
                "InvalidParameterValue",
                f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: "
                "Message does not exist or is not available for visibility timeout change.",
            )
        if row["visible_at"] <= now:
            raise QueueError("MessageNotInflight", f"Message {message_id} is not in flight.")
        self._db.execute(
            "UPDATE messages SET visible_at = ? WHERE queue = ? AND id = ?",
            (now + timeout, name, message_id),
        )
        if timeout == 0:
            self._notify(name)

    def release_all_in_flight(self) -> int:
        """Make every in-flight message visible (at gateway start: whoever received them in a
        previous run is gone); returns how many."""
        now = self.clock()
        cursor = self._db.execute(
            "UPDATE messages SET visible_at = ? WHERE receipt IS NOT NULL AND visible_at > ?",
            (now, now),
        )
        for name in self._queues:
            self._notify(name)
        return cursor.rowcount


def check_batch_ids(ids: Sequence[str], entry_kind: str) -> None:
    """The whole-batch errors SQS answers before looking at any entry."""
    if not ids:
        raise QueueError(
            "EmptyBatchRequest", f"There should be at least one {entry_kind} in the request."
        )
    if len(ids) > MAX_BATCH_ENTRIES:
        raise QueueError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. "
            f"You have sent {len(ids)}.",
        )
    for entry_id in ids:
        if not _BATCH_ID.match(entry_id):
            raise QueueError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
            )
    seen: set[str] = set()
    for entry_id in ids:
        if entry_id in seen:
            raise QueueError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)


def check_visibility_timeout(timeout: int) -> None:
    if not 0 <= timeout <= MAX_VISIBILITY_TIMEOUT:
        raise QueueError(
            "InvalidParameterValue",
            f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be "
            f"between 0 and {MAX_VISIBILITY_TIMEOUT}, if provided.",
        )


def _fifo_refused() -> QueueError:
    return QueueError(
        "UnsupportedOperation",
        "FIFO queues are not supported by the local gateway (standard queues only)",
    )


def _payload_size(entry: SendEntry) -> int:
    """What SQS counts against MaximumMessageSize: body plus attribute names, types, values."""
    size = len(entry.body.encode())
    for name, value in entry.attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "BinaryValue" in value:
            size += len(str(value["BinaryValue"])) * 3 // 4
        else:
            size += len(str(value.get("StringValue", "")).encode())
    return size


def _attributes_problem(attributes: Mapping[str, Mapping[str, str]]) -> str | None:
    if len(attributes) > 10:
        return f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [10]."
    for name, value in attributes.items():
        data_type = str(value.get("DataType", ""))
        base = data_type.partition(".")[0]
        if base not in ("String", "Number", "Binary"):
            return f"The type of message (user) attribute '{name}' is invalid."
        key = "BinaryValue" if base == "Binary" else "StringValue"
        if not value.get(key):
            return f"The message attribute '{name}' must contain a non-empty value of type {base}"
        if base == "Binary":
            try:
                base64.b64decode(str(value[key]), validate=True)
            except (binascii.Error, ValueError):
                return f"The message attribute '{name}' has an invalid binary value."
    return None


def _receipt_handle(queue: str, message_id: str) -> str:
    raw = f"{queue}\x00{message_id}\x00{uuid.uuid4().hex}".encode()
    return base64.b64encode(raw).decode("ascii")


def _parse_receipt(queue: str, receipt_handle: str) -> str:
    """The message id a receipt handle names; ReceiptHandleIsInvalid if it is not one of this
    queue's."""
    try:
        name, message_id, _ = base64.b64decode(receipt_handle, validate=True).decode().split("\x00")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        name, message_id = "", ""
    if name != queue or not message_id:
        raise QueueError(
            "ReceiptHandleIsInvalid",
            f'The input receipt handle "{receipt_handle}" is not a valid receipt handle.',
        )
    return message_id


def parse_message_attributes(value: Any) -> dict[str, dict[str, str]]:
    """MessageAttributes as the JSON protocol carries them, type-checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise QueueError("InvalidParameterValue", "MessageAttributes must be a map")
    attributes: dict[str, dict[str, str]] = {}
    for name, item in value.items():
        if not isinstance(item, dict) or not isinstance(item.get("DataType"), str):
            raise QueueError(
                "InvalidParameterValue", f"The message attribute '{name}' must have a DataType."
            )
        attributes[str(name)] = {
            key: str(item[key]) for key in ("DataType", "StringValue", "BinaryValue") if key in item
        }
    return attributes

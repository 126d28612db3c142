"""Fan-out jobs: the unit of queued delivery to a room too big for one invocation.

A room's delivery is a chain of jobs on one queue (docs/scaling.md, planned in issue 10):

* a **plan** job names a room, the frame to deliver and a cursor into the room's member ids;
  the delivery function reads the next pages of ids after the cursor, sends one **deliver**
  job per page and, if the room goes on, one plan job with the new cursor;
* a **deliver** job carries a page of connection ids and the frame; the delivery function
  posts it to each, paced, retrying throttles until its time is up. The recipients it could
  not reach go back on the queue as a new deliver job of just those ids, a little later
  (``attempt`` + 1, ``retry_delay``), so the ones reached are not posted again; only when
  that is not possible (the queue refuses, or ``FanoutSettings.retries`` are used up) does the job
  report itself failed, so SQS redelivers it and, after ``maxReceiveCount``, dead-letters it.

Jobs are plain JSON so any SQS-compatible queue carries them and a dead-lettered job can be
read by a person. ``JobQueue`` is the port the chat service enqueues through; its SQS adapter
is :mod:`wschat.delivery.sqs`. Nothing here imports boto3.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# SQS refuses a message body over 256 KiB; a job stays well below it (see ``FanoutSettings``).
MAX_JOB_BYTES = 256 * 1024
JOB_VERSION = 1

JobKind = Literal["plan", "deliver"]


def retry_delay(attempt: int) -> int:
    """Seconds before a re-queued deliver job is visible: 2, 4, 8, 16 (SQS allows 900)."""
    return int(min(900, 2**attempt))


class JobError(ValueError):
    """A queue message that is not a fan-out job this code can run (a bug or a foreign
    message): never retried into success, so it ends in the dead-letter queue."""


class QueueUnavailable(Exception):
    """The job queue could not take the jobs: unreachable, refused or throttled."""


@dataclass(frozen=True, slots=True)
class FanoutSettings:
    """When a room's delivery is queued, and how big its jobs are.

    ``inline_limit``: rooms of at most this many recipients are posted to inside the
    invocation that produced the event (lowest latency); None (the default, "auto") leaves it
    to the sender: ``Sender.inline_limit``, 500 for API Gateway (at ~20 ms a post and 64
    threads, ~0.16 s) and no limit for the local gateway's channel, which posts a whole room
    in one call with no account throttle or 29 s wall to stay under. ``page_size``:
    recipients per deliver job; 500 ids of ~16 characters plus a 4,000-character frame is
    ~30 KiB, far under SQS's 256 KiB.
    ``plan_pages``: pages one plan job reads before handing the rest of the room on (a plan
    job amid its pages, so concurrent rooms take turns). 10 pages (5,000 ids) are
    one DynamoDB Query and a few SendMessageBatch calls, ~20 ms, while delivering them takes
    0.5 s at 9,000 posts a second: the next plan job is always there before the pages run
    out (W6 measures the plan job: bench/workloads/w6_aws_scale.py).
    ``retries``: later deliver jobs of its unreached recipients a job may queue before it
    reports itself failed (and SQS's redelivery and dead-letter queue take over).
    """

    inline_limit: int | None = None
    page_size: int = 500
    plan_pages: int = 10
    retries: int = 4

    @property
    def stretch(self) -> int:
        """Member ids one plan job reads (and one inline pass posts): ``plan_pages`` pages."""
        return self.page_size * self.plan_pages

    def __post_init__(self) -> None:
        if (
            (self.inline_limit is not None and self.inline_limit < 0)
            or self.page_size < 1
            or self.plan_pages < 1
            or self.retries < 0
        ):
            raise ValueError(f"fan-out settings out of range: {self}")


@dataclass(frozen=True, slots=True)
class FanoutJob:
    """One job: ``plan`` (room + cursor) or ``deliver`` (room + ids). ``data`` is the frame
    as sent to each recipient; ``endpoint`` the stage's @connections URL, since an SQS event
    has no requestContext to find it from; ``exclude`` ids that must not get the frame."""

    kind: JobKind
    room: str
    endpoint: str
    data: bytes
    ids: tuple[str, ...] = ()
    after: str | None = None  # plan: the last member id already planned
    exclude: frozenset[str] = field(default_factory=frozenset)
    attempt: int = 0  # deliver: how many jobs of these recipients ran before this one

    @classmethod
    def plan(
        cls,
        room: str,
        endpoint: str,
        data: bytes,
        *,
        after: str | None = None,
        exclude: Sequence[str] = (),
    ) -> FanoutJob:
        return cls("plan", room, endpoint, data, after=after, exclude=frozenset(exclude))

    @classmethod
    def deliver(
        cls, room: str, endpoint: str, data: bytes, ids: Sequence[str], *, attempt: int = 0
    ) -> FanoutJob:
        return cls("deliver", room, endpoint, data, ids=tuple(ids), attempt=attempt)

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "v": JOB_VERSION,
            "kind": self.kind,
            "room": self.room,
            "endpoint": self.endpoint,
        }
        try:
            document["text"] = self.data.decode("utf-8")
        except UnicodeDecodeError:
            document["b64"] = base64.b64encode(self.data).decode("ascii")
        if self.ids:
            document["ids"] = list(self.ids)
        if self.after is not None:
            document["after"] = self.after
        if self.exclude:
            document["exclude"] = sorted(self.exclude)
        if self.attempt:
            document["attempt"] = self.attempt
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        if len(body.encode("utf-8")) > MAX_JOB_BYTES:
            raise JobError(f"a {self.kind} job of {len(self.ids)} ids is over 256 KiB")
        return body

    @classmethod
    def from_json(cls, body: str) -> FanoutJob:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise JobError(f"not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("v") != JOB_VERSION:
            raise JobError("not a version 1 fan-out job")
        kind = document.get("kind")
        room, endpoint = document.get("room"), document.get("endpoint")
        if kind not in ("plan", "deliver") or not isinstance(room, str):
            raise JobError(f"unknown job kind {kind!r} or no room")
        if not isinstance(endpoint, str) or not endpoint:
            raise JobError("no @connections endpoint")
        if isinstance(document.get("text"), str):
            data = document["text"].encode("utf-8")
        elif isinstance(document.get("b64"), str):
            data = base64.b64decode(document["b64"])
        else:
            raise JobError("no frame (text or b64)")
        ids = document.get("ids", [])
        exclude = document.get("exclude", [])
        after = document.get("after")
        if (
            not _strings(ids)
            or not _strings(exclude)
            or not (after is None or isinstance(after, str))
        ):
            raise JobError("ids, exclude and after must be strings")
        if kind == "deliver" and not ids:
            raise JobError("a deliver job with no ids")
        attempt = document.get("attempt", 0)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise JobError("attempt must be a count")
        return cls(kind, room, endpoint, data, tuple(ids), after, frozenset(exclude), attempt)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class JobQueue(Protocol):
    """Where fan-out jobs go. ``send`` returns once every job is accepted (SQS: stored
    redundantly), or raises QueueUnavailable; jobs accepted before the failure stay queued.
    ``delay_seconds``: the jobs stay invisible that long (SQS's DelaySeconds, at most 900)."""

    def send(self, jobs: Sequence[FanoutJob], *, delay_seconds: int = 0) -> None: ...

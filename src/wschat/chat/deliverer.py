"""The one deliverer: runs the intents use cases return, and the fan-out jobs of big rooms.

A room within the inline limit is posted to by the invocation that stored the event; a bigger
one becomes a plan job on the queue (docs/scaling.md), which ``deliver`` runs in the delivery
function: a plan job queues the room's member ids as deliver jobs, a deliver job posts to its
page. Connections a post finds gone (410) go to the forget use case
(``lifecycle.departed``), whose ``left`` events this delivers in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from wschat import protocol
from wschat.chat import lifecycle
from wschat.chat.config import ChatConfig, Log, Outcome
from wschat.chat.intents import Announce, Event, Intent, Reply, ToConnections, ToRoom
from wschat.delivery.base import DeliveryError, FanoutResult, GoneConnection, Sender
from wschat.delivery.jobs import FanoutJob, JobQueue, QueueUnavailable, retry_delay
from wschat.storage.base import ChatStore, member_names, members_within

# Failed recipients logged one by one per post; the rest of them in one line.
FAILURES_LOGGED = 10
# What delivering needs of the store, whatever the action: a room's ids (and names, for
# presence, and their count first), and removing a connection found gone (the forget use case).
# ``queue.send``: a big room becomes a plan job.
STORE_NEEDS = frozenset(
    lifecycle.FORGET_NEEDS | {"room_member_ids", "room_members", "room_member_count", "queue.send"}
)


class Deliverer:
    def __init__(
        self,
        store: ChatStore,
        sender: Sender,
        config: ChatConfig,
        log: Log,
        *,
        now_ms: Callable[[], int],
        queue: JobQueue | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.store = store
        self.now_ms = now_ms
        self.sender = sender
        self.config = config
        self.log = log
        # Big rooms' events go to ``queue`` as jobs naming ``endpoint`` (this stage's
        # @connections URL); without both, every room is delivered by the invocation itself.
        self.queue = queue
        self.endpoint = endpoint
        # A connection still in its $connect cannot be posted to (API Gateway answers 410); a
        # 410 must not be taken for a departure then, so such ids are left out of every post.
        self.connecting: set[str] = set()

    # --- intents ------------------------------------------------------------------------------

    def run(self, intents: Iterable[Intent], outcome: Outcome) -> None:
        """Send what the intents say, in order; forget the connections found gone."""
        for intent in intents:
            match intent:
                case Reply():
                    self.reply(intent.connection_id, intent.event)
                case ToRoom():
                    self.forget(self._to_room(intent, outcome), outcome)
                case ToConnections():
                    data = protocol.encode(intent.event)
                    ids = list(dict.fromkeys(intent.connection_ids))
                    gone = self._post_inline(ids, data, outcome, ack=intent.ack)
                    self.forget(gone, outcome)
                case Announce():
                    self._announce(intent, outcome)

    def reply(self, connection_id: str, event: Event) -> None:
        """Send one event to one connection: the caller of an action."""
        reply_to(self.sender, connection_id, event, self.log)

    def _announce(self, intent: Announce, outcome: Outcome) -> None:
        members = members_within(self.store, intent.room, self.config.presence_event_limit)
        if members is not None and not (intent.quiet_if is not None and intent.quiet_if(members)):
            event = intent.make_event(member_names(members))
            ids = tuple(m.connection_id for m in members)
            gone = self._to_room(ToRoom(intent.room, event, members=ids), outcome)
            self.forget(gone, outcome)
            if intent.echo_to is None or intent.echo_to in ids:
                return
        elif intent.echo_to is None:
            return
        else:
            # The one who changed still learns of it, with the room's names.
            names = member_names(self.store.room_members(intent.room))
            event = intent.make_event(names)
        self.reply(intent.echo_to, event)

    # --- posting ------------------------------------------------------------------------------

    def _to_room(self, intent: ToRoom, outcome: Outcome) -> list[str]:
        """Every event for a room comes through here: a message, joined, left, renamed.

        A room within the inline limit (``fanout.inline_limit``, else the sender's) is posted
        to here and now, the caller's ack first in the same sender call. A bigger room is
        handed to the queue as one plan job, and the ack is sent once the queue has it; when
        there is no queue, or it cannot take the job, this invocation posts to the room page by
        page: the message is stored already, so the ack is true either way, and live readers
        still get it (an ``unavailable`` would invite a resend, i.e. a second copy). The
        intent's ``members``, when the use case read them, spare a read. Returns the ids found
        gone.
        """
        data = protocol.encode(intent.event)
        members = list(intent.members) if intent.members is not None else None
        skip = frozenset(intent.exclude)
        limit = self.config.fanout.inline_limit
        if limit is None:
            limit = self.sender.inline_limit
        if limit is None:  # any number: page through the room here
            if members is not None:
                return self._post_inline(members, data, outcome, ack=intent.ack, skip=skip)
            return self._post_pages(intent.room, data, outcome, ack=intent.ack, skip=skip)
        if members is None:
            members = self.store.room_member_ids(intent.room, limit=limit + 1)
        if len(members) <= limit:
            return self._post_inline(members, data, outcome, ack=intent.ack, skip=skip)
        if self._enqueue(intent.room, data, outcome, skip):
            if intent.ack is not None:
                self.reply(intent.ack.connection_id, intent.ack.event)
            return []
        return self._post_pages(intent.room, data, outcome, ack=intent.ack, skip=skip)

    def _enqueue(
        self, room: str, data: bytes, outcome: Outcome, skip: frozenset[str] = frozenset()
    ) -> bool:
        """Hand a room's delivery to the queue as a plan job; False if it cannot be."""
        if self.queue is None or self.endpoint is None:
            return False
        job = FanoutJob.plan(room, self.endpoint, data, exclude=sorted(self.connecting | skip))
        try:
            self.queue.send([job])
        except QueueUnavailable as exc:
            self.log.warning(
                "fan-out queue unavailable: delivering inline",
                extra={"room": room, "reason": str(exc)},
            )
            return False
        outcome.queued += 1
        return True

    def _post_pages(
        self,
        room: str,
        data: bytes,
        outcome: Outcome,
        *,
        ack: Reply | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Post to a whole room from this invocation, a stretch of member ids at a time (a
        plan job's worth: memory stays bounded, and the thread pool stays full)."""
        page_size = self.config.fanout.stretch
        gone: list[str] = []
        after: str | None = None
        while True:
            page = self.store.room_member_ids(room, after=after, limit=page_size)
            gone += self._post_inline(page, data, outcome, ack=ack, skip=skip)
            ack = None
            if len(page) < page_size:
                return gone
            after = page[-1]

    def _post_inline(
        self,
        connection_ids: list[str],
        data: bytes,
        outcome: Outcome,
        *,
        ack: Reply | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Post ``data`` to connections (but those still connecting, or in ``skip``), after the
        caller's ``ack`` when there is one, in one sender call (one round trip on the local
        fast path). The ack is a reply: its failure is logged, never taken for a departure
        (as ``reply``). Returns the ids found gone."""
        batches: list[tuple[list[str], bytes]] = []
        if ack is not None:
            batches.append(([ack.connection_id], protocol.encode(ack.event)))
        connection_ids = [
            cid for cid in connection_ids if cid not in self.connecting and cid not in skip
        ]
        if connection_ids:
            batches.append((connection_ids, data))
        if not batches:
            return []
        results = self.sender.post_batch(batches)
        if ack is not None:
            for failed_id, reason in results.pop(0).failed.items():
                self.log.warning("reply failed", extra={"recipient": failed_id, "reason": reason})
        return self._count_posted(results[0], outcome) if results else []

    def _count_posted(self, result: FanoutResult, outcome: Outcome) -> list[str]:
        outcome.count(result)
        failed = list(result.failed.items())
        # A line per recipient, but not 500 of them for one throttled page (log volume costs).
        for failed_id, reason in failed[:FAILURES_LOGGED]:
            self.log.warning("delivery failed", extra={"recipient": failed_id, "reason": reason})
        if len(failed) > FAILURES_LOGGED:
            self.log.warning(
                "delivery failed for more recipients",
                extra={"recipients": len(failed) - FAILURES_LOGGED, "reason": failed[-1][1]},
            )
        return result.gone

    # --- connections found gone ---------------------------------------------------------------

    def forget(
        self,
        connection_ids: list[str],
        outcome: Outcome,
        *,
        confirmed: bool = False,
    ) -> None:
        """Run the forget use case for connections that are gone, and deliver its ``left``
        events. Announcing may find more gone connections; they are forgotten in the same
        loop, each once, so a wave of dropped clients cannot recurse. ``confirmed``: the first
        one's own $disconnect (see ``lifecycle.departed``)."""
        pending = list(connection_ids)
        seen = set(pending)
        first = True
        while pending:
            intents = lifecycle.departed(
                self.store,
                pending.pop(),
                self.now_ms,
                self.config,
                confirmed=confirmed and first,
            )
            first = False
            for intent in intents:
                for gone_id in self._to_room(intent, outcome):
                    if gone_id not in seen:
                        seen.add(gone_id)
                        pending.append(gone_id)

    # --- fan-out jobs (the delivery function) -------------------------------------------------

    def deliver(self, job: FanoutJob, deadline: float | None = None) -> Outcome:
        """Run one fan-out job from the queue.

        A plan job reads up to ``fanout.plan_pages`` pages of the room's member ids after its
        cursor and queues one deliver job per page, with a plan job for the rest of the room
        among them, after the first half: behind pages of its own room, so rooms sent at once
        take turns on the queue (it hands out jobs about in the order sent) instead of the
        first room's whole chain going first, and ahead of the second half, so the next pages
        are planned while these are still being posted; QueueUnavailable or a StoreError
        propagate, and the job is run again. A deliver job posts its page, retrying throttles
        until ``deadline`` (a ``time.monotonic()`` value). The recipients it did not reach are
        queued again as a job of their own, later (``outcome.requeued``), so those reached get
        no second copy; ``failed`` in the outcome counts those that could not be handed on
        either, and then the job must run again (an SQS redelivery: the delivered ones may get
        a second copy, which clients drop by message id).
        """
        outcome = Outcome(f"fanout:{job.kind}")
        if job.kind == "plan":
            self._plan(job, outcome)
            return outcome
        recipients = [cid for cid in job.ids if cid not in job.exclude]
        result = self.sender.post_many(recipients, job.data, deadline=deadline)
        gone = self._count_posted(result, outcome)
        if result.failed and self._requeue(job, list(result.failed)):
            outcome.failed -= len(result.failed)
            outcome.requeued += len(result.failed)
        # The `left` events for those found gone are other recipients' business: their
        # failures are logged, and must not make this job run again.
        departures = Outcome("$forget")
        self.forget(gone, departures)
        outcome.delivered += departures.delivered
        outcome.queued += departures.queued
        return outcome

    def _requeue(self, job: FanoutJob, unreached: list[str]) -> bool:
        """Queue a deliver job of the recipients ``job`` did not reach; False if it cannot be
        (no queue, the queue refuses, or the recipients have had their ``fanout.retries``)."""
        if self.queue is None or job.attempt >= self.config.fanout.retries:
            return False
        again = FanoutJob.deliver(
            job.room, job.endpoint, job.data, unreached, attempt=job.attempt + 1
        )
        try:
            self.queue.send([again], delay_seconds=retry_delay(again.attempt))
        except QueueUnavailable as exc:
            self.log.warning("fan-out retry not queued", extra={"reason": str(exc)})
            return False
        return True

    def _plan(self, job: FanoutJob, outcome: Outcome) -> None:
        settings = self.config.fanout
        # One read for the whole stretch (the adapter follows DynamoDB's 1 MB pages, ~40,000
        # ids each), cut into pages here: fewer round trips than a Query per page.
        stretch = settings.stretch
        ids = self.store.room_member_ids(job.room, after=job.after, limit=stretch)
        jobs: list[FanoutJob] = []
        recipients = [cid for cid in ids if cid not in job.exclude]
        for start in range(0, len(recipients), settings.page_size):
            page = recipients[start : start + settings.page_size]
            jobs.append(FanoutJob.deliver(job.room, job.endpoint, job.data, page))
        if len(ids) == stretch:  # the room may go on
            rest = FanoutJob.plan(job.room, job.endpoint, job.data, after=ids[-1])
            jobs.insert((len(jobs) + 1) // 2, replace(rest, exclude=job.exclude))
        if not jobs:
            return
        if self.queue is None:
            raise QueueUnavailable("a plan job needs a fan-out queue (WSCHAT_FANOUT_QUEUE_URL)")
        self.queue.send(jobs)
        outcome.queued += len(jobs)


def reply_to(sender: Sender, connection_id: str, event: Event, log: Log) -> None:
    """Post one event to one connection through ``sender`` alone (works with the store down)."""
    try:
        sender.post(connection_id, protocol.encode(event))
    except GoneConnection:
        # The caller left; its own $disconnect removes its record. (The $default function is
        # not allowed to write the table, so it must not try.)
        pass
    except DeliveryError as exc:
        log.warning("reply failed", extra={"recipient": connection_id, "reason": str(exc)})

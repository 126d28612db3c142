"""Chat use cases (docs/protocol.md): connect, disconnect and every client action.

No boto3 and no asyncio here: the service talks to a ChatStore, a Sender and a JobQueue, so
the same code runs on Lambda and under the local gateway. Each use case stores first and
delivers after, so whatever a client was told (an ``ack``, a ``message``) is already in the
store. Every event for a room goes through one deliverer, ``_to_room``: inline for small rooms,
as fan-out jobs on the queue for big ones (docs/scaling.md), which ``deliver`` runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from wschat import protocol
from wschat.auth import AuthError, AuthSettings
from wschat.delivery.base import DeliveryError, FanoutResult, GoneConnection, Sender
from wschat.delivery.jobs import (
    FanoutJob,
    FanoutSettings,
    JobQueue,
    QueueUnavailable,
    retry_delay,
)
from wschat.protocol import ProtocolError
from wschat.storage.base import (
    DEFAULT_MESSAGE_TTL_SECONDS,
    LOBBY,
    ChatStore,
    Connection,
    Member,
    NewMessage,
    RateLimit,
    direct_room,
    member_names,
)

__all__ = ["AuthError", "ChatConfig", "ChatService", "Outcome"]


class Log(Protocol):
    """What the service needs of a logger: stdlib's and powertools' both fit."""

    def warning(
        self, msg: str, *args: object, extra: Mapping[str, object] | None = ...
    ) -> None: ...


# API Gateway's integration timeout: no $connect runs longer than this.
CONNECT_GRACE_MS = 30_000
# Failed recipients logged one by one per post; the rest of them in one line.
FAILURES_LOGGED = 10


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ChatConfig:
    max_message_chars: int = protocol.MAX_MESSAGE_CHARS
    rate_limit: RateLimit = field(default_factory=RateLimit)
    message_ttl_seconds: int = DEFAULT_MESSAGE_TTL_SECONDS
    # Sign-in is on (a secret or an issuer is configured): the $connect authorizer must have
    # named the user, and names are not claims.
    auth_required: bool = False
    # Rooms bigger than this get no joined/left/renamed events (``who`` still answers):
    # announcing every arrival to every member costs O(members²) posts in a big room.
    presence_event_limit: int = 500
    fanout: FanoutSettings = field(default_factory=FanoutSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChatConfig:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            max_message_chars=int(env.get("WSCHAT_MAX_MESSAGE_CHARS", defaults.max_message_chars)),
            rate_limit=RateLimit(
                rate_per_second=float(
                    env.get("WSCHAT_RATE_PER_SECOND", defaults.rate_limit.rate_per_second)
                ),
                burst=int(env.get("WSCHAT_RATE_BURST", defaults.rate_limit.burst)),
            ),
            message_ttl_seconds=int(
                float(env.get("WSCHAT_MESSAGE_TTL_DAYS", defaults.message_ttl_seconds / 86400))
                * 86400
            ),
            auth_required=AuthSettings.from_env(env).enabled,
            presence_event_limit=int(
                env.get("WSCHAT_PRESENCE_EVENT_LIMIT", defaults.presence_event_limit)
            ),
            fanout=FanoutSettings(
                inline_limit=_count_or_auto(env.get("WSCHAT_FANOUT_INLINE_LIMIT")),
                page_size=int(env.get("WSCHAT_FANOUT_PAGE_SIZE", defaults.fanout.page_size)),
                plan_pages=int(env.get("WSCHAT_FANOUT_PLAN_PAGES", defaults.fanout.plan_pages)),
                retries=int(env.get("WSCHAT_FANOUT_RETRIES", defaults.fanout.retries)),
            ),
        )


@dataclass
class Outcome:
    """What one use case did, for the invocation's log line and metrics."""

    action: str
    message_id: str | None = None
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    queued: int = 0  # fan-out jobs sent to the queue
    requeued: int = 0  # recipients handed on to a later deliver job

    def count(self, result: FanoutResult) -> None:
        self.delivered += result.delivered
        self.gone += len(result.gone)
        self.failed += len(result.failed)


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        sender: Sender,
        config: ChatConfig | None = None,
        *,
        log: Log | None = None,
        now_ms: Callable[[], int] = _now_ms,
        queue: JobQueue | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        # Big rooms' events go to ``queue`` as jobs naming ``endpoint`` (this stage's
        # @connections URL); without both, every room is delivered by the invocation itself.
        self.queue = queue
        self.endpoint = endpoint
        self.config = config or ChatConfig()
        self.log: Log = log or logging.getLogger("wschat")
        self.now_ms = now_ms
        # A connection still in its $connect cannot be posted to (API Gateway answers 410); a
        # 410 must not be taken for a departure then, so such ids are left out of every post.
        self._connecting: set[str] = set()

    # --- $connect / $disconnect --------------------------------------------------------------

    def connect(
        self,
        connection_id: str,
        connected_at_ms: int,
        query: Mapping[str, str],
        authorizer: Mapping[str, Any] | None = None,
    ) -> str:
        """Register a connection; returns its name. AuthError or ProtocolError refuse it.

        The name comes from the ``$connect`` authorizer's context (``name``; the authorizer
        checked the token, wschat.handlers.authorize). With sign-in off: ``?name=``, else a
        guest name."""
        authorized = authorized_name(authorizer)
        if authorized is not None:
            name = protocol.check_name(authorized, "$connect")
        elif self.config.auth_required:
            # Fail closed: a $connect route without the authorizer must not let anyone in.
            raise AuthError(
                401, "sign-in is on but $connect has no authorizer: nobody checked a token"
            )
        elif query.get("name"):
            name = protocol.check_name(query["name"], "$connect")
        else:
            name = guest_name(connection_id)
        rooms = [LOBBY]
        for room in (query.get("room") or "").split(","):
            if room.strip() and room.strip() not in rooms:
                rooms.append(protocol.check_room(room.strip(), "$connect"))
        connection = Connection.opened(
            connection_id, connected_at_ms, name=name, rooms=frozenset(rooms)
        )
        self.store.put_connection(connection)
        outcome = Outcome("$connect")
        ts = self.now_ms()
        self._connecting.add(connection_id)
        try:
            for room in rooms:
                # The new connection learns about its rooms from hello/history once it is open.
                self._announce(
                    room,
                    lambda r, names: protocol.membership_event("joined", r, name, ts, names),
                    outcome,
                    quiet_if=_another_connection_named(name, connection_id),
                )
        finally:
            self._connecting.discard(connection_id)
        return name

    def disconnect(self, connection_id: str) -> Outcome:
        outcome = Outcome("$disconnect")
        self._forget([connection_id], outcome, confirmed=True)
        return outcome

    # --- actions -----------------------------------------------------------------------------

    def handle(
        self,
        connection_id: str,
        body: str | None,
        *,
        allowed: Collection[str] | None = None,
        authorizer: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Run one client frame. ProtocolError means nothing was done; the caller replies.
        ``authorizer``: the connection's requestContext.authorizer, on every event of it."""
        command = protocol.parse_command(body, max_chars=self.config.max_message_chars)
        if allowed is not None and command.ACTION not in allowed:
            # API Gateway routed the frame here by its action, so this cannot happen on AWS;
            # it keeps a function from running actions its IAM role was not written for.
            raise ProtocolError(protocol.UNKNOWN_ACTION, "action not served here", command.ACTION)
        connection = self.store.get_connection(connection_id)
        if connection is None:
            raise ProtocolError(
                protocol.UNAVAILABLE, "this connection is not registered; reconnect", command.ACTION
            )
        if not self.store.take_token(connection_id, self.now_ms(), self.config.rate_limit):
            limit = self.config.rate_limit
            raise ProtocolError(
                protocol.RATE_LIMITED,
                f"slow down: at most {limit.rate_per_second:g} frames per second "
                f"(bursts of {limit.burst})",
                command.ACTION,
            )
        outcome = Outcome(command.ACTION)
        match command:
            case protocol.SendMessage():
                self._send_message(connection, command, outcome)
            case protocol.Direct():
                self._direct(connection, command, outcome)
            case protocol.Join():
                self._join(connection, command.room, outcome)
            case protocol.Leave():
                self._leave(connection, command.room, outcome)
            case protocol.SetName():
                signed_in = authorized_name(authorizer) is not None
                self._set_name(connection, command.name, outcome, signed_in=signed_in)
            case protocol.History():
                self._history(connection, command)
            case protocol.Who():
                names = member_names(self.store.room_members(command.room))
                self.reply(connection_id, protocol.presence_event(command.room, names))
            case protocol.Hello():
                self._hello(connection)
        return outcome

    def _require_room(self, connection: Connection, room: str, action: str) -> None:
        if room not in connection.rooms:
            raise ProtocolError(
                protocol.NOT_IN_ROOM, f"you are not in {room!r}: join it first", action
            )

    def _new_message(
        self, room: str, sender: str, text: str, client_id: str | None, to: str | None = None
    ) -> NewMessage:
        ts = self.now_ms()
        expires_at = ts // 1000 + self.config.message_ttl_seconds
        return NewMessage(room, sender, text, ts, expires_at, client_id, to)

    def _send_message(
        self, connection: Connection, command: protocol.SendMessage, outcome: Outcome
    ) -> None:
        self._require_room(connection, command.room, command.ACTION)
        stored = self.store.append_message(
            self._new_message(command.room, connection.name, command.text, command.client_id)
        )
        outcome.message_id = stored.id
        ack = (connection.connection_id, protocol.ack_event(stored))
        gone = self._to_room(command.room, protocol.message_event(stored), outcome, ack=ack)
        self._forget(gone, outcome)

    def _direct(self, connection: Connection, command: protocol.Direct, outcome: Outcome) -> None:
        recipients = self.store.connection_ids_named(command.to)
        if not recipients:
            raise ProtocolError(
                protocol.NO_SUCH_USER, f"nobody named {command.to!r} is connected", command.ACTION
            )
        stored = self.store.append_message(
            self._new_message(
                direct_room(connection.name, command.to),
                connection.name,
                command.text,
                command.client_id,
                to=command.to,
            )
        )
        # Every connection of both users sees the message, so both sides' other tabs agree.
        own = self.store.connection_ids_named(connection.name)
        everyone = list(dict.fromkeys([*recipients, *own, connection.connection_id]))
        outcome.message_id = stored.id
        ack = (connection.connection_id, protocol.ack_event(stored))
        data = protocol.encode(protocol.direct_event(stored))
        self._forget(self._post_inline(everyone, data, outcome, ack=ack), outcome)

    def _join(self, connection: Connection, room: str, outcome: Outcome) -> None:
        joined = self.store.join_room(
            room, connection.connection_id, connection.name, connection.expires_at
        )
        names = member_names(self.store.room_members(room))
        if joined:
            ts = self.now_ms()
            announced = self._announce(
                room,
                lambda r, names: protocol.membership_event("joined", r, connection.name, ts, names),
                outcome,
                quiet_if=_another_connection_named(connection.name, connection.connection_id),
            )
            if announced is None:  # the joiner itself still learns it is in
                event = protocol.membership_event("joined", room, connection.name, ts, names)
                self.reply(connection.connection_id, event)
        self.reply(connection.connection_id, protocol.presence_event(room, names))
        page = self.store.message_history(room)
        self.reply(
            connection.connection_id,
            protocol.history_event(page.messages, page.more, room=room, with_user=None),
        )

    def _leave(self, connection: Connection, room: str, outcome: Outcome) -> None:
        self._require_room(connection, room, protocol.Leave.ACTION)
        self.store.leave_room(room, connection.connection_id)
        ts = self.now_ms()
        event = self._announce(
            room,
            lambda r, names: protocol.membership_event("left", r, connection.name, ts, names),
            outcome,
            quiet_if=_still_present(connection.name),
        )
        if event is None:
            names = member_names(self.store.room_members(room))
            event = protocol.membership_event("left", room, connection.name, ts, names)
        self.reply(connection.connection_id, event)

    def _set_name(
        self, connection: Connection, name: str, outcome: Outcome, *, signed_in: bool
    ) -> None:
        # A name an authorizer vouched for is an identity, not a claim to change.
        if signed_in or self.config.auth_required:
            raise ProtocolError(
                protocol.UNAUTHORIZED, "names come from your sign-in here", protocol.SetName.ACTION
            )
        renamed = self.store.rename_connection(connection.connection_id, name)
        if renamed is None:
            return
        ts = self.now_ms()
        if name != connection.name:
            for room in sorted(renamed.rooms):
                self._announce(
                    room,
                    lambda r, names: protocol.renamed_event(r, connection.name, name, ts, names),
                    outcome,
                )
        self._hello(renamed)

    def _history(self, connection: Connection, command: protocol.History) -> None:
        if command.with_user is not None:
            key = direct_room(connection.name, command.with_user)
        else:
            assert command.room is not None
            self._require_room(connection, command.room, command.ACTION)
            key = command.room
        page = self.store.message_history(
            key, after=command.after, before=command.before, limit=command.limit
        )
        event = protocol.history_event(
            page.messages,
            page.more,
            room=command.room,
            with_user=command.with_user,
            after=command.after,
            before=command.before,
        )
        self.reply(connection.connection_id, event)

    def _hello(self, connection: Connection) -> None:
        event = protocol.hello_event(
            connection.connection_id, connection.name, sorted(connection.rooms)
        )
        self.reply(connection.connection_id, event)

    # --- delivery ----------------------------------------------------------------------------

    def reply(self, connection_id: str, event: dict[str, Any]) -> None:
        """Send one event to one connection: the caller of an action."""
        self.reply_to(self.sender, connection_id, event, self.log)

    @staticmethod
    def reply_to(sender: Sender, connection_id: str, event: dict[str, Any], log: Log) -> None:
        try:
            sender.post(connection_id, protocol.encode(event))
        except GoneConnection:
            # The caller left; its own $disconnect removes its record. (The $default function
            # is not allowed to write the table, so it must not try.)
            pass
        except DeliveryError as exc:
            log.warning("reply failed", extra={"recipient": connection_id, "reason": str(exc)})

    def reply_error(self, connection_id: str, error: ProtocolError) -> None:
        """Tell the sender, and only the sender, what was wrong with its frame."""
        self.reply(connection_id, error.to_event())

    def _to_room(
        self,
        room: str,
        event: dict[str, Any],
        outcome: Outcome,
        *,
        ack: tuple[str, dict[str, Any]] | None = None,
        members: list[str] | None = None,
    ) -> list[str]:
        """The one deliverer of every event to a room: a message, joined, left, renamed.

        A room within the inline limit (``fanout.inline_limit``, else the sender's) is posted
        to here and now, the caller's ``ack`` first in the same sender call. A bigger room is
        handed to the
        queue as one plan job, and the ack is sent once the queue has it; when there is no
        queue, or it cannot take the job, this invocation posts to the room page by page: the
        message is stored already, so the ack is true either way, and live readers still get
        it (an ``unavailable`` would invite a resend, i.e. a second copy). ``members``, when
        the caller has read them, spares a read. Returns the ids found gone, for ``_forget``.
        """
        data = protocol.encode(event)
        limit = self.config.fanout.inline_limit
        if limit is None:
            limit = self.sender.inline_limit
        if limit is None:  # any number: page through the room here
            if members is not None:
                return self._post_inline(members, data, outcome, ack=ack)
            return self._post_pages(room, data, outcome, ack=ack)
        if members is None:
            members = self.store.room_member_ids(room, limit=limit + 1)
        if len(members) <= limit:
            return self._post_inline(members, data, outcome, ack=ack)
        if self._enqueue(room, data, outcome):
            if ack is not None:
                self.reply(*ack)
            return []
        return self._post_pages(room, data, outcome, ack=ack)

    def _enqueue(self, room: str, data: bytes, outcome: Outcome) -> bool:
        """Hand a room's delivery to the queue as a plan job; False if it cannot be."""
        if self.queue is None or self.endpoint is None:
            return False
        job = FanoutJob.plan(room, self.endpoint, data, exclude=sorted(self._connecting))
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
        ack: tuple[str, dict[str, Any]] | None = None,
    ) -> list[str]:
        """Post to a whole room from this invocation, a stretch of member ids at a time (a
        plan job's worth: memory stays bounded, and the thread pool stays full)."""
        page_size = self.config.fanout.stretch
        gone: list[str] = []
        after: str | None = None
        while True:
            page = self.store.room_member_ids(room, after=after, limit=page_size)
            gone += self._post_inline(page, data, outcome, ack=ack)
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
        ack: tuple[str, dict[str, Any]] | None = None,
    ) -> list[str]:
        """Post ``data`` to connections, after the caller's ``ack`` when there is one, in one
        sender call (one round trip on the local fast path). The ack is a reply: its failure
        is logged, never taken for a departure (as ``reply``). Returns the ids found gone."""
        batches: list[tuple[list[str], bytes]] = []
        if ack is not None:
            batches.append(([ack[0]], protocol.encode(ack[1])))
        connection_ids = [cid for cid in connection_ids if cid not in self._connecting]
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

    # --- fan-out jobs (the delivery function) -------------------------------------------------

    def deliver(self, job: FanoutJob, deadline: float | None = None) -> Outcome:
        """Run one fan-out job from the queue.

        A plan job reads up to ``fanout.plan_pages`` pages of the room's member ids after its
        cursor and queues one deliver job per page, with a plan job for the rest of the room
        among them, after the first half: behind pages of its own room, so rooms sent at once
        take turns on the queue (it hands out jobs about in the order sent) instead of the
        first room's whole chain going first, and ahead of the second half, so the next pages
        are planned while these are still being posted; QueueUnavailable or a StoreError
        propagate, and the job is run again. A deliver job posts its page,
        retrying throttles until ``deadline`` (a ``time.monotonic()`` value). The recipients
        it did not reach are queued again as a job of their own, later (``outcome.requeued``),
        so those reached get no second copy; ``failed`` in the outcome counts those that could
        not be handed on either, and then the job must run again (an SQS redelivery: the
        delivered ones may get a second copy, which clients drop by message id).
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
        self._forget(gone, departures)
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

    def _announce(
        self,
        room: str,
        make_event: Callable[[str, list[str]], dict[str, Any]],
        outcome: Outcome,
        *,
        quiet_if: Callable[[list[Member]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """Send a presence change to a room's members; returns the event, or None when the
        room is too big for presence events or ``quiet_if`` says the change is not one (a
        second tab of someone already there)."""
        limit = self.config.presence_event_limit
        if limit <= 0:
            return None
        # limit + 1 tell a room over the limit without reading all of it.
        members = self.store.room_members(room, limit=limit + 1)
        if len(members) > limit:
            return None
        if quiet_if is not None and quiet_if(members):
            return None
        event = make_event(room, member_names(members))
        ids = [m.connection_id for m in members]
        self._forget(self._to_room(room, event, outcome, members=ids), outcome)
        return event

    def _forget(
        self, connection_ids: list[str], outcome: Outcome, *, confirmed: bool = False
    ) -> None:
        """Remove connections that are gone, and tell their rooms they left.

        A 410 is not proof of departure for a connection still in its $connect (API Gateway
        answers 410 until $connect returns): unless ``confirmed`` (its own $disconnect), a
        record younger than the $connect time limit is kept for its $disconnect to remove.
        Announcing may find more gone connections; they are forgotten in the same loop, each
        once, so a wave of dropped clients cannot recurse.
        """
        pending = list(connection_ids)
        seen = set(pending)
        first = True
        while pending:
            connected_before = None if (confirmed and first) else self.now_ms() - CONNECT_GRACE_MS
            first = False
            gone = self.store.remove_connection(pending.pop(), connected_before=connected_before)
            if gone is None:
                continue
            ts = self.now_ms()
            limit = self.config.presence_event_limit
            for room in sorted(gone.rooms) if limit > 0 else ():
                members = self.store.room_members(room, limit=limit + 1)
                if not members or len(members) > limit:
                    continue
                if _still_present(gone.name)(members):
                    continue  # another tab of the same person is still there
                event = protocol.membership_event(
                    "left", room, gone.name, ts, member_names(members)
                )
                ids = [m.connection_id for m in members]
                for gone_id in self._to_room(room, event, outcome, members=ids):
                    if gone_id not in seen:
                        seen.add(gone_id)
                        pending.append(gone_id)


def _count_or_auto(value: str | None) -> int | None:
    """An environment count, or None for "auto" (or unset): the sender's own choice."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    return int(value)


def _another_connection_named(name: str, connection_id: str) -> Callable[[list[Member]], bool]:
    return lambda members: any(m.name == name and m.connection_id != connection_id for m in members)


def _still_present(name: str) -> Callable[[list[Member]], bool]:
    return lambda members: any(m.name == name for m in members)


def authorized_name(authorizer: Mapping[str, Any] | None) -> str | None:
    """The user name a ``$connect`` authorizer put in its context (``name``), if any."""
    name = (authorizer or {}).get("name")
    return name if isinstance(name, str) and name else None


def guest_name(connection_id: str) -> str:
    """A default name from the connection id, e.g. ``guest-l0sm``."""
    letters = "".join(ch for ch in connection_id if ch.isascii() and ch.isalnum())[:4].lower()
    return f"guest-{letters or 'anon'}"

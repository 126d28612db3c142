"""The chat's front door (docs/protocol.md): connect, disconnect, every client frame, and the
fan-out jobs of big rooms — what the Lambda handlers call.

No boto3 and no asyncio here or below: the service talks to a ChatStore, a Sender and a
JobQueue, so the same code runs on Lambda and under the local gateway. A frame is parsed, its
caller's record and rate-limit token read, then the action's registry row
(wschat/chat/registry.py) runs its use case on the store narrowed to what the row declares;
the use case stores first and returns what to send, and the one deliverer
(wschat/chat/deliverer.py) sends it, so whatever a client is told is already stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from wschat import protocol
from wschat.auth import AuthError
from wschat.chat import deliverer, lifecycle, registry
from wschat.chat.config import ChatConfig, Log, Outcome
from wschat.chat.context import Context, ScopedStore
from wschat.chat.deliverer import Deliverer
from wschat.delivery.base import Sender
from wschat.delivery.jobs import FanoutJob, JobQueue
from wschat.protocol import ProtocolError
from wschat.storage.base import ChatStore

__all__ = ["AuthError", "ChatConfig", "ChatService", "Outcome"]


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        self.config = config or ChatConfig()
        self.log: Log = log or logging.getLogger("wschat")
        self.now_ms = now_ms
        self.deliverer = Deliverer(
            _scoped(store, deliverer.STORE_NEEDS, "delivery"),
            sender,
            self.config,
            self.log,
            now_ms=now_ms,
            queue=queue,
            endpoint=endpoint,
        )

    @property
    def queue(self) -> JobQueue | None:
        """Where big rooms' fan-out jobs go (the deliverer's)."""
        return self.deliverer.queue

    @queue.setter
    def queue(self, queue: JobQueue | None) -> None:
        self.deliverer.queue = queue

    @property
    def endpoint(self) -> str | None:
        """The @connections URL fan-out jobs name."""
        return self.deliverer.endpoint

    @endpoint.setter
    def endpoint(self, endpoint: str | None) -> None:
        self.deliverer.endpoint = endpoint

    # --- $connect / $disconnect --------------------------------------------------------------

    def connect(
        self,
        connection_id: str,
        connected_at_ms: int,
        query: Mapping[str, str],
        authorizer: Mapping[str, Any] | None = None,
    ) -> str:
        """Register a connection; returns its name. AuthError or ProtocolError refuse it."""
        store = _scoped(self.store, lifecycle.CONNECT_NEEDS, "$connect")
        name, intents = lifecycle.connect(
            store, connection_id, connected_at_ms, query, authorizer, self.config, self.now_ms
        )
        connecting = self.deliverer.connecting
        connecting.add(connection_id)
        try:
            self.deliverer.run(intents, Outcome("$connect"))
        finally:
            connecting.discard(connection_id)
        return name

    def disconnect(self, connection_id: str) -> Outcome:
        outcome = Outcome("$disconnect")
        self.deliverer.forget([connection_id], outcome, confirmed=True)
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
        command = protocol.parse_command(
            body, commands=registry.COMMANDS, max_chars=self.config.max_message_chars
        )
        if allowed is not None and command.ACTION not in allowed:
            # API Gateway routed the frame here by its action, so this cannot happen on AWS;
            # it keeps a function from running actions its IAM role was not written for.
            raise ProtocolError(protocol.UNKNOWN_ACTION, "action not served here", command.ACTION)
        connection, admitted = self.store.admit(
            connection_id, self.now_ms(), self.config.rate_limit
        )
        if connection is None:
            raise ProtocolError(
                protocol.UNAVAILABLE, "this connection is not registered; reconnect", command.ACTION
            )
        if not admitted:
            limit = self.config.rate_limit
            raise ProtocolError(
                protocol.RATE_LIMITED,
                f"slow down: at most {limit.rate_per_second:g} frames per second "
                f"(bursts of {limit.burst})",
                command.ACTION,
            )
        row = registry.ACTIONS[command.ACTION]
        outcome = Outcome(command.ACTION)
        context = Context(
            store=_scoped(self.store, row.store, command.ACTION),
            config=self.config,
            now_ms=self.now_ms,
            outcome=outcome,
            caller=connection,
            signed_in=lifecycle.authorized_name(authorizer) is not None,
        )
        self.deliverer.run(row.run(context, command), outcome)
        return outcome

    @staticmethod
    def reply_to(sender: Sender, connection_id: str, event: dict[str, Any], log: Log) -> None:
        """Send one event through ``sender`` alone: works when the store is down."""
        deliverer.reply_to(sender, connection_id, event, log)

    # --- fan-out jobs (the delivery function) -------------------------------------------------

    def deliver(self, job: FanoutJob, deadline: float | None = None) -> Outcome:
        """Run one fan-out job from the queue (``Deliverer.deliver``)."""
        return self.deliverer.deliver(job, deadline)


def _scoped(store: ChatStore, needs: Collection[str], who: str) -> ChatStore:
    # Typed as the port: ScopedStore forwards exactly the declared methods of it.
    scoped: Any = ScopedStore(store, needs, who)
    return scoped  # type: ignore[no-any-return]

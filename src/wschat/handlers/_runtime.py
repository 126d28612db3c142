"""What every handler shares: adapters built once per execution environment (cold start) and
reused while warm, and the one way an action frame is run and answered."""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import cache
from typing import Any

from wschat import protocol
from wschat.delivery import Sender, sender_for
from wschat.delivery.aws import management_endpoint
from wschat.delivery.jobs import JobQueue
from wschat.delivery.sqs import SqsJobQueue
from wschat.events import WebSocketEvent
from wschat.observability import bind_invocation, get_logger, publish_counts
from wschat.protocol import ProtocolError
from wschat.service import ChatConfig, ChatService, Outcome
from wschat.storage import ChatStore, StoreError, StoreUnavailable, open_store_from_env


@cache
def store() -> ChatStore:
    return open_store_from_env()


@cache
def config() -> ChatConfig:
    return ChatConfig.from_env()


@cache
def job_queue() -> JobQueue | None:
    """The fan-out queue (``WSCHAT_FANOUT_QUEUE_URL``), or None: big rooms go inline."""
    return SqsJobQueue.from_env()


def sender_of(event: WebSocketEvent) -> Sender:
    return sender_for(management_endpoint(event.domain_name, event.stage))


def service_for(event: WebSocketEvent) -> ChatService:
    """The chat service for this event's stage; raises StoreError if the store cannot open."""
    return service_at(management_endpoint(event.domain_name, event.stage))


def service_at(endpoint: str, *, rate: float | None = None) -> ChatService:
    """The chat service posting to the stage at ``endpoint`` (a fan-out job names it: an SQS
    event has no requestContext), at most ``rate`` posts a second when given."""
    return ChatService(
        store(),
        sender_for(endpoint, rate=rate),
        config(),
        log=get_logger(),
        queue=job_queue(),
        endpoint=endpoint,
    )


def ok() -> dict[str, Any]:
    return {"statusCode": 200}


def rejected(status: int, error: ProtocolError) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(error.to_event())}


def reply_error(event: WebSocketEvent, error: ProtocolError) -> None:
    """Send an error to the caller through the sender alone: works when the store is down."""
    ChatService.reply_to(sender_of(event), event.connection_id, error.to_event(), get_logger())


def count_outcome(outcome: Outcome) -> None:
    publish_counts(
        {
            "MessagesDelivered": outcome.delivered,
            "DeliveryFailures": outcome.failed + outcome.gone,
            "FanoutJobsQueued": outcome.queued,
        }
    )


def run_action(
    raw_event: dict[str, Any], context: Any, *, allowed: Collection[str] | None
) -> dict[str, Any]:
    """Run one client frame: answer it, or send the caller an ``error`` naming the problem."""
    event = WebSocketEvent(raw_event)
    log = bind_invocation(event, context)
    try:
        outcome = service_for(event).handle(
            event.connection_id, event.text, allowed=allowed, authorizer=event.authorizer
        )
    except ProtocolError as error:
        log.info("frame rejected", extra={"code": error.code, "detail": error.message})
        reply_error(event, error)
        return rejected(400, error)
    except StoreError as exc:
        # Unavailable: worth retrying. Any other store error is ours to fix, not the sender's.
        status = 503 if isinstance(exc, StoreUnavailable) else 500
        log.error("frame not handled: store error", extra={"reason": str(exc)})
        unavailable = ProtocolError(
            protocol.UNAVAILABLE, "the chat store is unavailable; try again", _action_of(event)
        )
        reply_error(event, unavailable)
        return rejected(status, unavailable)
    log.info(
        "frame handled",
        extra={
            "action": outcome.action,
            "message_id": outcome.message_id,
            "delivered": outcome.delivered,
            "gone": outcome.gone,
            "failed": outcome.failed,
        },
    )
    count_outcome(outcome)
    return ok()


def _action_of(event: WebSocketEvent) -> str | None:
    """The frame's action, when it has one, for an error that is not about the frame."""
    try:
        action = protocol.action_of(protocol.parse_frame(event.text))
    except ProtocolError:
        return None
    return None if action is None else action[:64]

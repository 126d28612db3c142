"""The chat's settings (``ChatConfig``, from the functions' environment), what one use case
did (``Outcome``, for the invocation's log line and metrics), and the logger it needs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from wschat import protocol
from wschat.auth import AuthSettings
from wschat.delivery.base import FanoutResult
from wschat.delivery.jobs import FanoutSettings
from wschat.storage.base import DEFAULT_MESSAGE_TTL_SECONDS, RateLimit


class Log(Protocol):
    """What the service needs of a logger: stdlib's and powertools' both fit."""

    def warning(
        self, msg: str, *args: object, extra: Mapping[str, object] | None = ...
    ) -> None: ...


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


def _count_or_auto(value: str | None) -> int | None:
    """An environment count, or None for "auto" (or unset): the sender's own choice."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    return int(value)

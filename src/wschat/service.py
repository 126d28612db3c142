"""Chat use cases: connect, disconnect, send. No boto3 and no asyncio here: the service talks to
a ConnectionStore and a Sender, so the same code runs on Lambda and under the local gateway."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from wschat import ids, protocol
from wschat.delivery.base import DeliveryError, FanoutResult, GoneConnection, Sender
from wschat.protocol import ProtocolError
from wschat.storage.base import Connection, ConnectionStore


class Log(Protocol):
    """What the service needs of a logger: stdlib's and powertools' both fit."""

    def warning(
        self, msg: str, *args: object, extra: Mapping[str, object] | None = ...
    ) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a send did: the message id and how the fan-out went."""

    message_id: str
    result: FanoutResult


class ChatService:
    def __init__(
        self,
        store: ConnectionStore,
        sender: Sender,
        *,
        log: Log | None = None,
        now_ms: Callable[[], int] = _now_ms,
        max_message_chars: int = protocol.MAX_MESSAGE_CHARS,
    ) -> None:
        self.store = store
        self.sender = sender
        self.log: Log = log or logging.getLogger("wschat")
        self.now_ms = now_ms
        self.max_message_chars = max_message_chars

    def connect(self, connection_id: str, connected_at_ms: int) -> None:
        self.store.put_connection(Connection.opened(connection_id, connected_at_ms))

    def disconnect(self, connection_id: str) -> None:
        self.store.delete_connection(connection_id)

    def send_message(self, connection_id: str, body: str | None) -> Delivery:
        """Validate a sendMessage frame and post it to every connection (the seed's broadcast).

        Raises ProtocolError for a frame that cannot be accepted; nothing is sent then.
        """
        command = protocol.SendMessage.parse(
            protocol.parse_frame(body), max_chars=self.max_message_chars
        )
        ts = self.now_ms()
        message_id = ids.new_id(ts)
        data = protocol.encode(protocol.message_event(message_id, connection_id, command.text, ts))
        recipients = list(self.store.scan_connection_ids())
        result = self.sender.post_many(recipients, data)
        self._forget_gone(result.gone)
        for failed_id, reason in result.failed.items():
            self.log.warning("delivery failed", extra={"recipient": failed_id, "reason": reason})
        return Delivery(message_id=message_id, result=result)

    def reply_error(self, connection_id: str, error: ProtocolError) -> None:
        """Tell the sender, and only the sender, what was wrong with its frame."""
        try:
            self.sender.post(connection_id, protocol.encode(error.to_event()))
        except GoneConnection:
            # The sender left; its own $disconnect removes its record. (The $default function
            # is not allowed to write the table, so it must not try.)
            pass
        except DeliveryError as exc:
            self.log.warning("error reply failed", extra={"reason": str(exc)})

    def _forget_gone(self, connection_ids: list[str]) -> None:
        # A 410 means API Gateway already closed the connection: its record is stale.
        for gone_id in connection_ids:
            self.store.delete_connection(gone_id)

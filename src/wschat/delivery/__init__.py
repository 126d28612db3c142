"""Delivery to WebSocket connections: the Sender port, its boto3 adapter and the local fast path."""

from __future__ import annotations

from wschat.delivery.base import (
    DeliveryError,
    FanoutResult,
    GoneConnection,
    Sender,
)

__all__ = [
    "DeliveryError",
    "FanoutResult",
    "GoneConnection",
    "Sender",
    "sender_for",
]

_senders: dict[tuple[str, float | None], Sender] = {}


def sender_for(endpoint_url: str, *, rate: float | None = None) -> Sender:
    """The sender for one stage's @connections endpoint, built once and reused while warm;
    ``rate`` paces its posts (a delivery worker's share of the account's budget).

    The local gateway's in-process channel wins when one is registered for the endpoint.
    """
    from wschat.delivery import local

    channel = local.channel_for(endpoint_url)
    if channel is not None:
        return channel
    sender = _senders.get((endpoint_url, rate))
    if sender is None:
        from wschat.delivery.aws import ApiGatewaySender

        sender = ApiGatewaySender.for_endpoint(endpoint_url, rate=rate)
        _senders[(endpoint_url, rate)] = sender
    return sender

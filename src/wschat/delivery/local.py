"""The local gateway's fast path: posting to its connections without an HTTP call per recipient.

The gateway's function worker registers a channel here for its stage's endpoint; our handlers
look it up before building a boto3 client. Third-party handlers never see it and go through the
gateway's HTTP @connections API like they would on AWS. This module imports nothing heavy, so
handlers can import it on AWS at no cost, where no channel is ever registered.
"""

from __future__ import annotations

from wschat.delivery.base import FanoutResult, Sender

_channels: dict[str, Sender] = {}


def register_channel(endpoint_url: str, channel: Sender) -> None:
    """Route posts for ``endpoint_url`` through ``channel`` in this process."""
    _channels[endpoint_url.rstrip("/")] = channel


def unregister_channel(endpoint_url: str) -> None:
    _channels.pop(endpoint_url.rstrip("/"), None)


def channel_for(endpoint_url: str) -> Sender | None:
    """The in-process channel for ``endpoint_url``, if the local gateway registered one."""
    return _channels.get(endpoint_url.rstrip("/"))


__all__ = [
    "FanoutResult",
    "Sender",
    "channel_for",
    "register_channel",
    "unregister_channel",
]

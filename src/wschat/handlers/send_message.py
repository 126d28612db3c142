"""``sendMessage`` and ``direct``: store a message, acknowledge it, deliver it.

The seed's frame ``{"action": "sendMessage", "message": "hi"}`` still works: it goes to
``lobby``, where every connection starts.
"""

from __future__ import annotations

from typing import Any

from wschat.chat import registry
from wschat.handlers import _runtime

ACTIONS = registry.actions_of("send_message")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _runtime.run_action(event, context, allowed=ACTIONS)

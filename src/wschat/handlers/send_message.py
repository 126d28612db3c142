"""``sendMessage`` and ``direct``: store a message, acknowledge it, deliver it.

The seed's frame ``{"action": "sendMessage", "message": "hi"}`` still works: it goes to
``lobby``, where every connection starts.
"""

from __future__ import annotations

from typing import Any

from wschat.handlers import _runtime

ACTIONS = ("sendMessage", "direct")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _runtime.run_action(event, context, allowed=ACTIONS)

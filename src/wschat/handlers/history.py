"""``history``: pages of a room's messages (catch-up with ``after``, scroll-back with
``before``) or of the direct messages with one user. Reads only."""

from __future__ import annotations

from typing import Any

from wschat.chat import registry
from wschat.handlers import _runtime

ACTIONS = registry.actions_of("history")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _runtime.run_action(event, context, allowed=ACTIONS)

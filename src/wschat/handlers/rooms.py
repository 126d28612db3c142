"""``join``, ``leave``, ``setName``, ``who`` and ``hello``: rooms, names and presence."""

from __future__ import annotations

from typing import Any

from wschat.chat import registry
from wschat.handlers import _runtime

ACTIONS = registry.actions_of("rooms")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _runtime.run_action(event, context, allowed=ACTIONS)

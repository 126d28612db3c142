"""``join``, ``leave``, ``setName``, ``who`` and ``hello``: rooms, names and presence."""

from __future__ import annotations

from typing import Any

from wschat.handlers import _runtime

ACTIONS = ("join", "leave", "setName", "who", "hello")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _runtime.run_action(event, context, allowed=ACTIONS)

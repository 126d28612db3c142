"""What a use case is given: the caller's connection, the settings, a clock, the outcome to
fill in, and the store narrowed to the methods its registry row declares (``ScopedStore``).

The narrowing is what keeps each function's IAM honest: the template's least-privilege table
derives from the rows' store needs (tests/unit/test_template.py), and a use case that calls a
method its row does not declare fails at once, in every test that runs it, not on AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from wschat.chat.config import ChatConfig, Outcome
from wschat.storage.base import ChatStore, Connection


class UndeclaredStoreCall(AssertionError):
    """A use case called a store method its registry row does not declare."""


class ScopedStore:
    """``store`` with only ``allowed`` of its methods reachable."""

    def __init__(self, store: ChatStore, allowed: Collection[str], who: str) -> None:
        self._store = store
        self._allowed = frozenset(allowed)
        self._who = who

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise UndeclaredStoreCall(
                f"{self._who} calls store.{name}, which its registry row does not declare "
                "(wschat/chat/registry.py): declare it, and the function's IAM follows"
            )
        return getattr(self._store, name)


@dataclass
class Context:
    store: ChatStore  # a ScopedStore, typed as the port it stands for
    config: ChatConfig
    now_ms: Callable[[], int]
    outcome: Outcome
    caller: Connection
    # The caller's name came from a $connect authorizer: an identity, not a claim.
    signed_in: bool = False

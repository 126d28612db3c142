"""ConnectionRegistry's change log: what each Python worker is told of the open connections
with an invocation, so its fast-path posts need no answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from wschat.gateway import registry
from wschat.gateway.registry import ConnectionRegistry


def ws(connection_id: str) -> Any:
    return SimpleNamespace(connection_id=connection_id)  # all the log reads of a connection


def test_a_worker_never_told_gets_every_open_id() -> None:
    connections = ConnectionRegistry()
    connections.add(ws("a"))
    connections.add(ws("b"))
    version, told = connections.changes_since(-1)
    assert version == 2 and told == {"open": ["a", "b"]}


def test_a_worker_told_before_gets_what_changed_since_net() -> None:
    connections = ConnectionRegistry()
    a, b, c = ws("a"), ws("b"), ws("c")
    connections.add(a)
    version, _ = connections.changes_since(-1)
    connections.add(b)
    connections.add(c)
    connections.remove(c)  # opened and closed since: closed
    connections.remove(a)
    latest, told = connections.changes_since(version)
    assert latest == connections.version == 5
    assert told == {"opened": ["b"], "closed": ["c", "a"]}
    assert connections.changes_since(latest) == (latest, {"opened": [], "closed": []})


def test_removing_what_is_not_open_changes_nothing() -> None:
    connections = ConnectionRegistry()
    connections.remove(ws("never"))
    assert connections.version == 0


def test_a_worker_behind_what_the_log_keeps_gets_the_whole_open_set() -> None:
    connections = ConnectionRegistry()
    keep = ws("keep")
    connections.add(keep)
    version, _ = connections.changes_since(-1)
    for n in range(3 * registry.LOG_LENGTH):
        one = ws(f"c{n}")
        connections.add(one)
        connections.remove(one)
    latest, told = connections.changes_since(version)
    assert told == {"open": ["keep"]}
    assert latest == 1 + 6 * registry.LOG_LENGTH
    # One that kept up is still told only the changes.
    connections.add(ws("new"))
    assert connections.changes_since(latest) == (latest + 1, {"opened": ["new"], "closed": []})

"""``--debug FUNCTION[:PORT]`` as parsed, and the deadline that stops while a debugger holds a
function (``wait_pausing``), on a real event loop with real time."""

from __future__ import annotations

import asyncio
import socket

import pytest

from wschat.gateway.debugging import (
    DebuggerState,
    DebugTarget,
    check_functions,
    check_ports_free,
    parse_targets,
    wait_pausing,
)


def test_functions_without_a_port_get_distinct_ports_from_5678_skipping_named_ones() -> None:
    targets = parse_targets(["A", "B:5679", "C", "D:9000"])

    assert targets == {
        "A": DebugTarget("A", 5678),
        "B": DebugTarget("B", 5679),
        "C": DebugTarget("C", 5680),
        "D": DebugTarget("D", 9000),
    }


def test_wait_applies_to_every_target_and_reaches_the_worker() -> None:
    [target] = parse_targets(["app.on_default:6000"], wait=True).values()

    assert target == DebugTarget("app.on_default", 6000, wait=True)
    assert target.address == "127.0.0.1:6000"
    assert target.worker_env()["WSCHAT_WORKER_DEBUG_PORT"] == "6000"
    assert target.worker_env()["WSCHAT_WORKER_DEBUG_WAIT"] == "1"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["A:http"], "not a TCP port"),
        (["A:70000"], "not a TCP port"),
        ([":5678"], "expected FUNCTION[:PORT]"),
        (["A", "A:6000"], "given twice"),
        (["A:6000", "B:6000"], "share a port"),
    ],
)
def test_bad_options_are_refused(values: list[str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("[", r"\[")):
        parse_targets(values)


def test_an_unknown_function_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ValueError, match="no function named Nope; the functions are: A, B"):
        check_functions(["A", "Nope"], ["B", "A"])


def test_without_a_debugger_the_deadline_is_the_timeout() -> None:
    async def scenario() -> bool:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        return await wait_pausing(never, 0.1, DebuggerState())

    assert asyncio.run(scenario()) is False


def test_the_deadline_stops_while_a_debugger_holds_and_runs_on_after() -> None:
    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        debugger = DebuggerState()
        result: asyncio.Future[None] = loop.create_future()
        # 0.1 s of the 0.3 s timeout pass, then 0.5 s held, then the result 0.1 s later:
        # 0.2 s counted, within the timeout.
        loop.call_later(0.1, debugger.set, True)
        loop.call_later(0.6, debugger.set, False)
        loop.call_later(0.7, result.set_result, None)
        finished = await wait_pausing(result, 0.3, debugger)
        # Held for its first 0.2 s, a wait with nothing to wait for ends 0.3 s after that.
        never: asyncio.Future[None] = loop.create_future()
        debugger.set(True)
        loop.call_later(0.2, debugger.set, False)
        started = loop.time()
        timed_out = not await wait_pausing(never, 0.3, debugger)
        return finished, timed_out and 0.45 < loop.time() - started < 1.0

    assert asyncio.run(scenario()) == (True, True)


def test_a_port_in_use_is_refused_at_start_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"A: 127.0.0.1:{port} is in use"):
            check_ports_free([DebugTarget("A", port)])

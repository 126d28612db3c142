"""Debugging a function's handler with debugpy: ``wschat serve --debug FUNCTION[:PORT]``.

A debugged function runs in one worker that listens for a debugger (VS Code, any DAP client)
on 127.0.0.1 before it imports the handler, and again on the same port whenever its worker is
replaced (a code reload, a timeout). While a debugger holds the function (attached, or awaited
with ``--debug-wait``) the clocks of its invocations stop: the function's timeout, API Gateway's
integration timeout, and so ``context.get_remaining_time_in_millis()``. Sitting at a breakpoint
therefore costs no timeout; with no debugger attached every timeout applies as usual.

This module is the gateway's side: ``DebugTarget`` (what the option asks for),
``DebuggerState`` (what the worker last reported) and ``wait_pausing`` (a deadline that stops
while a debugger holds the function). The worker's side is ``worker_debug``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wschat.gateway.worker_debug import HOST, PORT_ENV, WAIT_ENV

DEFAULT_PORT = 5678  # debugpy's and VS Code's usual port


# --- the gateway's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class DebugTarget:
    """One ``--debug`` option: the function (its ``FunctionSpec.name``) and its port."""

    function: str
    port: int
    wait: bool = False  # the worker waits for the debugger before importing the handler

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def worker_env(self) -> dict[str, str]:
        return {
            PORT_ENV: str(self.port),
            WAIT_ENV: "1" if self.wait else "",
            # pydevd's note about frozen standard-library modules on every start: handlers are
            # never frozen, so it is noise in the function's log.
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }


def parse_targets(values: Iterable[str], *, wait: bool = False) -> dict[str, DebugTarget]:
    """``FUNCTION[:PORT]`` options as targets by function name. Those without a port get
    5678, 5679, ... in the order given, skipping the ports others name. Raises ValueError."""
    named: list[tuple[str, int | None]] = []
    for value in values:
        function, sep, port_text = value.rpartition(":")
        if not sep:
            function, port_text = value, ""
        if not function:
            raise ValueError(f"--debug {value!r}: expected FUNCTION[:PORT]")
        port = None
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"--debug {value!r}: {port_text!r} is not a TCP port")
            port = int(port_text)
        named.append((function, port))
    taken = {port for _, port in named if port is not None}
    free = (port for port in range(DEFAULT_PORT, 65536) if port not in taken)
    targets: dict[str, DebugTarget] = {}
    for function, port in named:
        if function in targets:
            raise ValueError(f"--debug {function} is given twice")
        targets[function] = DebugTarget(function, port if port is not None else next(free), wait)
    ports = [target.port for target in targets.values()]
    if len(set(ports)) != len(ports):
        raise ValueError("--debug: two functions cannot share a port")
    return targets


def check_functions(targets: Iterable[str], known: Iterable[str]) -> None:
    """Raise ValueError naming the known functions when a target is not one of them."""
    names = sorted(known)
    unknown = [name for name in targets if name not in names]
    if unknown:
        raise ValueError(
            f"--debug: no function named {', '.join(unknown)}; "
            f"the functions are: {', '.join(names) or '(none)'}"
        )


def check_ports_free(targets: Iterable[DebugTarget]) -> None:
    """Raise ValueError when a target's port is taken now: said at start-up, not as a
    worker that cannot listen at its first invocation."""
    for target in targets:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As debugpy binds: a port left in TIME_WAIT by a previous session is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, target.port))
            except OSError as exc:
                raise ValueError(
                    f"--debug {target.function}: {target.address} is in use ({exc.strerror})"
                ) from None


class DebuggerState:
    """Whether a debugger holds a function now, as its worker last reported it."""

    def __init__(self) -> None:
        self.holding = False
        self._changed: asyncio.Future[None] | None = None

    def set(self, holding: bool) -> None:
        if holding == self.holding:
            return
        self.holding = holding
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def changed(self) -> asyncio.Future[None]:
        """Done at the next change."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed


async def wait_pausing(
    future: asyncio.Future[Any], timeout: float, debugger: DebuggerState | None
) -> bool:
    """Wait for ``future`` for ``timeout`` seconds, not counting the time a debugger holds the
    function (none for a function not debugged); True when it finished within them."""
    loop = asyncio.get_running_loop()
    if debugger is None:
        return await _done_within(loop, future, timeout)
    remaining = timeout
    while not future.done():
        changed = debugger.changed()
        if debugger.holding:
            await asyncio.wait({future, changed}, return_when=asyncio.FIRST_COMPLETED)
            continue
        if remaining <= 0:
            return False
        started = loop.time()
        await asyncio.wait(
            {future, changed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        remaining -= loop.time() - started
    return True


async def _done_within(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], timeout: float
) -> bool:
    """``asyncio.wait({future}, timeout=timeout)`` with one timer and one callback: it runs
    twice for every invocation (the integration's wait and the function's)."""
    if future.done():
        return True
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(timeout, wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()

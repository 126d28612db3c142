"""debugpy inside a function worker (``wschat serve --debug``; see ``debugging``).

``worker_main`` makes a ``WorkerDebugger`` when the gateway set ``WSCHAT_WORKER_DEBUG_PORT``:
it listens before the handler is imported, waits for the debugger with
``WSCHAT_WORKER_DEBUG_WAIT``, tells the gateway over the pipe whether a debugger holds the
worker, and counts the time one did, which ``context.get_remaining_time_in_millis()`` does not
count. Kept apart from ``debugging`` so a worker imports no asyncio.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

HOST = "127.0.0.1"  # a debugger runs any code in the worker: never listen beyond this machine
PORT_ENV = "WSCHAT_WORKER_DEBUG_PORT"
WAIT_ENV = "WSCHAT_WORKER_DEBUG_WAIT"


class WorkerDebugger:
    """debugpy in a function worker: listens, reports to the gateway whether a debugger holds
    the function (``{"op": "debugger", "holding": bool}``), and counts the time one did."""

    POLL_SECONDS = 0.1  # debugpy tells of no attach or detach: its state is polled
    LISTEN_TRIES_SECONDS = 5.0  # the previous worker's adapter may still be freeing the port

    def __init__(self, port: int, wait: bool, write: Callable[[dict[str, Any]], None]) -> None:
        self.port = port
        self.wait = wait
        self._write = write
        self._holding = False
        self._held_seconds = 0.0  # time held before the current hold
        self._held_since = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls, env: MutableMapping[str, str], write: Callable[[dict[str, Any]], None]
    ) -> WorkerDebugger | None:
        port = env.pop(PORT_ENV, "")
        wait = bool(env.pop(WAIT_ENV, ""))
        return cls(int(port), wait, write) if port else None

    def start(self) -> None:
        """Listen (before the handler is imported, so breakpoints in module code bind), wait
        for the debugger if asked, then keep reporting attach and detach."""
        import debugpy

        self._listen(debugpy)
        print(f"debugpy listening on {HOST}:{self.port}", flush=True)
        if self.wait:
            self._report(True)
            print("waiting for the debugger to attach", flush=True)
            debugpy.wait_for_client()
        monitor = threading.Thread(target=self._monitor, args=(debugpy,), name="debug-monitor")
        monitor.daemon = True
        monitor.is_pydev_daemon_thread = True  # type: ignore[attr-defined]  # pydevd: not a user thread
        monitor.start()

    def _listen(self, debugpy: Any) -> None:
        deadline = time.monotonic() + self.LISTEN_TRIES_SECONDS
        while True:
            try:
                debugpy.listen((HOST, self.port))
                return
            except RuntimeError as exc:
                if time.monotonic() > deadline:
                    print(f"debugpy cannot listen on {HOST}:{self.port}: {exc}", file=sys.stderr)
                    raise
                time.sleep(0.1)

    def _monitor(self, debugpy: Any) -> None:
        while True:
            attached = bool(debugpy.is_client_connected())
            if attached != self._holding:
                self._report(attached)
            time.sleep(self.POLL_SECONDS)

    def _report(self, holding: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if self._holding and not holding:
                self._held_seconds += now - self._held_since
            elif holding and not self._holding:
                self._held_since = now
            self._holding = holding
        self._write({"op": "debugger", "holding": holding})

    def held_ms(self) -> float:
        """Milliseconds a debugger has held this worker so far (the invocation clock stops)."""
        with self._lock:
            held = self._held_seconds
            if self._holding:
                held += time.monotonic() - self._held_since
        return held * 1000

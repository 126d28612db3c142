"""A small Debug Adapter Protocol client over TCP, as VS Code speaks it to debugpy.

Messages are JSON with a ``Content-Length`` header. A reader thread sorts what arrives into
responses (by ``request_seq``) and events (in order), so a test can wait for either with a
deadline while the debuggee runs. Only what attaching and stopping at a breakpoint need.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from types import TracebackType
from typing import Any


class DapError(Exception):
    pass


class DapClient:
    """One debug session: ``attach`` then ``set_breakpoints`` and ``configuration_done``."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 10.0) -> None:
        self._sock = _connect(host, port, connect_timeout)
        self._seq = 0
        self._write_lock = threading.Lock()
        self._responses: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="dap-reader", daemon=True)
        self._reader.start()

    # --- requests -----------------------------------------------------------------------------

    def request(self, command: str, arguments: dict[str, Any] | None = None) -> int:
        """Send a request; return its seq (wait for the answer with ``response``)."""
        with self._write_lock:
            self._seq += 1
            seq = self._seq
            self._responses[seq] = queue.Queue()
            message = {"seq": seq, "type": "request", "command": command}
            if arguments is not None:
                message["arguments"] = arguments
            body = json.dumps(message).encode("utf-8")
            self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return seq

    def response(self, seq: int, timeout: float = 10.0) -> dict[str, Any]:
        try:
            answer = self._responses[seq].get(timeout=timeout)
        except queue.Empty:
            raise DapError(f"no response to request {seq} within {timeout}s") from None
        if not answer.get("success"):
            raise DapError(f"{answer.get('command')} failed: {answer.get('message')}")
        return answer

    def call(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return self.response(self.request(command, arguments), timeout)

    def event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event called ``name`` (events before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise DapError(f"no {name!r} event within {timeout}s") from None
            if event is None:
                raise DapError(f"the adapter closed the connection before a {name!r} event")
            if event.get("event") == name:
                return event

    # --- the attach sequence -----------------------------------------------------------------

    def attach(self, breakpoints: dict[str, list[int]]) -> None:
        """Attach as VS Code does, with ``breakpoints`` (file -> lines) set before the debuggee
        is told configuration is done; fail unless every breakpoint was verified."""
        self.call(
            "initialize",
            {"clientID": "wschat-tests", "adapterID": "debugpy", "linesStartAt1": True},
        )
        # debugpy answers attach only after configurationDone: wait for "initialized" first.
        attach = self.request("attach", {"justMyCode": True})
        self.event("initialized")
        for path, lines in breakpoints.items():
            answer = self.call(
                "setBreakpoints",
                {"source": {"path": path}, "breakpoints": [{"line": line} for line in lines]},
            )
            verified = [b.get("verified") for b in answer["body"]["breakpoints"]]
            if not all(verified):
                raise DapError(f"breakpoints in {path} not verified: {answer['body']}")
        self.call("configurationDone")
        self.response(attach)

    def resume(self, thread_id: int) -> None:
        self.call("continue", {"threadId": thread_id})

    def disconnect(self) -> None:
        with contextlib.suppress(DapError, OSError):
            self.call("disconnect", {"terminateDebuggee": False}, timeout=5)

    # --- plumbing -----------------------------------------------------------------------------

    def _read(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            while (message := _read_message(stream)) is not None:
                if message.get("type") == "response":
                    waiting = self._responses.get(int(message["request_seq"]))
                    if waiting is not None:
                        waiting.put(message)
                elif message.get("type") == "event":
                    self._events.put(message)
        except (OSError, ValueError):
            pass
        finally:
            self._events.put(None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(5)

    def __enter__(self) -> DapClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.disconnect()
        self.close()


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """Connect, retrying while the adapter is not listening yet (a worker still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        sock.settimeout(None)  # the reader thread blocks; waits have their own deadlines
        return sock


def _read_message(stream: Any) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    if length is None:
        raise ValueError("a DAP message without Content-Length")
    body = stream.read(length)
    if len(body) < length:
        return None
    message: dict[str, Any] = json.loads(body)
    return message

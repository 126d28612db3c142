"""A function worker: one warm Lambda execution environment, in its own process.

The gateway starts one per function (more under concurrent load) with the function's own
environment variables, then sends it invocations over a pipe. Module state survives between
invocations as it does in a warm Lambda; a timeout or crash costs the process, like Lambda
tears down an environment. The worker registers the local fast path so wschat's own handlers
post to connections over this pipe instead of one HTTP request per recipient.

Run as ``python -m wschat.gateway.worker_main``; configured by ``WSCHAT_WORKER_*`` variables,
which are removed from the environment before the handler module is imported. With
``WSCHAT_WORKER_DEBUG_PORT`` it runs under debugpy first (``worker_debug.WorkerDebugger``).
"""

from __future__ import annotations

import decimal
import gc
import importlib
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from wschat.delivery import local
from wschat.delivery.base import DeliveryError, FanoutResult, GoneConnection
from wschat.gateway import ipc, worker_debug
from wschat.gateway.lambda_context import LambdaContext


class PipeChannel:
    """The Sender the worker registers for the local fast path: calls go to the gateway."""

    # One call posts to a whole room, with no account throttle or 29 s integration limit to
    # stay under: no room needs the fan-out queue (unless FanoutInlineLimit says otherwise).
    inline_limit: int | None = None

    def __init__(self, write: Callable[[dict[str, Any]], None]) -> None:
        self._write = write
        # The connections open when the running invocation was sent, as the gateway tells
        # every invocation (``ConnectionRegistry.changes_since``). Posts then need no reply:
        # an id not among them is gone (API Gateway's 410), and is posted to all the same, so a
        # connection whose $connect ended during this invocation still gets the frame; the
        # chat forgets a gone record only when it is older than a $connect can take.
        self.open: set[str] = set()

    def told(self, connections: dict[str, list[str]] | None) -> None:
        """Apply what the gateway said of the open connections with an invocation."""
        if connections is None:
            return
        if "open" in connections:
            self.open = set(connections["open"])
            return
        self.open.difference_update(connections.get("closed", ()))
        self.open.update(connections.get("opened", ()))

    def _result(self, connection_ids: Sequence[str]) -> FanoutResult:
        gone = [cid for cid in connection_ids if cid not in self.open]
        return FanoutResult(delivered=len(connection_ids) - len(gone), gone=gone)

    def _send(self, message: dict[str, Any]) -> None:
        """A post the gateway answers not at all: the ids' fate is known here already."""
        try:
            self._write(message)
        except OSError as exc:  # the gateway is gone (stopped, or killed): its pipe closed
            raise DeliveryError(f"the gateway is gone: {exc}") from exc

    def post_many(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> FanoutResult:
        self._send({"op": "post_many", "ids": list(connection_ids), **ipc.pack_data(data)})
        return self._result(connection_ids)

    def post_batch(self, batches: Sequence[tuple[Sequence[str], bytes]]) -> list[FanoutResult]:
        """Every batch in one write to the gateway, in order."""
        self._send(
            {
                "op": "post_batch",
                "batches": [{"ids": list(ids), **ipc.pack_data(data)} for ids, data in batches],
            }
        )
        return [self._result(ids) for ids, _ in batches]

    def post(self, connection_id: str, data: bytes) -> None:
        result = self.post_many([connection_id], data)
        if result.gone:
            raise GoneConnection(connection_id)
        if result.failed:
            raise DeliveryError(result.failed[connection_id])


class Worker:
    def __init__(self) -> None:
        env = os.environ
        self.handler_path = env.pop("WSCHAT_WORKER_HANDLER")
        self.function_name = env.pop("WSCHAT_WORKER_FUNCTION_NAME")
        self.memory_mb = int(env.pop("WSCHAT_WORKER_MEMORY", "128"))
        code_dir = env.pop("WSCHAT_WORKER_CODE_DIR")
        endpoints = [e for e in env.pop("WSCHAT_WORKER_ENDPOINTS", "").split(",") if e]
        self._in = os.fdopen(int(env.pop("WSCHAT_WORKER_IN_FD")), "rb", buffering=0)
        self._out = os.fdopen(int(env.pop("WSCHAT_WORKER_OUT_FD")), "wb", buffering=0)
        self._write_lock = threading.Lock()
        self.channel = PipeChannel(self.write)
        self.debugger = worker_debug.WorkerDebugger.from_env(env, self.write)
        for endpoint in endpoints:
            local.register_channel(endpoint, self.channel)
        # Like Lambda's /var/task: the code directory is the working directory and on sys.path.
        os.chdir(code_dir)
        sys.path.insert(0, code_dir)
        self.handler: Callable[[Any, Any], Any] | None = None
        self.init_error: dict[str, Any] | None = None

    def write(self, message: dict[str, Any]) -> None:
        data = ipc.encode(message)
        with self._write_lock:
            self._out.write(data)

    def load_handler(self) -> None:
        # Errors are named as Lambda's Python runtime names them, and reported on every
        # invocation, as Lambda does.
        module_name, _, function_name = self.handler_path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            traceback.print_exc()
            if isinstance(exc, SyntaxError):
                self.init_error = _error_info(exc, "Runtime.UserCodeSyntaxError")
            elif isinstance(exc, ImportError):
                self.init_error = _error_info(exc, "Runtime.ImportModuleError")
            else:
                self.init_error = _error_info(exc)
            return
        handler = getattr(module, function_name, None)
        if callable(handler):
            self.handler = handler
            return
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        print(message, file=sys.stderr)
        self.init_error = {
            "errorType": "Runtime.HandlerNotFound",
            "errorMessage": message,
            "stackTrace": [],
        }

    def serve(self) -> None:
        """Invocations one at a time, read on this thread: the gateway sends nothing else,
        and nothing while one runs (posts need no answer), so no reader thread has to hand
        them over (a thread switch per invocation)."""
        if self.debugger is not None:
            self.debugger.start()
        self.load_handler()
        # The handler's modules and clients live as long as the environment: out of the
        # collector's sight, so collections walk what invocations make.
        gc.freeze()
        self.write({"op": "ready", "ok": self.init_error is None})
        decoder = ipc.Decoder()
        # An empty read: the gateway closed the pipe (stopped, or killed), and this ends.
        while chunk := self._in.read(65536):
            for message in decoder.feed(chunk):
                if message["op"] == "invoke":
                    self.write(self.invoke(message))

    def invoke(self, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"op": "result", "id": message["id"]}
        if self.handler is None:
            return {**reply, "ok": False, "error": self.init_error}
        self.channel.told(message.get("connections"))
        ctx = message["context"]
        context = LambdaContext(
            ctx["request_id"],
            self.function_name,
            self.memory_mb,
            int(ctx["deadline_ms"]),
            self.debugger.held_ms if self.debugger is not None else None,
        )
        try:
            value = self.handler(message["event"], context)
        except Exception as exc:
            traceback.print_exc()
            return {**reply, "ok": False, "error": _error_info(exc)}
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        try:
            # Lambda serializes the result as JSON (Decimal as a number); what JSON cannot
            # hold fails the invocation with Runtime.MarshalError.
            value = json.loads(json.dumps(value, default=_lambda_json))
        except (TypeError, ValueError, RecursionError) as exc:
            return {**reply, "ok": False, "error": _error_info(exc, "Runtime.MarshalError")}
        return {**reply, "ok": True, "value": value}


def _lambda_json(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Unable to marshal response: {type(value).__name__} is not JSON serializable")


def _error_info(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def main() -> None:
    Worker().serve()


if __name__ == "__main__":
    main()

"""Function workers seen from the gateway: warm processes, one invocation at a time each.

A ``FunctionPool`` holds the execution environments of one function: it starts one ahead of
traffic, starts more (cold starts) while all are busy, up to ``max_workers``, and replaces one
that timed out or crashed. Handlers' stdout and stderr go to the gateway's log, prefixed with
the function's name, as CloudWatch would keep them.

A function under ``--debug`` (``debugging``) has one environment, listening for the debugger,
kept started so the port answers; its timeout stops while a debugger holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wschat.gateway import ipc
from wschat.gateway.debugging import DebuggerState, DebugTarget, wait_pausing
from wschat.gateway.spec import FunctionSpec

log = logging.getLogger("wschat.gateway")
function_log = logging.getLogger("wschat.functions")


class FastPath(Protocol):
    """What a Python worker's fast path reaches in the gateway (``ManagementApi``)."""

    def channel_call(self, message: dict[str, Any]) -> None:
        """Do a post_many / post_batch call (no answer goes back)."""

    def changes_since(self, version: int) -> tuple[int, dict[str, list[str]]]:
        """The open connections' version, and what changed since ``version``."""


@dataclass
class InvocationResult:
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    timed_out: bool = False
    duration_ms: float = 0.0

    @property
    def error_type(self) -> str:
        return str((self.error or {}).get("errorType", ""))

    def log_failure(self, logger: logging.Logger, function_name: str) -> None:
        """The function's error and stack trace, as Lambda writes them to its log, if any."""
        if self.ok or not self.error:
            return
        logger.error(
            "%s failed: %s: %s\n%s",
            function_name,
            self.error.get("errorType"),
            self.error.get("errorMessage"),
            "".join(self.error.get("stackTrace") or []),
        )


class WorkerCrashed(Exception):
    pass


class WorkerStartError(Exception):
    """The function's runtime cannot be started here."""


NODE_WORKER = Path(__file__).with_name("node_worker.mjs")


def worker_command(function: FunctionSpec, path: str | None) -> list[str]:
    """The program that runs one of ``function``'s execution environments (``path``: its
    PATH)."""
    if function.is_node:
        node = shutil.which("node", path=path)
        if node is None:
            raise WorkerStartError(
                f"function {function.name} needs Node.js ({function.runtime}): no `node` on PATH"
            )
        return [node, str(NODE_WORKER)]
    return [sys.executable, "-m", "wschat.gateway.worker_main"]


class _PipeReader(asyncio.Protocol):
    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.decoder = ipc.Decoder()

    def data_received(self, data: bytes) -> None:
        for message in self.decoder.feed(data):
            self.worker.on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.on_pipe_closed()


class _OutputLines(asyncio.Protocol):
    """A worker's stdout and stderr, logged line by line as its function's output (what
    CloudWatch Logs would hold), split as the bytes come: no task to wake per line."""

    MAX_LINE = 64 * 1024  # a longer run without a newline is logged in pieces

    def __init__(self, prefix: str, closed: asyncio.Future[None]) -> None:
        self.prefix = prefix
        self.closed = closed
        self.partial = b""

    def data_received(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > self.MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        if function_log.isEnabledFor(logging.INFO):
            for line in lines:
                self._log(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.partial and function_log.isEnabledFor(logging.INFO):
            self._log(self.partial)
        self.partial = b""
        if not self.closed.done():
            self.closed.set_result(None)

    def _log(self, line: bytes) -> None:
        function_log.info("%s %s", self.prefix, line.decode("utf-8", "replace").rstrip())


class WorkerProcess:
    """One execution environment: a ``wschat.gateway.worker_main`` process, or a
    ``node_worker.mjs`` one for a Node.js function (both speak ``ipc``)."""

    def __init__(
        self,
        function: FunctionSpec,
        env: dict[str, str],
        fast_path: FastPath,
        number: int,
        debugger: DebuggerState | None = None,
    ) -> None:
        self.function = function
        self.env = env
        self.fast_path = fast_path
        self.number = number
        # The version of the open connections this worker was last told (Python workers:
        # their posts need no reply, PipeChannel knows who is gone).
        self.connections_seen = -1
        self.debugger = debugger  # set when the function runs under --debug
        self.process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._ready: asyncio.Future[bool] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._output_closed: asyncio.Future[None] | None = None
        self.alive = False
        self.generation = 0  # the pool's code generation it started on

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        command = worker_command(self.function, self.env.get("PATH"))
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        output_r, output_w = os.pipe()
        env = {
            **self.env,
            "WSCHAT_WORKER_HANDLER": self.function.handler,
            "WSCHAT_WORKER_FUNCTION_NAME": self.function.name,
            "WSCHAT_WORKER_MEMORY": str(self.function.memory_mb),
            "WSCHAT_WORKER_CODE_DIR": str(self.function.code_dir),
            "WSCHAT_WORKER_IN_FD": str(to_child_r),
            "WSCHAT_WORKER_OUT_FD": str(from_child_w),
        }
        self._ready = loop.create_future()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                pass_fds=(to_child_r, from_child_w),
                cwd=str(self.function.code_dir),
                # Its own session: Ctrl+C in the terminal reaches the gateway only, which then
                # runs every $disconnect before it stops the workers. (A worker still exits
                # when the gateway dies: its pipe closes.)
                start_new_session=True,
            )
        except BaseException:
            for fd in (to_child_w, from_child_r, output_r):  # no process to read or write
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
            os.close(output_w)
        self.alive = True
        write_transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(to_child_w, "wb", buffering=0)
        )
        self._writer = write_transport
        await loop.connect_read_pipe(
            lambda: _PipeReader(self), os.fdopen(from_child_r, "rb", buffering=0)
        )
        self._output_closed = closed = loop.create_future()
        await loop.connect_read_pipe(
            lambda: _OutputLines(f"[{self.function.name}]", closed),
            os.fdopen(output_r, "rb", buffering=0),
        )
        ok = await self._ready
        if not ok:
            log.warning(
                "function %s failed to initialise; invocations will fail", self.function.name
            )

    def on_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "result":
            if message.get("exiting"):
                # The runtime ends this environment after answering (Node.js's does after an
                # uncaught error): not to be handed another invocation meanwhile.
                self.alive = False
            future = self._pending.pop(int(message["id"]), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif op == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(bool(message.get("ok")))
        elif op == "debugger":
            if self.debugger is not None:
                self.debugger.set(bool(message.get("holding")))
        else:
            # A fast-path post: no answer (the worker knows who is gone).
            try:
                self.fast_path.channel_call(message)
            except Exception:  # never let a bad call kill the gateway
                log.exception("fast-path call failed")

    def on_pipe_closed(self) -> None:
        self.alive = False
        if self.debugger is not None:
            self.debugger.set(False)  # its debug session ended with it
        crash = WorkerCrashed(f"function {self.function.name} exited")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(crash)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(crash)
        self._pending.clear()

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(ipc.encode(message))

    async def invoke(
        self, event: dict[str, Any], request_id: str, timeout: float
    ) -> InvocationResult:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[call_id] = future
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        message = {
            "op": "invoke",
            "id": call_id,
            "event": event,
            "context": {"request_id": request_id, "deadline_ms": deadline_ms},
        }
        if not self.function.is_node:
            self.connections_seen, message["connections"] = self.fast_path.changes_since(
                self.connections_seen
            )
        self._send(message)
        if not await wait_pausing(future, timeout, self.debugger):
            self._pending.pop(call_id, None)
            # Lambda ends an environment whose invocation timed out; so do we.
            await self.stop()
            return InvocationResult(
                ok=False,
                timed_out=True,
                error={
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {timeout:.2f} seconds",
                },
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        try:
            reply = future.result()
        except WorkerCrashed as exc:
            return InvocationResult(
                ok=False,
                error={"errorType": "Runtime.ExitError", "errorMessage": str(exc)},
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        duration = (time.perf_counter() - started) * 1000
        if reply.get("ok"):
            return InvocationResult(ok=True, value=reply.get("value"), duration_ms=duration)
        return InvocationResult(ok=False, error=reply.get("error") or {}, duration_ms=duration)

    async def stop(self) -> None:
        self.alive = False
        if self._writer is not None:
            self._writer.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.wait(), 5)
        if self._output_closed is not None:  # its last lines logged
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._output_closed), 1)


class FunctionPool:
    """The warm execution environments of one function."""

    def __init__(
        self,
        function: FunctionSpec,
        env: dict[str, str],
        fast_path: FastPath,
        *,
        max_workers: int = 2,
        debug: DebugTarget | None = None,
    ) -> None:
        self.function = function
        self.env = env
        self.fast_path = fast_path
        self.max_workers = max(1, max_workers)
        self.debug = debug
        self.debugger: DebuggerState | None = None
        if debug is not None:
            # One port, so one environment: a second would have nowhere to listen.
            self.max_workers = 1
            self.env = {**env, **debug.worker_env()}
            self.debugger = DebuggerState()
        self._warming: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._idle: list[WorkerProcess] = []
        self._all: set[WorkerProcess] = set()
        self._starting = 0
        self._numbers = itertools.count(1)
        self._freed = asyncio.Condition()
        self.cold_starts = 0
        # Bumped by ``reload``: a worker of an older generation runs old code and is retired
        # when it is next free (one busy with an invocation finishes it first).
        self.generation = 0

    async def _spawn(self) -> WorkerProcess:
        worker = WorkerProcess(
            self.function, self.env, self.fast_path, next(self._numbers), self.debugger
        )
        worker.generation = self.generation
        self._starting += 1
        try:
            await worker.start()
        except BaseException:  # cancelled too (a pool stopped while it waits for a debugger)
            await worker.stop()
            raise
        finally:
            self._starting -= 1
        self._all.add(worker)
        self.cold_starts += 1
        return worker

    async def warm_up(self) -> None:
        """Start one environment ahead of traffic so the first request is not a cold start.
        A debugged function's starts in the background: the gateway's start never waits on a
        debugger (--debug-wait, a breakpoint in module code); its invocations wait for it."""
        if self._all or self._starting:
            return
        if self.debug is not None:
            self._keep_listening()
            return
        worker = await self._spawn()
        await self._release(worker)

    def _keep_listening(self) -> None:
        """A debugged function's environment is gone (reloaded, timed out, crashed): start the
        next now, on the same port, so a debugger can attach before the next invocation."""
        if self.debug is None or self._stopped or self._all or self._starting or self._warming:
            return

        async def warm() -> None:
            try:
                await self._release(await self._spawn())
            except Exception as exc:
                log.error("function %s could not start: %s", self.function.name, exc)

        task = asyncio.create_task(warm())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _acquire(self) -> WorkerProcess:
        while True:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                self._all.discard(worker)
            if len(self._all) + self._starting < self.max_workers:
                return await self._spawn()
            async with self._freed:
                await self._freed.wait()

    async def reload(self) -> None:
        """The function's code changed: retire every warm environment (those idle now, busy
        ones when their invocation ends); the next invocation starts on the new code, and an
        error in it is that invocation's init error."""
        self.generation += 1
        stale, self._idle = self._idle, []
        for worker in stale:
            self._all.discard(worker)
        await asyncio.gather(*(worker.stop() for worker in stale), return_exceptions=True)
        self._keep_listening()
        async with self._freed:
            self._freed.notify_all()

    async def _release(self, worker: WorkerProcess) -> None:
        if worker.alive and worker.generation == self.generation:
            self._idle.append(worker)
        else:
            self._all.discard(worker)
            await worker.stop()  # reap the process and close its pipes
            self._keep_listening()
        async with self._freed:
            self._freed.notify()

    async def invoke(self, event: dict[str, Any]) -> InvocationResult:
        # Lambda's own request id (context.aws_request_id) is a UUID, unlike API Gateway's.
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            worker = await self._acquire()
        except Exception as exc:
            return InvocationResult(
                ok=False,
                error={"errorType": "Runtime.InitError", "errorMessage": str(exc)},
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        try:
            return await worker.invoke(event, request_id, self.function.timeout)
        finally:
            await self._release(worker)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)
        workers = list(self._all)
        self._all.clear()
        self._idle.clear()
        await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)

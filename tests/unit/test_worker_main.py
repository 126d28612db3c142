"""Function workers: ``python -m wschat.gateway.worker_main`` as a real process on real pipes, and
the ``FunctionPool`` that keeps them warm, with no sockets.

The worker is started the way ``workers.WorkerProcess.start`` does it (two ``os.pipe`` pairs
passed with ``pass_fds``, ``WSCHAT_WORKER_*`` variables); the test plays the gateway's side of the
pipe, so it can also answer the worker's fast-path calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import select
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wschat.gateway import ipc
from wschat.gateway.spec import FunctionSpec
from wschat.gateway.workers import FunctionPool

ENDPOINT = "http://127.0.0.1:9/prod"  # never contacted: the fast path answers for it
OTHER_ENDPOINT = "https://k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com/prod"

# One module with a function per behaviour; each test picks its handler.
HANDLER_MODULE = """
    import json
    import os
    import sys
    import time

    INVOCATIONS = 0


    def echo(event, context):
        return {"statusCode": 200, "body": json.dumps(event)}


    def count(event, context):
        global INVOCATIONS
        INVOCATIONS += 1
        return {"invocations": INVOCATIONS, "pid": os.getpid()}


    def fail(event, context):
        print("about to fail")
        raise ValueError("no room named " + event["room"])


    def describe_context(event, context):
        return {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
        }


    def environment(event, context):
        return {
            "worker_variables": sorted(k for k in os.environ if k.startswith("WSCHAT_WORKER")),
            "app_setting": os.environ.get("APP_SETTING"),
            "cwd": os.getcwd(),
            "path0": sys.path[0],
        }


    def fan_out(event, context):
        from wschat.delivery import sender_for

        data = bytes.fromhex(event["hex"])
        result = sender_for(event["endpoint"]).post_many(event["ids"], data)
        return {"delivered": result.delivered, "gone": result.gone, "failed": result.failed}


    def sleep(event, context):
        time.sleep(event["seconds"])
        return {"pid": os.getpid()}


    def exit_now(event, context):
        os._exit(3)


    def unserialisable(event, context):
        return {"statusCode": 200, "tags": {"a", "b"}}


    def circular(event, context):
        result = {"statusCode": 200}
        result["self"] = result
        return result


    def decimal_result(event, context):
        import decimal

        return {"statusCode": 200, "count": decimal.Decimal("3")}
"""


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A function's code directory holding ``app.py`` (the handlers above)."""
    directory = tmp_path / "function"
    directory.mkdir()
    (directory / "app.py").write_text(textwrap.dedent(HANDLER_MODULE))
    return directory


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSCHAT_WORKER")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# --- one worker on real pipes -----------------------------------------------------------------


class WorkerUnderTest:
    """A running worker process and the gateway's end of its two pipes."""

    def __init__(
        self, process: subprocess.Popen[bytes], to_child: int, from_child: int, output: Path
    ) -> None:
        self.process = process
        self.to_child = to_child
        self.from_child = from_child
        self.output_path = output
        self._decoder = ipc.Decoder()
        self._received: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1_000_000))

    @property
    def output(self) -> str:
        """What the handler printed (stdout and stderr)."""
        return self.output_path.read_text(errors="replace")

    def send(self, message: dict[str, Any]) -> None:
        data = ipc.encode(message)
        while data:
            data = data[os.write(self.to_child, data) :]

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self._received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message from the worker in {timeout}s:\n{self.output}")
            readable, _, _ = select.select([self.from_child], [], [], remaining)
            if readable:
                chunk = os.read(self.from_child, 65536)
                if not chunk:
                    raise AssertionError(f"the worker closed its pipe:\n{self.output}")
                self._received += self._decoder.feed(chunk)
        return self._received.pop(0)

    def start_invoke(
        self,
        event: dict[str, Any],
        timeout_ms: int = 10_000,
        connections: dict[str, list[str]] | None = None,
    ) -> int:
        call_id = next(self._ids)
        message = {
            "op": "invoke",
            "id": call_id,
            "event": event,
            "context": {
                "request_id": str(uuid.uuid4()),
                "deadline_ms": int(time.time() * 1000) + timeout_ms,
            },
        }
        if connections is not None:
            message["connections"] = connections
        self.send(message)
        return call_id

    def invoke(self, event: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
        call_id = self.start_invoke(event or {}, **context)
        result = self.receive()
        assert result["op"] == "result"
        assert result["id"] == call_id
        return result

    def close(self) -> int:
        os.close(self.to_child)  # EOF: the worker finishes and exits
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        os.close(self.from_child)
        return code


StartWorker = Callable[..., WorkerUnderTest]


@pytest.fixture
def start_worker(code_dir: Path, tmp_path: Path) -> Iterator[StartWorker]:
    """Starts ``worker_main`` for ``handler`` as WorkerProcess.start does, from another cwd."""
    started: list[WorkerUnderTest] = []

    def start(
        handler: str = "app.echo",
        *,
        function_name: str = "SendMessageFunction",
        memory_mb: int = 256,
        env: dict[str, str] | None = None,
        expect_ready: bool | None = True,
    ) -> WorkerUnderTest:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        output = tmp_path / f"worker-{len(started)}.log"
        launch_dir = tmp_path / "elsewhere"
        launch_dir.mkdir(exist_ok=True)
        variables = base_env(
            WSCHAT_WORKER_HANDLER=handler,
            WSCHAT_WORKER_FUNCTION_NAME=function_name,
            WSCHAT_WORKER_MEMORY=str(memory_mb),
            WSCHAT_WORKER_CODE_DIR=str(code_dir),
            WSCHAT_WORKER_IN_FD=str(to_child_r),
            WSCHAT_WORKER_OUT_FD=str(from_child_w),
            **(env or {}),
        )
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "wschat.gateway.worker_main"],
                env=variables,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                pass_fds=(to_child_r, from_child_w),
                # Not the code dir: the worker itself must move there, as Lambda's /var/task.
                cwd=launch_dir,
            )
        os.close(to_child_r)
        os.close(from_child_w)
        worker = WorkerUnderTest(process, to_child_w, from_child_r, output)
        started.append(worker)
        if expect_ready is not None:
            assert worker.receive() == {"op": "ready", "ok": expect_ready}
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
        for fd in (worker.to_child, worker.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_worker_says_ready_once_the_handler_is_imported(start_worker: StartWorker) -> None:
    worker = start_worker("app.echo", expect_ready=None)
    assert worker.receive() == {"op": "ready", "ok": True}


def test_invocation_returns_the_handlers_result(start_worker: StartWorker) -> None:
    worker = start_worker("app.echo")
    event = {"requestContext": {"routeKey": "sendMessage"}, "body": '{"message":"안녕"}'}
    result = worker.invoke(event)
    assert result["ok"] is True
    assert result["value"]["statusCode"] == 200
    assert json.loads(result["value"]["body"]) == event


def test_module_state_survives_between_invocations(start_worker: StartWorker) -> None:
    worker = start_worker("app.count")
    values = [worker.invoke()["value"] for _ in range(3)]
    assert [value["invocations"] for value in values] == [1, 2, 3]
    assert len({value["pid"] for value in values}) == 1


def test_invocations_queued_together_are_answered_in_order(start_worker: StartWorker) -> None:
    worker = start_worker("app.count")
    ids = [worker.start_invoke({}) for _ in range(5)]
    results = [worker.receive() for _ in ids]
    assert [r["id"] for r in results] == ids
    assert [r["value"]["invocations"] for r in results] == [1, 2, 3, 4, 5]


def test_raising_handler_fails_the_invocation_with_type_and_stack(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("app.fail")
    result = worker.invoke({"room": "lobby"})
    assert result["ok"] is False
    error = result["error"]
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "no room named lobby"
    assert isinstance(error["stackTrace"], list)
    assert any("app.py" in line and "fail" in line for line in error["stackTrace"])
    # The environment survives a handler's exception, as in Lambda.
    assert worker.invoke({"room": "general"})["error"]["errorMessage"] == "no room named general"
    assert worker.process.poll() is None


def test_raising_handler_output_and_traceback_reach_the_log(start_worker: StartWorker) -> None:
    worker = start_worker("app.fail")
    worker.invoke({"room": "lobby"})
    worker.close()
    assert "about to fail" in worker.output
    assert "ValueError: no room named lobby" in worker.output


def test_handler_that_cannot_be_imported_fails_every_invocation(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("no_such_module.handler", expect_ready=False)
    for _ in range(2):
        result = worker.invoke({"body": "x"})
        assert result["ok"] is False
        assert result["error"]["errorType"] == "Runtime.ImportModuleError"
        assert "no_such_module" in result["error"]["errorMessage"]
    assert worker.process.poll() is None
    worker.close()
    assert "ModuleNotFoundError" in worker.output


@pytest.mark.parametrize(
    ("module", "handler", "error_type"),
    [
        ("def other(event, context):\n    return 1\n", "app.handler", "Runtime.HandlerNotFound"),
        (
            "def handler(event, context)\n    return 1\n",
            "app.handler",
            "Runtime.UserCodeSyntaxError",
        ),
        ("raise RuntimeError('no config')\n", "app.handler", "RuntimeError"),
    ],
    ids=["missing-function", "syntax-error", "raises-at-import"],
)
def test_init_failures_carry_lambdas_error_types(
    start_worker: StartWorker, code_dir: Path, module: str, handler: str, error_type: str
) -> None:
    (code_dir / "app.py").write_text(module)
    worker = start_worker(handler, expect_ready=False)
    assert worker.invoke()["error"]["errorType"] == error_type


def test_context_describes_the_function_and_its_deadline(start_worker: StartWorker) -> None:
    worker = start_worker("app.describe_context", function_name="JoinFunction", memory_mb=512)
    request_id = "0b7cdb6e-4b0d-4bbf-9d4b-3c5b5cbe6f4a"
    worker.send(
        {
            "op": "invoke",
            "id": 1,
            "event": {},
            "context": {"request_id": request_id, "deadline_ms": int(time.time() * 1000) + 3000},
        }
    )
    value = worker.receive()["value"]
    assert value["aws_request_id"] == request_id
    assert value["function_name"] == "JoinFunction"
    assert int(value["memory_limit_in_mb"]) == 512
    assert 2000 < value["remaining_ms"] <= 3000
    assert value["invoked_function_arn"].endswith(":function:JoinFunction")
    assert value["log_group_name"] == "/aws/lambda/JoinFunction"


def test_remaining_time_is_never_negative(start_worker: StartWorker) -> None:
    worker = start_worker("app.describe_context")
    assert worker.invoke(timeout_ms=-5_000)["value"]["remaining_ms"] == 0


def test_memory_limit_is_a_string_as_in_lambda(start_worker: StartWorker) -> None:
    worker = start_worker("app.describe_context", memory_mb=512)
    assert worker.invoke()["value"]["memory_limit_in_mb"] == "512"


def test_worker_variables_are_hidden_from_the_handler(start_worker: StartWorker) -> None:
    worker = start_worker(
        "app.environment",
        env={"APP_SETTING": "kept", "WSCHAT_WORKER_ENDPOINTS": ENDPOINT},
    )
    value = worker.invoke()["value"]
    assert value["worker_variables"] == []
    assert value["app_setting"] == "kept"  # the function's own environment is there


def test_code_dir_is_the_working_directory_and_first_on_sys_path(
    start_worker: StartWorker, code_dir: Path
) -> None:
    value = start_worker("app.environment").invoke()["value"]
    assert os.path.realpath(value["cwd"]) == os.path.realpath(code_dir)
    assert os.path.realpath(value["path0"]) == os.path.realpath(code_dir)


def test_fast_path_posts_get_no_answer_and_ids_not_open_are_gone(
    start_worker: StartWorker,
) -> None:
    worker = start_worker(
        "app.fan_out", env={"WSCHAT_WORKER_ENDPOINTS": f"{ENDPOINT},{OTHER_ENDPOINT}"}
    )
    call_id = worker.start_invoke(
        {"endpoint": OTHER_ENDPOINT, "ids": ["a=", "b=", "c="], "hex": "안녕".encode().hex()},
        connections={"open": ["a=", "c=", "z="]},
    )
    call = worker.receive()
    assert call["op"] == "post_many"
    assert call["ids"] == ["a=", "b=", "c="]  # b= too: it may have opened since
    assert ipc.unpack_data(call) == "안녕".encode()
    result = worker.receive()  # no answer to the post was needed
    assert result["id"] == call_id
    assert result["value"] == {"delivered": 2, "gone": ["b="], "failed": {}}


def test_the_open_connections_follow_what_each_invocation_is_told(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("app.fan_out", env={"WSCHAT_WORKER_ENDPOINTS": ENDPOINT})
    event = {"endpoint": ENDPOINT, "ids": ["a=", "b=", "c="], "hex": "6869"}

    def gone_after(connections: dict[str, list[str]] | None) -> list[str]:
        worker.start_invoke(event, connections=connections)
        worker.receive()  # the post
        value: list[str] = worker.receive()["value"]["gone"]
        return value

    assert gone_after({"open": ["a="]}) == ["b=", "c="]
    assert gone_after({"opened": ["b=", "c="], "closed": ["a="]}) == ["a="]
    assert gone_after(None) == ["a="]  # told nothing new: as before
    assert gone_after({"opened": [], "closed": ["b=", "c="]}) == ["a=", "b=", "c="]


def test_fast_path_carries_binary_data_as_base64(start_worker: StartWorker) -> None:
    worker = start_worker("app.fan_out", env={"WSCHAT_WORKER_ENDPOINTS": ENDPOINT})
    worker.start_invoke(
        {"endpoint": ENDPOINT + "/", "ids": ["a="], "hex": "ff00fe"}, connections={"open": ["a="]}
    )
    call = worker.receive()
    assert "data_b64" in call
    assert ipc.unpack_data(call) == b"\xff\x00\xfe"
    assert worker.receive()["value"]["delivered"] == 1


def test_unserialisable_result_fails_with_marshal_error(start_worker: StartWorker) -> None:
    result = start_worker("app.unserialisable").invoke()
    assert result["ok"] is False
    assert result["error"]["errorType"] == "Runtime.MarshalError"


def test_result_that_cannot_be_encoded_fails_with_marshal_error_and_keeps_the_worker(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("app.circular")
    result = worker.invoke()
    assert result["ok"] is False
    assert result["error"]["errorType"] == "Runtime.MarshalError"
    assert worker.process.poll() is None


def test_decimal_result_is_a_json_number(start_worker: StartWorker) -> None:
    assert start_worker("app.decimal_result").invoke()["value"]["count"] == 3


def test_worker_exits_when_the_gateway_closes_its_pipe(start_worker: StartWorker) -> None:
    worker = start_worker("app.echo")
    worker.invoke()
    assert worker.close() == 0


# --- the pool of warm workers -------------------------------------------------------------------


def make_pool(
    code_dir: Path,
    handler: str,
    *,
    max_workers: int = 2,
    timeout: float = 10.0,
    fast_path: RecordingFastPath | None = None,
    env: dict[str, str] | None = None,
) -> FunctionPool:
    function = FunctionSpec(name="Fn", handler=handler, code_dir=code_dir, timeout=timeout)
    return FunctionPool(
        function,
        base_env(**(env or {})),
        fast_path or RecordingFastPath(),
        max_workers=max_workers,
    )


class RecordingFastPath:
    """The gateway's side of the fast path, for a pool on its own: records the posts and
    tells workers that ``open`` are the open connections."""

    def __init__(self, open_ids: list[str] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.open_ids = open_ids or []

    def channel_call(self, message: dict[str, Any]) -> None:
        self.calls.append(message)

    def changes_since(self, version: int) -> tuple[int, dict[str, list[str]]]:
        return 1, {"open": self.open_ids} if version < 1 else {"opened": [], "closed": []}


def run_with_pool(pool: FunctionPool, scenario: Callable[[], Any]) -> Any:
    async def main() -> Any:
        try:
            return await scenario()
        finally:
            await pool.stop()

    return asyncio.run(main())


def test_warm_up_starts_one_environment_that_serves_the_first_request(code_dir: Path) -> None:
    pool = make_pool(code_dir, "app.count")

    async def scenario() -> tuple[int, int, Any]:
        await pool.warm_up()
        after_warm_up = pool.cold_starts
        result = await pool.invoke({})
        return after_warm_up, pool.cold_starts, result

    after_warm_up, after_invoke, result = run_with_pool(pool, scenario)
    assert after_warm_up == 1
    assert after_invoke == 1
    assert result.ok and result.value["invocations"] == 1


def test_warm_up_twice_starts_only_one_environment(code_dir: Path) -> None:
    pool = make_pool(code_dir, "app.count")

    async def scenario() -> int:
        await pool.warm_up()
        await pool.warm_up()
        return pool.cold_starts

    assert run_with_pool(pool, scenario) == 1


def test_concurrent_invocations_start_more_environments_up_to_the_maximum(
    code_dir: Path,
) -> None:
    pool = make_pool(code_dir, "app.sleep", max_workers=2)

    async def scenario() -> list[Any]:
        await pool.warm_up()
        return await asyncio.gather(*(pool.invoke({"seconds": 0.3}) for _ in range(4)))

    results = run_with_pool(pool, scenario)
    assert all(result.ok for result in results), [r.error for r in results]
    assert pool.cold_starts == 2
    assert len({result.value["pid"] for result in results}) == 2


def test_sequential_invocations_reuse_one_environment(code_dir: Path) -> None:
    pool = make_pool(code_dir, "app.count", max_workers=3)

    async def scenario() -> list[Any]:
        return [await pool.invoke({}) for _ in range(3)]

    results = run_with_pool(pool, scenario)
    assert [r.value["invocations"] for r in results] == [1, 2, 3]
    assert pool.cold_starts == 1


def test_timed_out_invocation_ends_its_environment_and_the_pool_replaces_it(
    code_dir: Path,
) -> None:
    pool = make_pool(code_dir, "app.sleep", max_workers=1, timeout=0.5)

    async def scenario() -> tuple[Any, Any, Any]:
        before = await pool.invoke({"seconds": 0})
        timed_out = await pool.invoke({"seconds": 30})
        after = await pool.invoke({"seconds": 0})
        return before, timed_out, after

    started = time.monotonic()
    before, timed_out, after = run_with_pool(pool, scenario)
    assert time.monotonic() - started < 10
    assert timed_out.ok is False
    assert timed_out.timed_out is True
    assert timed_out.error_type == "Sandbox.Timedout"
    assert "0.50 seconds" in timed_out.error["errorMessage"]
    assert after.ok is True
    assert after.value["pid"] != before.value["pid"]
    assert pool.cold_starts == 2
    with pytest.raises(ProcessLookupError):
        os.kill(before.value["pid"], 0)  # the timed-out environment is gone


# The crashed environments are dropped without WorkerProcess.stop(), so their subprocess
# transports are never closed and complain when collected after the loop is gone.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_crashed_environment_fails_its_invocation_and_is_replaced(code_dir: Path) -> None:
    pool = make_pool(code_dir, "app.exit_now", max_workers=1)

    async def scenario() -> list[Any]:
        return [await pool.invoke({}) for _ in range(2)]

    results = run_with_pool(pool, scenario)
    gc.collect()  # any complaint about the dropped transports belongs to this test
    assert [r.error_type for r in results] == ["Runtime.ExitError", "Runtime.ExitError"]
    assert pool.cold_starts == 2


def test_pool_of_a_function_that_cannot_be_imported_fails_invocations(code_dir: Path) -> None:
    pool = make_pool(code_dir, "missing_module.handler")

    async def scenario() -> Any:
        await pool.warm_up()
        return await pool.invoke({})

    result = run_with_pool(pool, scenario)
    assert result.ok is False
    assert result.error_type == "Runtime.ImportModuleError"


def test_pool_hands_fast_path_posts_to_the_gateway_and_tells_who_is_open(
    code_dir: Path,
) -> None:
    fast_path = RecordingFastPath(open_ids=["a="])
    pool = make_pool(
        code_dir, "app.fan_out", fast_path=fast_path, env={"WSCHAT_WORKER_ENDPOINTS": ENDPOINT}
    )

    async def scenario() -> Any:
        return await pool.invoke({"endpoint": ENDPOINT, "ids": ["a=", "b="], "hex": "6869"})

    result = run_with_pool(pool, scenario)
    assert result.ok, result.error
    assert result.value == {"delivered": 1, "gone": ["b="], "failed": {}}
    assert [(c["op"], c["ids"], ipc.unpack_data(c)) for c in fast_path.calls] == [
        ("post_many", ["a=", "b="], b"hi")
    ]

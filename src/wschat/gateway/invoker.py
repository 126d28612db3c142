"""The Lambda side of the gateway: each function's execution environments and how they are run.

``Invoker`` holds one ``FunctionPool`` per function, warms them up, invokes them (optionally
within a deadline, as API Gateway stops waiting for an integration after 29 s while the
function runs on), and, with reload on, restarts a function's warm environments when its code
changes. ``LambdaEnvironment`` is what every execution environment finds in ``os.environ``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from wschat.delivery.sigv4 import Credentials
from wschat.gateway import iam
from wschat.gateway.debugging import DebuggerState, DebugTarget, wait_pausing
from wschat.gateway.spec import FunctionSpec
from wschat.gateway.workers import FastPath, FunctionPool, InvocationResult

log = logging.getLogger("wschat.gateway")

T = TypeVar("T")


async def within(
    invocation: Coroutine[Any, Any, T], timeout: float, debugger: DebuggerState | None = None
) -> T | None:
    """The invocation's result, or None when its caller stops waiting after ``timeout``, as
    API Gateway stops waiting for an integration after 29 s; the invocation itself runs on
    (the function until its own timeout, as on AWS). The wait stops while ``debugger`` (the
    function's, under wschat serve --debug) holds the function."""
    task = asyncio.ensure_future(invocation)
    return task.result() if await wait_pausing(task, timeout, debugger) else None


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@dataclass(frozen=True)
class LambdaEnvironment:
    """The environment variables of the functions' processes: the gateway's own (AWS
    settings, PATH), what Lambda sets, the endpoints that lead back to this gateway, the
    function's own from the template, then ``extra`` (the command line's)."""

    management_url: str  # the @connections API, as boto3's endpoint
    sqs_endpoint: str
    # Every URL a handler may build for this stage's @connections (http and https): the
    # Python workers' fast path answers posts to them over the pipe.
    fast_path_endpoints: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # With them, the functions sign @connections calls with these keys (the gateway checks
    # them as API Gateway's IAM auth would).
    credentials: Credentials | None = None

    def of(self, function: FunctionSpec) -> dict[str, str]:
        env = dict(os.environ)
        here = region()
        # What Lambda sets in every execution environment.
        env.update(
            {
                "AWS_REGION": here,
                "AWS_DEFAULT_REGION": here,
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
                "LAMBDA_TASK_ROOT": str(function.code_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # boto3 needs credentials to sign; Lambda always has some.
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        # Clients created without an endpoint_url reach this gateway's @connections API and
        # its SQS queues.
        env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = self.management_url
        env["AWS_ENDPOINT_URL_SQS"] = self.sqs_endpoint
        if self.ca_bundle is not None:
            env["AWS_CA_BUNDLE"] = str(self.ca_bundle)
            env["NODE_EXTRA_CA_CERTS"] = str(self.ca_bundle)  # the JavaScript SDK's
        env["WSCHAT_WORKER_ENDPOINTS"] = ",".join(self.fast_path_endpoints)
        env.update(function.environment)
        env.update(self.extra)
        for name in (iam.ACCESS_KEY_ENV, iam.SECRET_KEY_ENV):
            env.pop(name, None)  # the functions get the keys below, not the gateway's settings
        if self.credentials is not None:
            # A Lambda's role credentials sign its @connections calls; here, the keys the
            # gateway checks signatures with, so a handler's boto3 client passes. (Lambda
            # reserves these names: a function's own environment cannot replace them.)
            if env.get("AWS_ACCESS_KEY_ID") != self.credentials.access_key:
                env.pop("AWS_SESSION_TOKEN", None)  # it belongs to other keys
                env.pop("AWS_SECURITY_TOKEN", None)
            env["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
        return env


class Invoker:
    def __init__(
        self,
        functions: list[FunctionSpec],
        environment: LambdaEnvironment,
        fast_path: FastPath,
        *,
        max_workers: int = 2,
        debug: dict[str, DebugTarget] | None = None,
    ) -> None:
        debug = debug or {}
        self.pools: dict[str, FunctionPool] = {
            function.name: FunctionPool(
                function,
                environment.of(function),
                fast_path,
                max_workers=max_workers,
                debug=debug.get(function.name),
            )
            for function in functions
        }

    async def warm_up(self) -> None:
        """One warm environment per function; one that cannot start is logged, and its
        invocations fail with its init error, as on Lambda."""
        pools = list(self.pools.values())
        results = await asyncio.gather(*(pool.warm_up() for pool in pools), return_exceptions=True)
        for pool, result in zip(pools, results, strict=True):
            if isinstance(result, BaseException):
                log.error("function %s could not start: %s", pool.function.name, result)

    async def invoke(self, function: FunctionSpec, event: dict[str, Any]) -> InvocationResult:
        result = await self.pools[function.name].invoke(event)
        result.log_failure(log, function.name)
        return result

    async def watch(self, ignore: Path | None = None) -> None:
        """Reload a function's warm environments when a file under its code directory changes
        (the platform's file notifications through watchfiles, not a poll). Open connections
        stay open; invocations in flight finish on the code they started with. Files under
        ``ignore`` (the gateway's own data), and SQLite files anywhere, are no code change."""
        import watchfiles

        directories = sorted({str(pool.function.code_dir) for pool in self.pools.values()})
        try:
            async for changes in watchfiles.awatch(*directories, debounce=200, step=50):
                changed = [
                    Path(path)
                    for _, path in changes
                    if not (ignore is not None and Path(path).is_relative_to(ignore))
                    and ".sqlite3" not in Path(path).name
                ]
                for pool in self.pools.values():
                    code_dir = pool.function.code_dir
                    if any(path.is_relative_to(code_dir) for path in changed):
                        await pool.reload()
                        log.info("%s reloaded: its code changed", pool.function.name)
        except (OSError, RuntimeError) as exc:  # a directory gone, the watcher unavailable
            log.warning("code reload stopped: %s", exc)

    async def stop(self) -> None:
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()), return_exceptions=True)

"""The local gateway's lifecycle and pipeline: connections in, Lambda invocations out.

``Gateway`` owns the listening socket, the open WebSocket connections, the function pools and
the timers for API Gateway's idle and maximum-duration limits. ``core`` decides what API Gateway
would do; this module does it. The template's SQS queues live in ``queues`` (a SQLite file in
the data dir), served over HTTP by ``sqs_api`` and polled for functions by ``event_sources``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wschat.delivery.sigv4 import Credentials
from wschat.gateway import authorizers, core, http, iam, management, sqs_api
from wschat.gateway.connection import ClientProtocol, WebSocketConnection, frame_for
from wschat.gateway.event_sources import EventSourceCounters, Poller
from wschat.gateway.queues import QueueError, QueueStore
from wschat.gateway.spec import ApiSpec, AuthorizerSpec, FunctionSpec, RouteSpec
from wschat.gateway.workers import FunctionPool, InvocationResult
from wschat.page import ChatPage, SignInSettings

log = logging.getLogger("wschat.gateway")


@dataclass
class GatewayConfig:
    api: ApiSpec
    host: str = "127.0.0.1"
    port: int = 8000
    stage: str = "local"
    api_id: str = "local"
    limits: core.Limits = field(default_factory=core.Limits)
    ssl_context: ssl.SSLContext | None = None
    ca_bundle: Path | None = None  # handed to functions as AWS_CA_BUNDLE with --tls
    static_dir: Path | None = None  # the chat page's files (wschat.page.WEB_DIR); None: no page
    sign_in: SignInSettings | None = None  # how the page signs people in; None: it asks a name
    function_env: dict[str, str] = field(default_factory=dict)  # added to every function
    max_workers_per_function: int = 2
    shutdown_timeout: float = 10.0
    # Watch the functions' code directories and restart their warm environments on a change
    # (wschat serve turns it on; --no-reload off).
    reload: bool = False
    # When set, every @connections request must be signed with these (SigV4, as API Gateway's
    # IAM auth checks), and the functions get them as their AWS credentials; when not, the
    # @connections API answers loopback clients only.
    management_credentials: Credentials | None = None
    # An HTTP connection that has not sent a whole request for this long is closed (a slowloris
    # head, an idle keep-alive); a WebSocket is then governed by the idle timeout instead.
    http_request_timeout: float = 30.0
    # The SQS queues' file (``wschat serve`` puts it in the data dir, so what is queued
    # survives a restart); None keeps them in memory for this run only.
    queue_store_path: Path | None = None


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.connections: dict[str, WebSocketConnection] = {}
        self.clients: set[ClientProtocol] = set()
        self.pools: dict[str, FunctionPool] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._disconnects: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = config.port
        self.accepting = False
        # Set once the functions are warm: a handshake that arrives while they warm up waits
        # for it (the port is open from the start, so a client that waits for the port must
        # not be turned away by a gateway that is only starting).
        self.ready = asyncio.Event()
        # How @connections calls arrived: HTTP requests (boto3, curl) and fast-path calls from
        # function workers; tests and benchmarks read them to tell which path a handler took.
        self.management_http_requests = 0
        self.fast_path_calls = 0
        self.queues: sqs_api.QueueService | None = None
        self.sqs: sqs_api.SqsApi | None = None
        self.pollers: dict[str, Poller] = {}
        self.page: ChatPage | None = None  # made at start, when the port is known

    # --- addresses ---------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.config.ssl_context else "http"

    @property
    def domain_name(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def websocket_url(self) -> str:
        ws = "wss" if self.config.ssl_context else "ws"
        return f"{ws}://{self.domain_name}/{self.config.stage}"

    @property
    def management_url(self) -> str:
        return f"{self.scheme}://{self.domain_name}/{self.config.stage}"

    @property
    def sqs_endpoint(self) -> str:
        """What functions get as AWS_ENDPOINT_URL_SQS."""
        return f"{self.scheme}://{self.domain_name}{sqs_api.PATH_PREFIX}"

    @property
    def region(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    @property
    def sqs_requests(self) -> int:
        """SQS API requests served over HTTP (boto3's sqs client from functions or tests)."""
        return self.sqs.requests if self.sqs is not None else 0

    @property
    def event_source_counters(self) -> dict[str, EventSourceCounters]:
        return {name: poller.counters for name, poller in self.pollers.items()}

    @property
    def page_url(self) -> str:
        return f"{self.scheme}://{self.domain_name}/"

    @property
    def stage_info(self) -> core.StageInfo:
        return core.StageInfo(self.config.api_id, self.config.stage, self.domain_name)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a per-connection task, holding a reference until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._open_queues()
        self._server = await loop.create_server(
            lambda: ClientProtocol(self),
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.static_dir is not None:
            self.page = ChatPage(
                self.websocket_url,
                self.config.sign_in,
                https=self.config.ssl_context is not None,
                web_dir=self.config.static_dir,
            )
        for function in self.config.api.functions:
            self.pools[function.name] = FunctionPool(
                function,
                self._function_env(function),
                self.handle_channel_call,
                max_workers=self.config.max_workers_per_function,
            )
        results = await asyncio.gather(
            *(pool.warm_up() for pool in self.pools.values()), return_exceptions=True
        )
        for pool, result in zip(self.pools.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.error("function %s could not start: %s", pool.function.name, result)
        self._start_pollers()
        self._sweeper = asyncio.create_task(self._sweep())
        if self.config.reload:
            self._watcher = asyncio.create_task(self._watch_code())
        self.accepting = True
        self.ready.set()

    async def _watch_code(self) -> None:
        """Reload a function's warm environments when a file under its code directory changes
        (the platform's file notifications through watchfiles, not a poll). Open connections
        stay open; invocations in flight finish on the code they started with."""
        import watchfiles

        directories = sorted({str(pool.function.code_dir) for pool in self.pools.values()})
        # The gateway's own data (SQLite files, queues) may sit under a code directory (a
        # template with CodeUri "." and ./data): writing it is no code change.
        data = self.config.queue_store_path.parent if self.config.queue_store_path else None
        try:
            async for changes in watchfiles.awatch(*directories, debounce=200, step=50):
                changed = [
                    Path(path)
                    for _, path in changes
                    if not (data is not None and Path(path).is_relative_to(data))
                    and ".sqlite3" not in Path(path).name
                ]
                for pool in self.pools.values():
                    code_dir = pool.function.code_dir
                    if any(path.is_relative_to(code_dir) for path in changed):
                        await pool.reload()
                        log.info("%s reloaded: its code changed", pool.function.name)
        except (OSError, RuntimeError) as exc:  # a directory gone, the watcher unavailable
            log.warning("code reload stopped: %s", exc)

    def _open_queues(self) -> None:
        """Open the queue store, make the template's queues (a second start updates their
        attributes, as a stack update would) and free what a previous run left in flight."""
        path = self.config.queue_store_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = QueueStore(path or ":memory:", region=self.region)
        except sqlite3.Error as exc:
            raise OSError(f"the queue store {path}: {exc}") from exc
        self.queues = sqs_api.QueueService(store)
        self.sqs = sqs_api.SqsApi(
            self.queues, lambda: self.sqs_endpoint, self.config.management_credentials
        )
        queues = self.config.api.queues.values()
        try:
            # Dead-letter queues must exist before a redrive policy names them: all queues
            # first, then their attributes.
            for queue in queues:
                attributes = queue.sqs_attributes(self.region)
                attributes.pop("RedrivePolicy", None)
                store.ensure_queue(queue.name, attributes)
            for queue in queues:
                store.ensure_queue(queue.name, queue.sqs_attributes(self.region))
        except QueueError as error:
            raise RuntimeError(f"cannot create the template's queues: {error.message}") from error
        released = store.release_all_in_flight()
        if released:
            log.info("%d queued message(s) in flight in the last run are visible again", released)

    def _start_pollers(self) -> None:
        assert self.queues is not None
        for source in self.config.api.event_sources:
            if not source.enabled:
                continue
            workers = self.config.max_workers_per_function
            pool = self.pools[source.function.name]
            poller = Poller(
                source,
                self.queues,
                pool.invoke,
                region=self.region,
                concurrency=min(source.maximum_concurrency or workers, workers),
            )
            poller.start()
            self.pollers[source.name] = poller

    def _function_env(self, function: FunctionSpec) -> dict[str, str]:
        env = dict(os.environ)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        # What Lambda sets in every execution environment.
        env.update(
            {
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
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
        # Clients created without an endpoint_url reach this gateway's @connections API.
        env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = self.management_url
        # ... and boto3's sqs client this gateway's queues.
        env["AWS_ENDPOINT_URL_SQS"] = self.sqs_endpoint
        if self.config.ca_bundle is not None:
            env["AWS_CA_BUNDLE"] = str(self.config.ca_bundle)
            env["NODE_EXTRA_CA_CERTS"] = str(self.config.ca_bundle)  # the JavaScript SDK's
        # The local fast path answers for both ways a handler may name this stage's endpoint.
        env["WSCHAT_WORKER_ENDPOINTS"] = ",".join(
            [self.management_url, f"https://{self.domain_name}/{self.config.stage}"]
        )
        env.update(function.environment)
        env.update(self.config.function_env)
        for name in (iam.ACCESS_KEY_ENV, iam.SECRET_KEY_ENV):
            env.pop(name, None)  # the functions get the keys below, not the gateway's settings
        credentials = self.config.management_credentials
        if credentials is not None:
            # A Lambda's role credentials sign its @connections calls; here, the keys the
            # gateway checks signatures with, so a handler's boto3 client passes. (Lambda
            # reserves these names: a function's own environment cannot replace them.)
            if env.get("AWS_ACCESS_KEY_ID") != credentials.access_key:
                env.pop("AWS_SESSION_TOKEN", None)  # it belongs to other keys
                env.pop("AWS_SECURITY_TOKEN", None)
            env["AWS_ACCESS_KEY_ID"] = credentials.access_key
            env["AWS_SECRET_ACCESS_KEY"] = credentials.secret_key
        return env

    async def serve_forever(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, close every connection with $disconnect, then stop the functions."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        for poller in self.pollers.values():
            poller.stop_receiving()
        if self.queues is not None:
            self.queues.close()  # long polls answer now, with what they have
        for ws in list(self.connections.values()):
            ws.close(1001, "Going away")
        deadline = time.monotonic() + self.config.shutdown_timeout
        # A handshake whose $connect is still running is waited for too: it opens, is closed
        # like the rest (connection_opened) and gets its $disconnect.
        while (
            self.connections or self._disconnects or self._handshakes_in_flight()
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for client in list(self.clients):
            client.abort()
        if self._disconnects:
            await asyncio.wait(
                list(self._disconnects), timeout=max(0.1, deadline - time.monotonic())
            )
        # Batches still running get what is left of the shutdown time; the messages of those
        # that do not finish become visible again (and are redelivered after a restart).
        await asyncio.gather(
            *(
                poller.stop(max(0.1, deadline - time.monotonic()))
                for poller in self.pollers.values()
            ),
            return_exceptions=True,
        )
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()), return_exceptions=True)
        if self.queues is not None:
            self.queues.store.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        log.info("gateway stopped")

    def _handshakes_in_flight(self) -> bool:
        return any(client.busy and client.ws is None for client in self.clients)

    async def _sweep(self) -> None:
        limits = self.config.limits
        interval = max(0.05, min(5.0, limits.idle_timeout / 4, limits.max_connection_duration / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for ws in list(self.connections.values()):
                if (
                    now - ws.opened_at >= limits.max_connection_duration
                    or now - ws.last_active >= limits.idle_timeout
                ):
                    ws.close(1001, "Going away")

    # --- invocations -------------------------------------------------------------------------

    async def invoke(self, route: RouteSpec, event: dict[str, Any]) -> InvocationResult:
        pool = self.pools[route.function.name]
        result = await pool.invoke(event)
        context = event["requestContext"]
        status = core.status_of(result.value) if result.ok else 500
        log.info(
            "%s %s %s %s %.1fms",
            context["connectionId"],
            route.route_key,
            route.function.name,
            status if result.ok else result.error_type,
            result.duration_ms,
        )
        result.log_failure(log, route.function.name)
        return result

    async def authorize_connection(
        self, ws: WebSocketConnection, request: http.Request
    ) -> tuple[int, dict[str, str]]:
        """Run the ``$connect`` route's authorizer, then ``$connect``; their statuses decide
        the handshake (non-2xx refuses it)."""
        if not self.ready.is_set():
            # Starting: hold the handshake until the functions are warm, within the time
            # API Gateway gives any integration; a gateway that is starting refuses nobody.
            try:
                await asyncio.wait_for(self.ready.wait(), self.config.limits.integration_timeout)
            except TimeoutError:
                return 503, {}
        if not self.accepting:  # shutting down
            return 503, {}
        route = self.config.api.routes.get(core.CONNECT)
        if route is None:
            return 200, {}
        if route.authorizer is not None:
            decision = await self._authorize(route.authorizer, ws)
            if not decision.allowed:
                log.info(
                    "%s refused by authorizer %s: %s %s",
                    ws.connection_id,
                    route.authorizer.name,
                    decision.status,
                    decision.reason,
                )
                return decision.status, {}
            ws.info.authorizer = decision.authorizer
        event = core.connect_event(self.stage_info, ws.info, int(time.time() * 1000))
        result = await self._invoke_within_integration_timeout(route, event)
        if result is None:
            return 504, {}
        if not result.ok:
            return 500, {}
        return core.status_of(result.value), core.connect_response_headers(result.value)

    async def _authorize(
        self, authorizer: AuthorizerSpec, ws: WebSocketConnection
    ) -> authorizers.Decision:
        """What API Gateway's REQUEST authorizer step decides for this handshake."""
        query: dict[str, list[str]] = {}
        for name, value in ws.info.query:
            query.setdefault(name, []).append(value)
        missing = authorizers.missing_identity(authorizer.identity_sources, ws.info.headers, query)
        if missing is not None:
            return authorizers.Decision(401, reason=f"identity source {missing} missing")
        arn = authorizers.method_arn(self.region, self.config.api_id, self.config.stage)
        context = core.connect_event(self.stage_info, ws.info, int(time.time() * 1000))
        event = authorizers.request_event(arn, ws.info.headers, query, context["requestContext"])
        pool = self.pools[authorizer.function.name]
        task = asyncio.ensure_future(pool.invoke(event))
        done, _ = await asyncio.wait({task}, timeout=self.config.limits.integration_timeout)
        if not done:
            return authorizers.Decision(500, reason="the authorizer timed out")
        result = task.result()
        if not result.ok:
            return authorizers.failure((result.error or {}).get("errorMessage"))
        return authorizers.decide(result.value, arn)

    async def _invoke_within_integration_timeout(
        self, route: RouteSpec, event: dict[str, Any]
    ) -> InvocationResult | None:
        """The invocation's result, or None when API Gateway would have stopped waiting (29 s);
        the function itself runs on until its own timeout, as on AWS."""
        task = asyncio.ensure_future(self.invoke(route, event))
        done, _ = await asyncio.wait({task}, timeout=self.config.limits.integration_timeout)
        return task.result() if done else None

    def connection_opened(self, ws: WebSocketConnection) -> None:
        self.connections[ws.connection_id] = ws
        log.info("%s connected from %s", ws.connection_id, ws.info.source_ip)
        if not self.accepting:
            # Its $connect finished after shutdown began: close it like the others.
            ws.close(1001, "Going away")

    def connection_closed(self, ws: WebSocketConnection, code: int, reason: str) -> None:
        self.connections.pop(ws.connection_id, None)
        log.info("%s disconnected (%s %s)", ws.connection_id, code, reason)
        route = self.config.api.routes.get(core.DISCONNECT)
        if route is None:
            return
        event = core.disconnect_event(
            self.stage_info, ws.info, code, reason, int(time.time() * 1000)
        )
        task = asyncio.ensure_future(self._run_disconnect(route, event))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def _run_disconnect(self, route: RouteSpec, event: dict[str, Any]) -> None:
        await self.invoke(route, event)

    async def route_message(self, ws: WebSocketConnection, body: str | bytes) -> None:
        route = core.select_route(self.config.api, body)
        now_ms = int(time.time() * 1000)
        ws.info.last_active_ms = now_ms
        if route is None:
            # No matching route and no $default: API Gateway answers Forbidden.
            reply = core.error_reply(core.FORBIDDEN, ws.connection_id, core.new_request_id())
            ws.write_frame(frame_for(reply))
            log.info("%s no route: Forbidden", ws.connection_id)
            return
        event = core.message_event(self.stage_info, ws.info, route.route_key, body, now_ms)
        request_id = event["requestContext"]["requestId"]
        result = await self._invoke_within_integration_timeout(route, event)
        if result is None:
            ws.write_frame(
                frame_for(core.error_reply(core.TIMED_OUT, ws.connection_id, request_id))
            )
        elif not result.ok:
            reply = core.error_reply(core.INTERNAL_SERVER_ERROR, ws.connection_id, request_id)
            ws.write_frame(frame_for(reply))
        elif route.two_way:
            body_out = core.route_response_body(result.value)
            if body_out is not None:
                ws.write_frame(frame_for(body_out.encode("utf-8")))

    # --- the @connections API and the fast path -----------------------------------------------

    def post_to_connection(self, connection_id: str, frame: bytes) -> bool:
        ws = self.connections.get(connection_id)
        return ws is not None and ws.write_frame(frame)

    def connection_description(self, connection_id: str) -> dict[str, Any] | None:
        ws = self.connections.get(connection_id)
        if ws is None:
            return None
        last_active = time.time() - (time.monotonic() - ws.last_active)
        # API Gateway's wire names (boto3 maps them to ConnectedAt, Identity.SourceIp, ...).
        identity: dict[str, Any] = {"sourceIp": ws.info.source_ip}
        if ws.info.user_agent:
            identity["userAgent"] = ws.info.user_agent
        return {
            "connectedAt": _iso(ws.info.connected_at_ms / 1000),
            "identity": identity,
            "lastActiveAt": _iso(last_active),
        }

    def delete_connection(self, connection_id: str) -> bool:
        ws = self.connections.get(connection_id)
        if ws is None:
            return False
        ws.close(1000, "")
        return True

    def handle_channel_call(self, message: dict[str, Any]) -> dict[str, Any]:
        """A function worker's fast-path call, answered without leaving the event loop."""
        self.fast_path_calls += 1
        return management.handle_channel_call(self, message)

    async def handle_http(self, request: http.Request, peer: str) -> bytes:
        stage_prefix = f"/{self.config.stage}/@connections"
        if request.raw_path.startswith(stage_prefix + "/") or request.raw_path == stage_prefix:
            self.management_http_requests += 1
            return management.handle_request(self, request, stage_prefix, peer)
        if self.sqs is not None and (
            request.raw_path == sqs_api.PATH_PREFIX
            or request.raw_path.startswith(sqs_api.PATH_PREFIX + "/")
        ):
            return await self.sqs.handle(request, peer)
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return http.json_response(200, {"status": "ok", "connections": len(self.connections)})
        if self.page is None:
            return http.json_response(404, {"message": "Not Found"})
        # In a thread: config.json may wait on the issuer's discovery document.
        answer = await asyncio.to_thread(self.page.respond, request.method, request.path)
        headers = dict(answer.headers)
        content_type = headers.pop("Content-Type")
        return http.response(answer.status, answer.body, content_type=content_type, headers=headers)

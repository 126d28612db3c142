"""The local gateway's lifecycle and pipeline: connections in, Lambda invocations out.

``Gateway`` owns the listening socket and puts the parts together: the open connections
(``registry``), the functions (``invoker``), the plain HTTP the port serves (``http.HttpRoutes``:
@connections, SQS, /healthz; a caller mounts more, as ``wschat serve`` mounts the chat page),
and the route pipeline from a frame to an invocation and back. ``core`` decides what API
Gateway would do; this module does it. The template's SQS queues live in ``queues`` (a SQLite
file in the data dir), served over HTTP by ``sqs_api`` and polled for functions by
``event_sources``. It knows nothing of the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wschat.delivery.sigv4 import Credentials
from wschat.gateway import authorizers, core, http, sqs_api
from wschat.gateway.connection import ClientProtocol, WebSocketConnection, frame_for
from wschat.gateway.debugging import DebugTarget
from wschat.gateway.event_sources import EventSourceCounters, Poller
from wschat.gateway.invoker import Invoker, LambdaEnvironment, region, within
from wschat.gateway.management import ManagementApi
from wschat.gateway.queues import QueueError, QueueStore
from wschat.gateway.registry import ConnectionRegistry
from wschat.gateway.spec import ApiSpec, AuthorizerSpec, RouteSpec
from wschat.gateway.workers import FunctionPool, InvocationResult

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
    # Functions run under debugpy (--debug), by FunctionSpec.name; their timeouts stop while
    # a debugger holds them.
    debug: dict[str, DebugTarget] = field(default_factory=dict)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.connections = ConnectionRegistry()
        self.clients: set[ClientProtocol] = set()
        self.invoker: Invoker | None = None  # made at start, when the port is known
        self.management = ManagementApi(
            self.connections,
            config.stage,
            credentials=config.management_credentials,
            max_message_bytes=config.limits.max_message_bytes,
        )
        # Plain HTTP on the port; a caller may mount more before start (wschat serve: the
        # chat page on /).
        self.http = http.HttpRoutes()
        self.http.mount(self.management.prefix, self.management.handle)
        self.http.mount("/healthz", self._health)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._disconnects: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = config.port
        self.accepting = False
        # Set once the functions are warm: a handshake that arrives while they warm up waits
        # for it (the port is open from the start, so a client that waits for the port must
        # not be turned away by a gateway that is only starting).
        self.ready = asyncio.Event()
        self.queues: sqs_api.QueueService | None = None
        self.sqs: sqs_api.SqsApi | None = None
        self.pollers: dict[str, Poller] = {}

    # --- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls(self) -> bool:
        return self.config.ssl_context is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def domain_name(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def websocket_url(self) -> str:
        ws = "wss" if self.tls else "ws"
        return f"{ws}://{self.domain_name}/{self.config.stage}"

    @property
    def management_url(self) -> str:
        return f"{self.scheme}://{self.domain_name}/{self.config.stage}"

    @property
    def sqs_endpoint(self) -> str:
        """What functions get as AWS_ENDPOINT_URL_SQS."""
        return f"{self.scheme}://{self.domain_name}{sqs_api.PATH_PREFIX}"

    @property
    def http_url(self) -> str:
        """The port's root, where mounted HTTP handlers answer."""
        return f"{self.scheme}://{self.domain_name}/"

    @property
    def region(self) -> str:
        return region()

    @property
    def stage_info(self) -> core.StageInfo:
        return core.StageInfo(self.config.api_id, self.config.stage, self.domain_name)

    # --- what tests and benchmarks read ------------------------------------------------------

    @property
    def pools(self) -> dict[str, FunctionPool]:
        return self.invoker.pools if self.invoker is not None else {}

    @property
    def management_http_requests(self) -> int:
        return self.management.http_requests

    @property
    def fast_path_calls(self) -> int:
        return self.management.fast_path_calls

    @property
    def sqs_requests(self) -> int:
        """SQS API requests served over HTTP (boto3's sqs client from functions or tests)."""
        return self.sqs.requests if self.sqs is not None else 0

    @property
    def event_source_counters(self) -> dict[str, EventSourceCounters]:
        return {name: poller.counters for name, poller in self.pollers.items()}

    # --- lifecycle ---------------------------------------------------------------------------

    def lambda_environment(self) -> LambdaEnvironment:
        """What the functions' processes get: endpoints back to this gateway (once its port
        is known), the command line's variables and credentials."""
        return LambdaEnvironment(
            management_url=self.management_url,
            sqs_endpoint=self.sqs_endpoint,
            # The local fast path answers for both ways a handler may name this stage.
            fast_path_endpoints=(
                self.management_url,
                f"https://{self.domain_name}/{self.config.stage}",
            ),
            ca_bundle=self.config.ca_bundle,
            extra=self.config.function_env,
            credentials=self.config.management_credentials,
        )

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
        self._port = self._server.sockets[0].getsockname()[1]
        self.invoker = Invoker(
            self.config.api.functions,
            self.lambda_environment(),
            self.management,
            max_workers=self.config.max_workers_per_function,
            debug=self.config.debug,
        )
        await self.invoker.warm_up()
        self._start_pollers()
        self._sweeper = asyncio.create_task(self._sweep())
        if self.config.reload:
            # The gateway's own data (SQLite files, queues) may sit under a code directory (a
            # template with CodeUri "." and ./data): writing it is no code change.
            data = self.config.queue_store_path
            self._watcher = asyncio.create_task(
                self.invoker.watch(ignore=data.parent if data is not None else None)
            )
        self.accepting = True
        self.ready.set()

    def _open_queues(self) -> None:
        """Open the queue store, make the template's queues (a second start updates their
        attributes, as a stack update would), free what a previous run left in flight and
        mount the SQS API."""
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
        self.http.mount(sqs_api.PATH_PREFIX, self.sqs.handle)
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
            poller = Poller(
                source,
                self.queues,
                self.pools[source.function.name].invoke,
                region=self.region,
                concurrency=min(source.maximum_concurrency or workers, workers),
            )
            poller.start()
            self.pollers[source.name] = poller

    async def serve_forever(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, close every connection with $disconnect, then stop the functions."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
        for task in (self._sweeper, self._watcher):
            if task is not None:
                task.cancel()
        for poller in self.pollers.values():
            poller.stop_receiving()
        if self.queues is not None:
            self.queues.close()  # long polls answer now, with what they have
        self.connections.close_all()
        deadline = time.monotonic() + self.config.shutdown_timeout
        # A handshake whose $connect is still running is waited for too: it opens, is closed
        # like the rest (connection_opened) and gets its $disconnect.
        while (
            len(self.connections) or self._disconnects or self._handshakes_in_flight()
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
        if self.invoker is not None:
            await self.invoker.stop()
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
            self.connections.close_expired(limits)

    # --- ConnectionHost: what each client connection asks of the gateway ----------------------

    @property
    def limits(self) -> core.Limits:
        return self.config.limits

    @property
    def http_request_timeout(self) -> float:
        return self.config.http_request_timeout

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def client_opened(self, client: ClientProtocol) -> None:
        self.clients.add(client)

    def client_closed(self, client: ClientProtocol) -> None:
        self.clients.discard(client)

    async def handle_http(self, request: http.Request, peer: str) -> bytes:
        return await self.http.handle(request, peer)

    async def _health(self, request: http.Request, peer: str) -> bytes:
        if request.path != "/healthz" or request.method not in ("GET", "HEAD"):
            return http.json_response(404, {"message": "Not Found"})
        return http.json_response(200, {"status": "ok", "connections": len(self.connections)})

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
        result = await self._integrate(route, event)
        if result is None:
            return 504, {}
        if not result.ok:
            return 500, {}
        return core.status_of(result.value), core.connect_response_headers(result.value)

    def connection_opened(self, ws: WebSocketConnection) -> None:
        self.connections.add(ws)
        log.info("%s connected from %s", ws.connection_id, ws.info.source_ip)
        if not self.accepting:
            # Its $connect finished after shutdown began: close it like the others.
            ws.close(1001, "Going away")

    def connection_closed(self, ws: WebSocketConnection, code: int, reason: str) -> None:
        self.connections.remove(ws)
        log.info("%s disconnected (%s %s)", ws.connection_id, code, reason)
        route = self.config.api.routes.get(core.DISCONNECT)
        if route is None:
            return
        event = core.disconnect_event(
            self.stage_info, ws.info, code, reason, int(time.time() * 1000)
        )
        task = asyncio.ensure_future(self._run_route(route, event))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

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
        result = await self._integrate(route, event)
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

    # --- invocations -------------------------------------------------------------------------

    async def _run_route(self, route: RouteSpec, event: dict[str, Any]) -> InvocationResult:
        assert self.invoker is not None
        result = await self.invoker.invoke(route.function, event)
        context = event["requestContext"]
        log.info(
            "%s %s %s %s %.1fms",
            context["connectionId"],
            route.route_key,
            route.function.name,
            core.status_of(result.value) if result.ok else result.error_type,
            result.duration_ms,
        )
        return result

    async def _integrate(self, route: RouteSpec, event: dict[str, Any]) -> InvocationResult | None:
        """The route's invocation, or None when API Gateway would have stopped waiting."""
        return await within(
            self._run_route(route, event),
            self.config.limits.integration_timeout,
            self.pools[route.function.name].debugger,
        )

    async def _authorize(
        self, authorizer: AuthorizerSpec, ws: WebSocketConnection
    ) -> authorizers.Decision:
        """What API Gateway's REQUEST authorizer step decides for this handshake."""
        assert self.invoker is not None
        query: dict[str, list[str]] = {}
        for name, value in ws.info.query:
            query.setdefault(name, []).append(value)
        missing = authorizers.missing_identity(authorizer.identity_sources, ws.info.headers, query)
        if missing is not None:
            return authorizers.Decision(401, reason=f"identity source {missing} missing")
        arn = authorizers.method_arn(self.region, self.config.api_id, self.config.stage)
        context = core.connect_event(self.stage_info, ws.info, int(time.time() * 1000))
        event = authorizers.request_event(arn, ws.info.headers, query, context["requestContext"])
        result = await within(
            self.invoker.invoke(authorizer.function, event),
            self.config.limits.integration_timeout,
            self.pools[authorizer.function.name].debugger,
        )
        if result is None:
            return authorizers.Decision(500, reason="the authorizer timed out")
        if not result.ok:
            return authorizers.failure((result.error or {}).get("errorMessage"))
        return authorizers.decide(result.value, arn)

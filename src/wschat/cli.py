"""The ``wschat`` command: ``serve`` runs the local gateway, ``client`` chats in a terminal,
``token`` issues a token for a chat with auth on.

This module only parses arguments and builds a GatewayConfig; the gateway owns the lifecycle,
and ``wschat.local`` what serving the chat itself adds to it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wschat.chat import registry

if TYPE_CHECKING:
    from wschat.gateway.debugging import DebugTarget
    from wschat.gateway.spec import ApiSpec

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_TEMPLATE = PACKAGE_DIR.parent.parent / "template.yaml"

# Every route of the chat, from its registry: what `wschat serve` runs without a template.
OWN_ROUTES = [f"{key}={handler}" for key, handler in registry.routes().items()]


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wschat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the local API Gateway WebSocket gateway",
        description="Serve a WebSocket API locally the way API Gateway runs it: routes from a "
        "SAM/CloudFormation template (default: this project's) or from --route options.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free)")
    serve.add_argument("--stage", default="local", help="stage name in the URL (default local)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("WSCHAT_DATA_DIR", "data")),
        help="where the embedded store and TLS files live (default ./data)",
    )
    serve.add_argument(
        "--store",
        choices=("sqlite", "dynamodb"),
        default="sqlite",
        help="sqlite: embedded file in --data-dir (default); dynamodb: the table named in the "
        "template, through the standard AWS environment (AWS_ENDPOINT_URL_DYNAMODB, ...)",
    )
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--template", type=Path, help="SAM/CloudFormation template to serve")
    source.add_argument(
        "--route",
        action="append",
        metavar="KEY=MODULE.FUNCTION",
        help="a route and its handler, e.g. '$connect=app.on_connect' (repeatable)",
    )
    serve.add_argument(
        "--parameter",
        action="append",
        type=_env_pair,
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    serve.add_argument("--api", help="logical id of the WebSocket API when a template has several")
    serve.add_argument(
        "--no-reload",
        dest="reload",
        action="store_false",
        help="do not restart a function's warm environments when its code changes "
        "(by default a change under a function's code directory is picked up by its next "
        "invocation; open connections stay open)",
    )
    serve.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for every function, over the template's own (repeatable); "
        "e.g. AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:5000 for a local DynamoDB",
    )
    serve.add_argument(
        "--code-dir",
        type=Path,
        default=Path.cwd(),
        help="code directory for --route functions (default: current directory)",
    )
    serve.add_argument("--route-selection-expression", default="$request.body.action")
    serve.add_argument(
        "--route-response",
        action="append",
        default=[],
        metavar="ROUTE_KEY",
        help="give a --route route a route response (repeatable): the body its handler "
        "returns is sent back to the sender, as on a two-way route of API Gateway",
    )
    serve.add_argument(
        "--function-timeout",
        type=float,
        default=3.0,
        help="timeout of --route functions in seconds (Lambda's default: 3)",
    )
    serve.add_argument(
        "--tls", action="store_true", help="serve wss:// and https:// with a local CA"
    )
    serve.add_argument("--idle-timeout", type=float, default=600.0, help="seconds (default 600)")
    serve.add_argument("--max-duration", type=float, default=7200.0, help="seconds (default 7200)")
    serve.add_argument(
        "--integration-timeout", type=float, default=29.0, help="seconds (default 29)"
    )
    serve.add_argument("--max-message-bytes", type=int, default=128 * 1024)
    serve.add_argument("--max-frame-bytes", type=int, default=32 * 1024)
    serve.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="warm execution environments per function, at most (default 2)",
    )
    serve.add_argument(
        "--management-credentials",
        metavar="ACCESS_KEY:SECRET",
        help="require every @connections request to be signed (AWS Signature V4, service "
        "execute-api, any region) with these keys, as API Gateway's IAM auth does; the functions "
        "get them as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. Default: "
        "$WSCHAT_MANAGEMENT_ACCESS_KEY_ID and $WSCHAT_MANAGEMENT_SECRET_ACCESS_KEY (which keep the "
        "secret out of the process list); without either, @connections answers 127.0.0.1 only",
    )
    serve.add_argument(
        "--log-level",
        default=os.environ.get("WSCHAT_LOG_LEVEL"),
        help="the gateway's log level, and the functions' LOG_LEVEL (overriding the template's) "
        "so they do not format and pipe lines the gateway would drop. Default: "
        "$WSCHAT_LOG_LEVEL; without it, INFO for the gateway and the template's LOG_LEVEL for "
        "the functions",
    )
    serve.add_argument(
        "--debug",
        action="append",
        default=[],
        metavar="FUNCTION[:PORT]",
        help="run FUNCTION (a template's logical id; the handler string for --route) under "
        "debugpy, listening on 127.0.0.1:PORT for VS Code or any DAP client (repeatable; "
        "default ports 5678, 5679, ... in the order given). It gets one warm environment, and "
        "its timeouts stop while a debugger is attached",
    )
    serve.add_argument(
        "--debug-wait",
        action="store_true",
        help="with --debug: each debugged function waits for its debugger to attach before "
        "importing its handler (for breakpoints in module code); its invocations wait too",
    )
    client = sub.add_parser(
        "client",
        help="chat in the terminal",
        description="Connect to a wschat stage (local or on AWS) and chat line by line.",
    )
    client.add_argument(
        "url", nargs="?", default="ws://127.0.0.1:8000/local", help="WebSocket URL of the stage"
    )
    client.add_argument("--name", help="your name (default: a guest name)")
    client.add_argument("--room", default="lobby", help="room to talk in (default lobby)")
    client.add_argument(
        "--token",
        default=os.environ.get("WSCHAT_TOKEN"),
        help="token for a chat with auth on (default: $WSCHAT_TOKEN)",
    )

    token = sub.add_parser(
        "token",
        help="issue a token for a user (when the chat runs with WSCHAT_AUTH_SECRET)",
        description="Print an HS256 JWT whose subject is NAME, for ?token= on connect.",
    )
    token.add_argument("name", help="the user name the token carries")
    token.add_argument(
        "--secret",
        default=os.environ.get("WSCHAT_AUTH_SECRET"),
        help="signing secret (default: $WSCHAT_AUTH_SECRET)",
    )
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds valid (default 12 h)")
    return parser


def issue_token(args: argparse.Namespace) -> int:
    from wschat.auth import issue_token as make_token
    from wschat.protocol import ProtocolError

    if not args.secret:
        print("wschat token: no secret: pass --secret or set WSCHAT_AUTH_SECRET", file=sys.stderr)
        return 2
    try:
        print(make_token(args.name, args.secret, ttl_seconds=args.ttl))
    except ProtocolError as exc:
        print(f"wschat token: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _load_api(args: argparse.Namespace) -> object:
    from wschat.gateway import template

    if args.route:
        return template.api_from_routes(
            args.route,
            environment=dict(args.env),
            code_dir=args.code_dir.resolve(),
            timeout=args.function_timeout,
            route_selection_expression=args.route_selection_expression,
            route_responses=args.route_response,
        )
    path = args.template or (REPO_TEMPLATE if REPO_TEMPLATE.exists() else None)
    if path is not None:
        return template.load_api(path, parameters=dict(args.parameter), api_name=args.api)
    # Installed without the repository: serve our own handlers from the installed package.
    return template.api_from_routes(
        OWN_ROUTES,
        environment={"WEBSOCKET_TABLE": "websocket-connections"},
        code_dir=PACKAGE_DIR.parent,
        timeout=10.0,
    )


def _debug_targets(args: argparse.Namespace, api: ApiSpec) -> dict[str, DebugTarget]:
    """--debug's functions and ports, checked against the API's functions (ValueError)."""
    from wschat.gateway import debugging

    if args.debug_wait and not args.debug:
        raise ValueError("--debug-wait needs --debug FUNCTION")
    targets = debugging.parse_targets(args.debug, wait=args.debug_wait)
    debugging.check_functions(targets, (function.name for function in api.functions))
    for function in api.functions:
        if function.name in targets and function.is_node:
            raise ValueError(
                f"--debug runs Python functions under debugpy; {function.name} is "
                f"{function.runtime} (debug it with node --inspect outside the gateway)"
            )
    debugging.check_ports_free(targets.values())
    if targets:
        import importlib.util

        if importlib.util.find_spec("debugpy") is None:
            raise ValueError("--debug needs debugpy: pip install debugpy")
    return targets


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the gateway's loop spends most of its time
    in transport writes and selector wake-ups, which uvloop does in C); asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(args: argparse.Namespace) -> int:
    from wschat import local
    from wschat.auth import AuthMisconfigured
    from wschat.gateway import core, iam, tls
    from wschat.gateway.server import Gateway, GatewayConfig
    from wschat.gateway.spec import ApiSpec
    from wschat.gateway.template import TemplateError

    logging.basicConfig(
        level=(args.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)-5s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.route_response and not args.route:
        print(
            "wschat serve: --route-response is for --route routes; a template's routes "
            "have RouteResponse resources",
            file=sys.stderr,
        )
        return 2
    try:
        api = _load_api(args)
    except (TemplateError, OSError) as exc:
        print(f"wschat serve: {exc}", file=sys.stderr)
        return 2
    assert isinstance(api, ApiSpec)
    chat = local.serves_the_chat(api)
    try:
        sign_in = local.page_sign_in(api) if chat else None
    except AuthMisconfigured as exc:
        print(f"wschat serve: the chat page's sign-in: {exc}", file=sys.stderr)
        return 2
    try:
        credentials = (
            iam.parse_credentials(args.management_credentials)
            if args.management_credentials is not None
            else iam.credentials_from_env()
        )
    except ValueError as exc:
        print(f"wschat serve: management credentials: {exc}", file=sys.stderr)
        return 2
    try:
        debug = _debug_targets(args, api)
    except ValueError as exc:
        print(f"wschat serve: {exc}", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    function_env = local.store_environment(args.store, data_dir) if chat else {}
    if args.log_level:
        function_env["LOG_LEVEL"] = args.log_level.upper()
    function_env.update(args.env)  # what the command line says wins over the template
    config = GatewayConfig(
        api=api,
        host=args.host,
        port=args.port,
        stage=args.stage,
        limits=core.Limits(
            max_message_bytes=args.max_message_bytes,
            max_frame_bytes=args.max_frame_bytes,
            idle_timeout=args.idle_timeout,
            max_connection_duration=args.max_duration,
            integration_timeout=args.integration_timeout,
        ),
        function_env=function_env,
        max_workers_per_function=args.concurrency,
        management_credentials=credentials,
        queue_store_path=data_dir / "queues.sqlite3",
        reload=args.reload,
        debug=debug,
    )
    if args.tls:
        files = tls.ensure_certificates(data_dir / "tls")
        config.ssl_context = files.server_context()
        config.ca_bundle = files.ca_cert

    async def main() -> None:
        # Before anything is printed: a signal sent as soon as the URLs appear must stop the
        # gateway gracefully, not kill the process.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        gateway = Gateway(config)
        if chat:
            local.mount_page(gateway, sign_in)
        await gateway.start()
        store = f", store: {args.store}" if chat else ""
        print(f"wschat gateway ({api.name}, {len(api.routes)} routes{store})")
        print(f"  WebSocket:   {gateway.websocket_url}")
        print(f"  @connections: {gateway.management_url}/@connections/{{connectionId}}")
        if chat:
            print(f"  Chat page:   {gateway.http_url}")
        print(f"  Health:      {gateway.http_url}healthz")
        if sign_in is not None:
            print(f"  Sign-in:     {sign_in.issuer}")
        if api.queues:
            names = ", ".join(sorted(api.queues))
            print(f"  SQS:         {gateway.sqs_endpoint} ({names})")
        if config.ca_bundle is not None:
            print(f"  CA bundle:   {config.ca_bundle}")
        if credentials is not None:
            print(f"  IAM auth:    @connections needs SigV4 with key {credentials.access_key}")
        else:
            print("  IAM auth:    none; @connections answers this machine (loopback) only")
        for target in debug.values():
            waits = " (it waits for you)" if target.wait else ""
            print(f"Debugger for {target.function}: attach to {target.address}{waits}")
        print("Press Ctrl+C to stop.", flush=True)
        # What start-up made lives as long as the gateway: out of the collector's sight, so
        # its full collections walk the connections, not every module and route.
        gc.freeze()
        await gateway.serve_forever(stop)

    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(main())
    except OSError as exc:  # the port, the data dir, its queue file
        print(f"wschat serve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "token":
        return issue_token(args)
    if args.command == "client":
        from wschat.client import run_client

        return run_client(args.url, name=args.name, room=args.room, token=args.token)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

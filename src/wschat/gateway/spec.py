"""What the gateway serves: an API's route selection expression and its routes' functions, and
the SQS queues and event sources (queue -> function) of the same template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROUTE_SELECTION = "$request.body.action"
DEFAULT_TIMEOUT_SECONDS = 3.0  # Lambda's default function timeout
DEFAULT_MEMORY_MB = 128
DEFAULT_RUNTIME = "python3.12"
# The Lambda runtimes the gateway runs: any python3.x, and Node.js from 18 (the oldest Lambda
# still runs; older ones cannot be created or updated any more).
_PYTHON_RUNTIME = re.compile(r"^python3\.\d+$")
_NODE_RUNTIME = re.compile(r"^nodejs(\d+)\.x$")
MIN_NODE_MAJOR = 18


def runtime_language(runtime: str) -> str | None:
    """ "python" or "nodejs" for a runtime the gateway runs, None for any other."""
    if _PYTHON_RUNTIME.match(runtime):
        return "python"
    node = _NODE_RUNTIME.match(runtime)
    if node and int(node.group(1)) >= MIN_NODE_MAJOR:
        return "nodejs"
    return None


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: where its code is and how it runs."""

    name: str  # the template's logical id, or the handler string for --route
    handler: str  # "package.module.function" (Python), "dir/file.export" (Node.js)
    code_dir: Path  # the working directory and where the handler is found, like /var/task
    environment: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB
    runtime: str = DEFAULT_RUNTIME  # the template's Runtime, one runtime_language knows

    @property
    def is_node(self) -> bool:
        return runtime_language(self.runtime) == "nodejs"


@dataclass(frozen=True)
class AuthorizerSpec:
    """A Lambda REQUEST authorizer (``AWS::ApiGatewayV2::Authorizer``) on ``$connect``."""

    name: str  # the template's logical id
    function: FunctionSpec
    identity_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteSpec:
    """One route key bound to a function; ``two_way`` when the route has a route response,
    in which case the handler's returned ``body`` is sent back to the caller; ``authorizer``
    (``$connect`` only) runs before it."""

    route_key: str
    function: FunctionSpec
    two_way: bool = False
    authorizer: AuthorizerSpec | None = None


@dataclass(frozen=True)
class QueueSpec:
    """An ``AWS::SQS::Queue``: its name and the attributes SQS would give it (defaults SQS's)."""

    name: str
    visibility_timeout: int = 30
    message_retention_period: int = 4 * 24 * 60 * 60
    delay_seconds: int = 0
    receive_message_wait_time: int = 0
    maximum_message_size: int = 256 * 1024
    dead_letter_queue: str | None = None  # a queue name
    max_receive_count: int | None = None

    def sqs_attributes(self, region: str, account_id: str = "123456789012") -> dict[str, str]:
        """The queue's attributes as SetQueueAttributes takes them."""
        attributes = {
            "VisibilityTimeout": str(self.visibility_timeout),
            "MessageRetentionPeriod": str(self.message_retention_period),
            "DelaySeconds": str(self.delay_seconds),
            "ReceiveMessageWaitTimeSeconds": str(self.receive_message_wait_time),
            "MaximumMessageSize": str(self.maximum_message_size),
        }
        if self.dead_letter_queue is not None and self.max_receive_count is not None:
            target = f"arn:aws:sqs:{region}:{account_id}:{self.dead_letter_queue}"
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": target, "maxReceiveCount": self.max_receive_count}
            )
        return attributes


@dataclass(frozen=True)
class EventSourceSpec:
    """An SQS event source mapping (SAM ``Events: Type: SQS`` or
    ``AWS::Lambda::EventSourceMapping``): Lambda polls ``queue`` and invokes ``function``."""

    name: str  # the mapping's logical id, or "{function}.{event}" for a SAM event
    function: FunctionSpec
    queue: str  # a queue name
    batch_size: int = 10
    maximum_batching_window: float = 0.0  # seconds
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ApiSpec:
    """A WebSocket API: its route selection expression and routes by key, plus the template's
    queues (by name) and SQS event sources."""

    name: str
    routes: dict[str, RouteSpec]
    route_selection_expression: str = DEFAULT_ROUTE_SELECTION
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    event_sources: list[EventSourceSpec] = field(default_factory=list)

    @property
    def functions(self) -> list[FunctionSpec]:
        """Every function the gateway runs: behind a route or an event source."""
        seen: dict[str, FunctionSpec] = {}
        for route in self.routes.values():
            seen.setdefault(route.function.name, route.function)
            if route.authorizer is not None:
                seen.setdefault(route.authorizer.function.name, route.authorizer.function)
        for source in self.event_sources:
            seen.setdefault(source.function.name, source.function)
        return list(seen.values())

"""Reads an ApiSpec from a SAM or CloudFormation template, or from ``--route`` options.

A template is read the way API Gateway wires it: the ``AWS::ApiGatewayV2::Api`` with
ProtocolType WEBSOCKET, its ``Route`` resources, each route's ``Target`` ("integrations/<id>"),
that integration's ``IntegrationUri`` (a Lambda invocation URI) and the function behind it, with
SAM's ``Globals.Function`` merged in. A function's code is its local directory, or, in what
``cdk synth`` writes, the asset directory its ``aws:asset:path`` Metadata names. Intrinsic
functions resolve to local stand-ins (see ``intrinsics``). Anything that cannot run locally is a
``TemplateError`` naming the template and the logical id at fault.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final

import yaml

from wschat.gateway.authorizers import AuthorizerConfigError, check_identity_sources
from wschat.gateway.core import CONNECT, DISCONNECT
from wschat.gateway.intrinsics import FUNCTION_TYPES, QUEUE_TYPE, Resolver, TemplateError
from wschat.gateway.spec import (
    DEFAULT_MEMORY_MB,
    DEFAULT_ROUTE_SELECTION,
    DEFAULT_RUNTIME,
    DEFAULT_TIMEOUT_SECONDS,
    MIN_NODE_MAJOR,
    ApiSpec,
    AuthorizerSpec,
    EventSourceSpec,
    FunctionSpec,
    QueueSpec,
    RouteSpec,
    runtime_language,
)

__all__ = [
    "CloudFormationLoader",
    "TemplateError",
    "api_from_routes",
    "load_api",
    "parse_route_option",
    "read_template",
]

_API: Final = "AWS::ApiGatewayV2::Api"
_ROUTE: Final = "AWS::ApiGatewayV2::Route"
_AUTHORIZER: Final = "AWS::ApiGatewayV2::Authorizer"
_ROUTE_RESPONSE: Final = "AWS::ApiGatewayV2::RouteResponse"
_INTEGRATION: Final = "AWS::ApiGatewayV2::Integration"
_SAM_FUNCTION: Final = "AWS::Serverless::Function"
_EVENT_SOURCE_MAPPING: Final = "AWS::Lambda::EventSourceMapping"
_SQS_ARN: Final = re.compile(r"^arn:[^:]+:sqs:[^:]*:[^:]*:([A-Za-z0-9_.-]{1,80})$")
# What a queue's properties say that matters locally; the rest (SSE, KMS, Tags) may hold values
# only AWS knows and is not resolved.
_QUEUE_PROPERTIES: Final = {
    "VisibilityTimeout": ("visibility_timeout", 0, 43200),
    "MessageRetentionPeriod": ("message_retention_period", 60, 1209600),
    "DelaySeconds": ("delay_seconds", 0, 900),
    "ReceiveMessageWaitTimeSeconds": ("receive_message_wait_time", 0, 20),
    "MaximumMessageSize": ("maximum_message_size", 1024, 262144),
}
# arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function arn}/invocations
_INVOCATION_URI: Final = re.compile(
    r"^arn:[^:]+:apigateway:[^:]*:lambda:path/[^/]+/functions/(.+)/invocations$"
)
_FUNCTION_ARN: Final = re.compile(r"^arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:]+)(?::[^:]+)?$")
_FUNCTION_PROPERTIES: Final = frozenset(
    {"Handler", "Runtime", "CodeUri", "InlineCode", "Code"}
    | {"PackageType", "Timeout", "MemorySize", "Environment"}
)
_HANDLER: Final = re.compile(r"^[\w/.-]+\.[A-Za-z_]\w*$")
_CODE_PROPERTIES: Final = frozenset({"CodeUri", "InlineCode", "Code"})
# Lambda's Node.js runtime splits the part after the last "/" at its first ".": the file (no
# extension: index.js, .mjs or .cjs) and the export, which may be a path (index.api.onMessage).
_NODE_HANDLER: Final = re.compile(r"^(?:[\w.-]+/)*[\w-]+\.[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$")


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !GetAtt, !Sub, ...) read into their
    long forms ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...). Timestamps stay strings, as
    CloudFormation passes them."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, dot, attribute = value.partition(".")
        if not dot:
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt {value!r} must be LogicalId.Attribute", node.start_mark
            )
        value = [logical_id, attribute]
    return {f"Fn::{suffix}": value}


_SHORT_FORMS: Final = (
    {"Ref", "Condition", "GetAtt", "Sub", "Join", "Select", "Split", "If", "Equals", "Not"}
    | {"And", "Or", "FindInMap", "ImportValue", "Base64", "GetAZs", "Cidr", "Length"}
    | {"ToJsonString", "Transform"}
)


def _constructor(suffix: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    return lambda loader, node: _construct_tag(loader, suffix, node)


for _suffix in _SHORT_FORMS:
    CloudFormationLoader.add_constructor(f"!{_suffix}", _constructor(_suffix))


def read_template(path: Path) -> dict[str, Any]:
    """The template at ``path`` (YAML or JSON) as plain data, intrinsics in long form."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read template: {exc.strerror or exc}") from exc
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=CloudFormationLoader)  # a SafeLoader
    except (ValueError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: not a valid template: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return data


def load_api(
    path: str | Path,
    *,
    parameters: dict[str, str] | None = None,
    api_name: str | None = None,
) -> ApiSpec:
    """The WebSocket API in the template at ``path``; ``api_name`` (a logical id) picks one when
    the template has several, ``parameters`` override the template's Parameters."""
    path = Path(path)
    return _TemplateReader(path, read_template(path), parameters).api(api_name)


class _TemplateReader:
    def __init__(
        self, path: Path, template: dict[str, Any], parameters: dict[str, str] | None
    ) -> None:
        self.source = str(path)
        self.directory = path.resolve().parent
        self.resolver = Resolver(template, source=self.source, parameters=parameters)
        self.resources = self.resolver.resources
        sam_globals = template.get("Globals")
        function_globals = sam_globals.get("Function") if isinstance(sam_globals, dict) else None
        self.function_globals: dict[str, Any] = (
            function_globals if isinstance(function_globals, dict) else {}
        )
        self.functions: dict[str, FunctionSpec] = {}

    def error(self, where: str, message: str) -> TemplateError:
        return self.resolver.error(where, message)

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of one type, logical id to Properties."""
        return {
            logical_id: resource.get("Properties") or {}
            for logical_id, resource in self.resources.items()
            if resource["Type"] == kind
        }

    def api(self, api_name: str | None) -> ApiSpec:
        websocket = {
            logical_id: properties
            for logical_id, properties in self.of_type(_API).items()
            if self.resolver.resolve(properties.get("ProtocolType"), f"API {logical_id}")
            == "WEBSOCKET"
        }
        names = ", ".join(websocket) or "none"
        if api_name is not None and api_name not in websocket:
            raise TemplateError(
                f"{self.source}: no WebSocket API {api_name!r} (WebSocket APIs: {names})"
            )
        if api_name is None and len(websocket) != 1:
            if not websocket:
                raise TemplateError(
                    f"{self.source}: no {_API} with ProtocolType WEBSOCKET in Resources"
                )
            raise TemplateError(
                f"{self.source}: several WebSocket APIs ({names});"
                " pick one by logical id (wschat serve --api)"
            )
        logical_id = api_name or next(iter(websocket))
        properties = websocket[logical_id]
        where = f"API {logical_id}"
        api_id = self.resolver.physical_id(logical_id, where)
        selection = properties.get("RouteSelectionExpression", DEFAULT_ROUTE_SELECTION)
        name = properties.get("Name", logical_id)
        routes = self.routes(api_id)
        if not routes:
            raise self.error(where, f"the API has no {_ROUTE} resources")
        queues = self.queues()
        return ApiSpec(
            name=self.resolver.resolve_string(name, where, "Name"),
            routes=routes,
            route_selection_expression=self.resolver.resolve_string(
                selection, where, "RouteSelectionExpression"
            ),
            queues=queues,
            event_sources=self.event_sources(queues),
        )

    # --- SQS queues and event sources ----------------------------------------------------------

    def queues(self) -> dict[str, QueueSpec]:
        """Every AWS::SQS::Queue, by queue name; FIFO queues are refused (not run locally)."""
        queues: dict[str, QueueSpec] = {}
        for logical_id, properties in self.of_type(QUEUE_TYPE).items():
            where = f"queue {logical_id}"
            name = self.resolver.physical_id(logical_id, where)
            fifo = self.resolver.resolve(properties.get("FifoQueue"), where)
            if name.endswith(".fifo") or str(fifo).lower() == "true":
                raise self.error(
                    where, "FIFO queues are not run locally (the local gateway has standard queues)"
                )
            values: dict[str, Any] = {}
            for key, (attribute, low, high) in _QUEUE_PROPERTIES.items():
                if properties.get(key) is not None:
                    values[attribute] = self.integer(properties[key], where, key, low, high)
            redrive = self.resolver.resolve(properties.get("RedrivePolicy"), where)
            if isinstance(redrive, str) and redrive.strip():
                try:
                    redrive = json.loads(redrive)
                except ValueError:
                    raise self.error(where, "RedrivePolicy is not JSON") from None
            if isinstance(redrive, dict) and redrive:
                target = redrive.get("deadLetterTargetArn")
                values["dead_letter_queue"] = self.queue_name_of_arn(target, where)
                values["max_receive_count"] = self.integer(
                    redrive.get("maxReceiveCount"), where, "RedrivePolicy maxReceiveCount", 1, 1000
                )
            elif redrive is not None and not isinstance(redrive, dict | str):
                raise self.error(where, "RedrivePolicy must be a mapping or a JSON string")
            queues[name] = QueueSpec(name=name, **values)
        # A dead-letter queue made outside the template (its ARN a parameter): made locally.
        outside = {queue.dead_letter_queue for queue in queues.values()} - set(queues) - {None}
        queues.update({name: QueueSpec(name) for name in sorted(n for n in outside if n)})
        return queues

    def integer(self, value: Any, where: str, what: str, low: int, high: int) -> int:
        text = self.resolver.resolve_string(value, where, what)
        if not text.isdigit() or not low <= int(text) <= high:
            raise self.error(where, f"{what} {text!r} must be an integer from {low} to {high}")
        return int(text)

    def queue_name_of_arn(self, value: Any, where: str) -> str:
        arn = self.resolver.resolve_string(value, where, "queue ARN")
        match = _SQS_ARN.match(arn)
        if match is None:
            raise self.error(where, f"{arn!r} is not an SQS queue ARN")
        return match.group(1)

    def event_sources(self, queues: dict[str, QueueSpec]) -> list[EventSourceSpec]:
        """SAM functions' ``Events`` of Type SQS and AWS::Lambda::EventSourceMapping resources
        whose source is a queue (streams and others are not run locally: skipped)."""
        sources: list[EventSourceSpec] = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] != _SAM_FUNCTION:
                continue
            events = (resource.get("Properties") or {}).get("Events") or {}
            if not isinstance(events, dict):
                raise self.error(f"function {logical_id}", "Events must be a mapping")
            for event_id, event in events.items():
                if not isinstance(event, dict) or event.get("Type") != "SQS":
                    continue
                where = f"function {logical_id} event {event_id}"
                properties = self.resolver.resolve(event.get("Properties") or {}, where)
                if not isinstance(properties, dict) or "Queue" not in properties:
                    raise self.error(where, "an SQS event needs Properties.Queue (a queue ARN)")
                sources.append(
                    self.event_source(
                        f"{logical_id}.{event_id}",
                        logical_id,
                        properties["Queue"],
                        properties,
                        where,
                    )
                )
        for logical_id, raw in self.of_type(_EVENT_SOURCE_MAPPING).items():
            where = f"event source mapping {logical_id}"
            properties = self.resolver.resolve(raw, where)
            source_arn = str(properties.get("EventSourceArn", ""))
            if not _SQS_ARN.match(source_arn):
                continue  # a stream, Kafka, MQ...: not run locally
            function_id = self.function_named(
                self.resolver.stringify(properties.get("FunctionName"), where, "FunctionName"),
                where,
            )
            sources.append(
                self.event_source(logical_id, function_id, source_arn, properties, where)
            )
        for source in sources:
            if source.queue not in queues:
                # A queue made outside the template (its ARN a parameter): made locally.
                queues[source.queue] = QueueSpec(source.queue)
            if queues[source.queue].visibility_timeout < source.function.timeout:
                raise self.error(
                    f"event source {source.name}",
                    f"queue {source.queue}'s VisibilityTimeout "
                    f"({queues[source.queue].visibility_timeout} s) is less than function "
                    f"{source.function.name}'s Timeout ({source.function.timeout:g} s); "
                    "Lambda refuses such a mapping",
                )
        return sources

    def event_source(
        self,
        name: str,
        function_id: str,
        queue_arn: Any,
        properties: dict[str, Any],
        where: str,
    ) -> EventSourceSpec:
        queue = self.queue_name_of_arn(queue_arn, where)
        if queue.endswith(".fifo"):
            raise self.error(where, "FIFO queues are not run locally")
        window = properties.get("MaximumBatchingWindowInSeconds", 0)
        batch_size = self.integer(properties.get("BatchSize", 10), where, "BatchSize", 1, 10000)
        if batch_size > 10 and not window:
            raise self.error(
                where, "a BatchSize over 10 needs MaximumBatchingWindowInSeconds (Lambda's rule)"
            )
        response_types = properties.get("FunctionResponseTypes") or []
        if not isinstance(response_types, list):
            raise self.error(where, "FunctionResponseTypes must be a list")
        scaling = properties.get("ScalingConfig") or {}
        concurrency = scaling.get("MaximumConcurrency") if isinstance(scaling, dict) else None
        enabled = properties.get("Enabled", True)
        return EventSourceSpec(
            name=name,
            function=self.function(function_id),
            queue=queue,
            batch_size=batch_size,
            maximum_batching_window=float(
                self.integer(window, where, "MaximumBatchingWindowInSeconds", 0, 300)
            ),
            report_batch_item_failures="ReportBatchItemFailures" in response_types,
            maximum_concurrency=(
                None
                if concurrency is None
                else self.integer(concurrency, where, "MaximumConcurrency", 2, 1000)
            ),
            enabled=str(enabled).lower() != "false",
        )

    def function_named(self, name: str, where: str) -> str:
        """The logical id of the function a FunctionName names (a name or a function ARN)."""
        function_arn = _FUNCTION_ARN.match(name)
        wanted = function_arn.group(1) if function_arn else name
        for function_id, resource in self.resources.items():
            if resource["Type"] in FUNCTION_TYPES and wanted in (
                self.function_name(function_id),
                function_id,
            ):
                return function_id
        raise self.error(where, f"FunctionName {name!r} is not a function in this template")

    def belongs(self, properties: dict[str, Any], api_id: str, where: str) -> bool:
        return bool(self.resolver.resolve(properties.get("ApiId"), where) == api_id)

    def routes(self, api_id: str) -> dict[str, RouteSpec]:
        # A route answers its caller when it has a route response (API Gateway's "two-way").
        answered = {
            self.resolver.resolve(properties.get("RouteId"), f"route response {logical_id}")
            for logical_id, properties in self.of_type(_ROUTE_RESPONSE).items()
            if self.belongs(properties, api_id, f"route response {logical_id}")
        }
        routes: dict[str, RouteSpec] = {}
        for logical_id, properties in self.of_type(_ROUTE).items():
            where = f"route {logical_id}"
            if not self.belongs(properties, api_id, where):
                continue
            route_key = self.resolver.resolve_string(properties.get("RouteKey"), where, "RouteKey")
            if route_key in routes:
                raise self.error(where, f"route key {route_key!r} is declared twice")
            two_way = bool(properties.get("RouteResponseSelectionExpression")) or (
                self.resolver.physical_id(logical_id, where) in answered
            )
            integration_id = self.route_integration(logical_id, properties, api_id)
            function = self.function(self.integration_function(integration_id))
            authorizer = self.route_authorizer(logical_id, properties, route_key, api_id)
            routes[route_key] = RouteSpec(
                route_key, function, two_way=two_way, authorizer=authorizer
            )
        return routes

    def route_authorizer(
        self, logical_id: str, properties: dict[str, Any], route_key: str, api_id: str
    ) -> AuthorizerSpec | None:
        """The route's Lambda REQUEST authorizer, if its AuthorizationType is CUSTOM."""
        where = f"route {logical_id}"
        kind = str(self.resolver.resolve(properties.get("AuthorizationType") or "NONE", where))
        if kind == "NONE":
            return None
        if route_key != "$connect":
            raise self.error(where, f"AuthorizationType {kind}: only $connect can be authorized")
        if kind == "AWS_IAM":
            raise self.error(
                where,
                "AuthorizationType AWS_IAM (SigV4-signed handshakes) is not emulated locally;"
                " use a Lambda REQUEST authorizer (CUSTOM) or NONE",
            )
        if kind != "CUSTOM":
            raise self.error(where, f"AuthorizationType {kind!r} is not NONE, AWS_IAM or CUSTOM")
        raw = self.resolver.chosen(properties.get("AuthorizerId"), where)
        authorizer_id = raw.get("Ref") if isinstance(raw, dict) else raw
        resource = self.resources.get(str(authorizer_id))
        if resource is None or resource["Type"] != _AUTHORIZER:
            raise self.error(where, f"AuthorizerId {raw!r} is not an {_AUTHORIZER} here")
        at = f"authorizer {authorizer_id}"
        authorizer = resource.get("Properties") or {}
        if not self.belongs(authorizer, api_id, at):
            raise self.error(at, "belongs to another API")
        if self.resolver.resolve(authorizer.get("AuthorizerType"), at) != "REQUEST":
            raise self.error(at, "only AuthorizerType REQUEST (a Lambda function) is run locally")
        uri = self.resolver.resolve_string(authorizer.get("AuthorizerUri"), at, "AuthorizerUri")
        sources = self.resolver.resolve(authorizer.get("IdentitySource") or [], at)
        if isinstance(sources, str):
            sources = [part.strip() for part in sources.split(",") if part.strip()]
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise self.error(at, "IdentitySource must be a list of strings")
        try:
            check_identity_sources(sources)
        except AuthorizerConfigError as exc:
            raise self.error(at, str(exc)) from None
        function = self.function(self.function_invoked_by(uri, at, "AuthorizerUri"))
        return AuthorizerSpec(str(authorizer_id), function, tuple(sources))

    def route_integration(self, logical_id: str, properties: dict[str, Any], api_id: str) -> str:
        """The logical id of the integration a route targets."""
        where = f"route {logical_id}"
        if properties.get("Target") is None:
            raise self.error(where, "has no Target, so nothing handles it")
        target = self.resolver.resolve_string(properties["Target"], where, "Target")
        integration_id = target.removeprefix("integrations/")
        if integration_id == target:
            raise self.error(where, f"Target {target!r} is not integrations/<IntegrationId>")
        resource = self.resources.get(integration_id)
        if resource is None:
            raise TemplateError(
                f"{self.source}: route {logical_id} targets integration {integration_id!r}"
                " which is not in Resources"
            )
        if resource["Type"] != _INTEGRATION:
            raise self.error(where, f"Target {integration_id} is a {resource['Type']}")
        if not self.belongs(resource.get("Properties") or {}, api_id, where):
            raise self.error(where, f"integration {integration_id} belongs to another API")
        return integration_id

    def integration_function(self, integration_id: str) -> str:
        """The logical id of the function an integration invokes."""
        where = f"integration {integration_id}"
        integration = self.resources[integration_id].get("Properties") or {}
        kind = self.resolver.resolve(integration.get("IntegrationType"), where)
        if kind != "AWS_PROXY":
            raise self.error(
                where, f"IntegrationType {kind} is not run locally; only AWS_PROXY (Lambda proxy)"
            )
        uri = self.resolver.resolve_string(integration.get("IntegrationUri"), where, "URI")
        return self.function_invoked_by(uri, where, "IntegrationUri")

    def function_invoked_by(self, uri: str, where: str, key: str) -> str:
        """The logical id of the template's function an invocation URI (or ARN) names."""
        invocation = _INVOCATION_URI.match(uri)
        function_arn = _FUNCTION_ARN.match(invocation.group(1) if invocation else uri)
        if function_arn is None:
            raise self.error(where, f"{key} {uri!r} does not invoke a Lambda function")
        function_name = function_arn.group(1)
        for function_id, resource in self.resources.items():
            if resource["Type"] in FUNCTION_TYPES and function_name == self.function_name(
                function_id
            ):
                return function_id
        raise self.error(where, f"{key} invokes {function_name!r}, not in this template")

    def function_name(self, logical_id: str) -> str | None:
        """A function's name as its ARN carries it, None when it cannot be known locally (then
        no integration can be shown to invoke it)."""
        try:
            return self.resolver.physical_id(logical_id, f"function {logical_id}")
        except TemplateError:
            return None

    def function(self, logical_id: str) -> FunctionSpec:
        if logical_id not in self.functions:
            self.functions[logical_id] = self.read_function(logical_id)
        return self.functions[logical_id]

    def read_function(self, logical_id: str) -> FunctionSpec:
        resource = self.resources[logical_id]
        where = f"function {logical_id}"
        properties: dict[str, Any] = resource.get("Properties") or {}
        if resource["Type"] == _SAM_FUNCTION:
            properties = _merge(self.function_globals, properties)
        asset = self.asset_dir(resource, where)
        # Only what runs locally is resolved: Policies, Role or VpcConfig may hold values that
        # exist only on AWS (Fn::ImportValue) and must not stop a local run; nor may the S3
        # location of code that is here as an asset (the CDK's legacy synthesizer names it by
        # parameters that have no Default).
        wanted = _FUNCTION_PROPERTIES - _CODE_PROPERTIES if asset else _FUNCTION_PROPERTIES
        value = self.resolver.resolve(
            {key: item for key, item in properties.items() if key in wanted}, where
        )
        if value.get("PackageType") == "Image":
            raise self.error(where, "container image functions are not run locally")
        runtime = str(value.get("Runtime", DEFAULT_RUNTIME))
        if runtime_language(runtime) is None:
            raise self.error(
                where,
                f"Runtime {runtime} is not run locally: the gateway runs python3.x and"
                f" nodejs{MIN_NODE_MAJOR}.x or later",
            )
        handler = value.get("Handler")
        if not isinstance(handler, str):
            raise self.error(where, "has no Handler")
        environment = value.get("Environment") or {}
        variables = environment.get("Variables") if isinstance(environment, dict) else None
        if not isinstance(variables or {}, dict):
            raise self.error(where, "Environment.Variables must be a mapping")
        return FunctionSpec(
            name=logical_id,
            handler=_check_handler(handler, f"{self.source}: {where}", runtime),
            code_dir=asset or self.code_dir(resource["Type"], value, where, runtime),
            environment={
                str(key): self.resolver.stringify(item, where, f"environment variable {key}")
                for key, item in (variables or {}).items()
            },
            timeout=self.number(value, "Timeout", DEFAULT_TIMEOUT_SECONDS, where),
            memory_mb=int(self.number(value, "MemorySize", DEFAULT_MEMORY_MB, where)),
            runtime=runtime,
        )

    def number(self, properties: dict[str, Any], key: str, default: float, where: str) -> float:
        value = properties.get(key, default)
        try:
            number = float(self.resolver.stringify(value, where, key))
        except ValueError:
            raise self.error(where, f"{key} {value!r} is not a number") from None
        if number <= 0:
            raise self.error(where, f"{key} {value!r} must be positive")
        return number

    def asset_dir(self, resource: dict[str, Any], where: str) -> Path | None:
        """The function's code as a CDK asset: the directory its ``aws:asset:path`` Metadata
        names (relative to the template, as ``cdk synth`` stages it into cdk.out), when
        ``aws:asset:property`` says it is the function's code; None without such metadata.
        SAM CLI reads the same keys. A bundled asset (``aws:asset:is-bundled``) is its bundling's
        output directory, which runs the same way."""
        metadata = resource.get("Metadata")
        if not isinstance(metadata, dict) or metadata.get("aws:asset:path") is None:
            return None
        code_property = "CodeUri" if resource["Type"] == _SAM_FUNCTION else "Code"
        if metadata.get("aws:asset:property") != code_property:
            return None  # an asset for another property (an image's Code.ImageUri, ...)
        path = metadata["aws:asset:path"]
        if not isinstance(path, str) or not path:
            raise self.error(where, f"Metadata aws:asset:path {path!r} is not a path")
        directory = (self.directory / path).resolve()
        if directory.is_file():
            raise self.error(
                where,
                f"asset {path!r} is a file (an archive); the local gateway runs a code"
                " directory: give Code.from_asset the unpacked directory",
            )
        if not directory.is_dir():
            raise self.error(
                where,
                f"asset directory {path!r} (Metadata aws:asset:path) does not exist"
                f" ({directory}); synthesize again (cdk synth) to stage it",
            )
        return directory

    def code_dir(self, kind: str, properties: dict[str, Any], where: str, runtime: str) -> Path:
        if kind == _SAM_FUNCTION:
            if "InlineCode" in properties:
                return _inline_code_dir(
                    self.resolver.stringify(properties["InlineCode"], where, "InlineCode"),
                    runtime,
                )
            code = properties.get("CodeUri", ".")  # SAM CLI's default too
            if not isinstance(code, str):
                raise self.error(
                    where,
                    f"CodeUri {code!r} is in S3; point CodeUri at the local source directory",
                )
        else:
            code = properties.get("Code")
            if isinstance(code, dict) and "ZipFile" in code:
                return _inline_code_dir(
                    self.resolver.stringify(code["ZipFile"], where, "ZipFile"), runtime
                )
            if not isinstance(code, str):
                raise self.error(
                    where,
                    f"Code {code!r} is not local; set Code to the source directory's path"
                    " (as `aws cloudformation package` takes it) or use ZipFile",
                )
        directory = (self.directory / code).resolve()
        if not directory.is_dir():
            raise self.error(where, f"code directory {code!r} does not exist ({directory})")
        return directory


def _merge(defaults: Any, overrides: Any) -> Any:
    """SAM's Globals merge: mappings merge key by key, anything else the function's own wins."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return overrides
    if any(key == "Ref" or str(key).startswith("Fn::") for key in (*defaults, *overrides)):
        return overrides  # an intrinsic is a value, not a mapping to merge into
    merged = dict(defaults)
    for key, value in overrides.items():
        merged[key] = _merge(defaults[key], value) if key in defaults else value
    return merged


def _inline_code_dir(source: str, runtime: str) -> Path:
    """Inline code (ZipFile, InlineCode) runs as index.py or index.js, as on Lambda; the directory
    is named by the code's hash so loading the same template twice writes nothing new."""
    name = "index.js" if runtime_language(runtime) == "nodejs" else "index.py"
    digest = hashlib.sha256(f"{name}\0{source}".encode()).hexdigest()[:16]
    directory = Path(tempfile.gettempdir()) / "wschat-inline-code" / digest
    module = directory / name
    if not module.exists() or module.read_text(encoding="utf-8") != source:
        directory.mkdir(parents=True, exist_ok=True)
        module.write_text(source, encoding="utf-8")
    return directory


def _check_handler(handler: str, where: str, runtime: str = DEFAULT_RUNTIME) -> str:
    """The handler as the runtime reads it: Python's ``module.function`` ("dir/module.fn" is
    "dir.module.fn"), Node.js's ``dir/file.export`` as it is."""
    if runtime_language(runtime) == "nodejs":
        if not _NODE_HANDLER.match(handler) or ".." in handler.split("/"):
            raise TemplateError(
                f"{where}: handler {handler!r} is not file.export (e.g. index.handler)"
            )
        return handler
    if not _HANDLER.match(handler):
        raise TemplateError(f"{where}: handler {handler!r} is not module.function")
    return handler.replace("/", ".")


def parse_route_option(text: str) -> tuple[str, str]:
    """``$connect=app.handlers.on_connect`` -> ("$connect", "app.handlers.on_connect")."""
    route_key, equals, handler = text.rpartition("=")
    route_key, handler = route_key.strip(), handler.strip()
    if not equals or not route_key:
        raise TemplateError(
            f"--route {text!r}: expected ROUTE_KEY=module.function, e.g. '$connect=app.on_connect'"
        )
    return route_key, _check_handler(handler, f"--route {text!r}")


def api_from_routes(
    routes: list[str],
    *,
    environment: dict[str, str],
    code_dir: Path,
    timeout: float,
    route_selection_expression: str = DEFAULT_ROUTE_SELECTION,
    name: str = "local",
    route_responses: Collection[str] = (),
) -> ApiSpec:
    """An API from ``--route`` options: one function per distinct handler, all sharing
    ``environment``, ``code_dir`` and ``timeout``. The routes in ``route_responses`` are
    two-way, as a route with a route response is on API Gateway: the handler's returned
    ``body`` goes back to the sender."""
    if not routes:
        raise TemplateError("--route: give at least one route, e.g. '$default=app.handler'")
    if not code_dir.is_dir():
        raise TemplateError(f"--route: code directory {code_dir} does not exist")
    functions: dict[str, FunctionSpec] = {}
    specs: dict[str, RouteSpec] = {}
    for text in routes:
        route_key, handler = parse_route_option(text)
        if route_key in specs:
            raise TemplateError(f"--route {text!r}: route {route_key!r} is given twice")
        function = functions.setdefault(
            handler,
            FunctionSpec(
                name=handler,
                handler=handler,
                code_dir=code_dir.resolve(),
                environment=dict(environment),
                timeout=timeout,
            ),
        )
        specs[route_key] = RouteSpec(route_key, function, two_way=route_key in route_responses)
    for route_key in route_responses:
        if route_key not in specs:
            raise TemplateError(f"--route-response {route_key!r}: no --route has that key")
        if route_key in (CONNECT, DISCONNECT):
            # $connect's answer is the handshake, and $disconnect's client is gone.
            raise TemplateError(f"--route-response {route_key!r}: only message routes reply")
    return ApiSpec(name=name, routes=specs, route_selection_expression=route_selection_expression)

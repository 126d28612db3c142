"""CloudFormation intrinsic functions, resolved to the values a local run needs.

There is no stack on one machine, so every Ref and Fn::GetAtt gets a stand-in: a parameter is its
override or Default, a resource its physical name (a table's TableName, a function's FunctionName,
else the logical id), an ``Arn`` attribute a well-formed fake ARN in account 123456789012, and a
pseudo parameter a fixed local value (stack name ``local``). Conditions are evaluated, so
``Fn::If`` and a resource's ``Condition`` behave as on deploy. What only AWS can know, such as
``Fn::ImportValue``, raises ``TemplateError`` when, and only when, a value depends on it.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

ACCOUNT_ID: Final = "123456789012"
STACK_NAME: Final = "local"
DEFAULT_REGION: Final = "us-east-1"


class TemplateError(ValueError):
    """A template (or ``--route`` option) the local gateway cannot run; the message names the
    template path and the logical id at fault."""


class _NoValue:
    """``Ref: AWS::NoValue``: the property it sits in is removed, as on deploy."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()

# Ref of these resource types returns the value of a name property when it is set.
_NAME_PROPERTY: Final = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::DynamoDB::GlobalTable": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
}
QUEUE_TYPE: Final = "AWS::SQS::Queue"
_TABLE_TYPES: Final = frozenset(
    {"AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable", "AWS::Serverless::SimpleTable"}
)
FUNCTION_TYPES: Final = frozenset({"AWS::Lambda::Function", "AWS::Serverless::Function"})
_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


def _is_intrinsic(value: dict[Any, Any]) -> bool:
    if len(value) != 1:
        return False
    ((name, argument),) = value.items()
    # {"Condition": name} only inside Fn::And/Or/Not; elsewhere "Condition" may be a property
    return (
        name == "Ref"
        or name in _FUNCTION_NAMES
        or (name == "Condition" and isinstance(argument, str))
    )


class Resolver:
    """Resolves one template's intrinsic functions; ``where`` arguments ("function SendFn")
    name the logical id in error messages."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        source: str,
        parameters: Mapping[str, str] | None = None,
        region: str | None = None,
    ) -> None:
        self.source = source
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ) or DEFAULT_REGION
        self._declared: dict[str, Any] = self._section(template, "Parameters")
        self.mappings: dict[str, Any] = self._section(template, "Mappings")
        self._conditions: dict[str, Any] = self._section(template, "Conditions")
        self._overrides = dict(parameters or {})
        for name in self._overrides:
            if name not in self._declared:
                declared = ", ".join(self._declared) or "none"
                raise TemplateError(
                    f"{source}: parameter override {name!r} is not declared in Parameters"
                    f" (declared: {declared})"
                )
        self._condition_values: dict[str, bool] = {}
        self._in_progress: list[str] = []
        all_resources = self._section(template, "Resources")
        self._skipped: dict[str, str] = {}  # logical id -> the false Condition that removed it
        self.resources: dict[str, dict[str, Any]] = {}
        for logical_id, resource in all_resources.items():
            if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
                raise TemplateError(f"{source}: resource {logical_id} has no Type")
            condition = resource.get("Condition")
            if condition is not None and not self.condition(condition, f"resource {logical_id}"):
                self._skipped[logical_id] = str(condition)
            else:
                self.resources[logical_id] = resource

    def _section(self, template: Mapping[str, Any], key: str) -> dict[str, Any]:
        section = template.get(key) or {}
        if not isinstance(section, dict):
            raise TemplateError(f"{self.source}: {key} must be a mapping")
        return section

    def error(self, where: str, message: str) -> TemplateError:
        return TemplateError(f"{self.source}: {where}: {message}")

    @contextmanager
    def _guard(self, key: str, where: str) -> Iterator[None]:
        if key in self._in_progress:
            cycle = " -> ".join([*self._in_progress, key])
            raise self.error(where, f"circular reference: {cycle}")
        self._in_progress.append(key)
        try:
            yield
        finally:
            self._in_progress.pop()

    # -- values ------------------------------------------------------------------------------

    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every intrinsic function replaced by its local value; keys and list
        items that resolve to ``AWS::NoValue`` are dropped (the result itself may be NO_VALUE)."""
        if isinstance(value, dict):
            if _is_intrinsic(value):
                ((name, argument),) = value.items()
                if name == "Ref":
                    return self.ref(argument, where)
                if name == "Condition":
                    return self.condition(argument, where)
                return _FUNCTIONS[name](self, argument, where)
            unknown = [key for key in value if isinstance(key, str) and key.startswith("Fn::")]
            if len(value) == 1 and unknown:
                raise self.error(where, f"unsupported intrinsic function {unknown[0]}")
            resolved = {key: self.resolve(item, where) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(item, where) for item in value]
            return [item for item in items if item is not NO_VALUE]
        return value

    def resolve_string(self, value: Any, where: str, what: str) -> str:
        return self.stringify(self.resolve(value, where), where, what)

    def stringify(self, value: Any, where: str, what: str) -> str:
        """A scalar as CloudFormation passes it to a string property: true -> "true", 5 -> "5"."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        kind = "nothing" if value is None or value is NO_VALUE else type(value).__name__
        raise self.error(where, f"{what} must be a string, got {kind}")

    # -- Ref and Fn::GetAtt --------------------------------------------------------------------

    def ref(self, name: Any, where: str) -> Any:
        if not isinstance(name, str):
            raise self.error(where, f"Ref takes a name, got {name!r}")
        if name.startswith("AWS::"):
            return self._pseudo(name, where)
        if name in self._declared:
            return self._parameter(name, where)
        logical_id = self._resource(name, where)
        if self.resources[logical_id]["Type"] == QUEUE_TYPE:
            return self.queue_url(logical_id, where)  # a queue's Ref is its URL
        return self.physical_id(logical_id, where)

    def queue_url(self, logical_id: str, where: str) -> str:
        """The AWS form; the local SQS API takes a QueueUrl by its last segment, the name."""
        name = self.physical_id(logical_id, where)
        return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"

    def _pseudo(self, name: str, where: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/"
            f"{STACK_NAME}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise self.error(where, f"unknown pseudo parameter {name}")
        return values[name]

    def _parameter(self, name: str, where: str) -> Any:
        declared = self._declared[name] or {}
        kind = str(declared.get("Type", "String"))
        if name in self._overrides:
            value = self._overrides[name]
        elif kind.startswith("AWS::SSM::Parameter::Value"):
            raise self.error(
                where,
                f"parameter {name} is read from SSM at deploy time; pass its value"
                f" (wschat serve --parameter {name}=VALUE)",
            )
        elif "Default" in declared:
            value = self.stringify(declared["Default"], where, f"Default of parameter {name}")
        else:
            raise self.error(
                where,
                f"parameter {name} has no Default; pass its value"
                f" (wschat serve --parameter {name}=VALUE)",
            )
        allowed = declared.get("AllowedValues")
        if isinstance(allowed, list) and value not in [str(item) for item in allowed]:
            raise self.error(where, f"parameter {name}={value!r} is not one of {allowed}")
        pattern = declared.get("AllowedPattern")
        if isinstance(pattern, str) and not re.fullmatch(pattern, value):
            raise self.error(where, f"parameter {name}={value!r} does not match {pattern!r}")
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            return value.split(",")
        return value

    def _resource(self, logical_id: str, where: str) -> str:
        if logical_id in self.resources:
            return logical_id
        if logical_id in self._skipped:
            condition = self._skipped[logical_id]
            raise self.error(
                where, f"{logical_id} is not created: its Condition {condition} is false"
            )
        raise self.error(where, f"{logical_id!r} is neither a parameter nor a resource")

    def physical_id(self, logical_id: str, where: str) -> str:
        """What Ref returns for a resource here: its name property if it has one, else its id."""
        resource = self.resources[logical_id]
        name_property = _NAME_PROPERTY.get(resource["Type"])
        properties = resource.get("Properties") or {}
        if name_property is None or properties.get(name_property) is None:
            if resource["Type"] == QUEUE_TYPE:
                # CloudFormation generates "{stack}-{LogicalId}-{random}"; a fixed name keeps
                # the queue (and what is queued) across gateway restarts.
                return f"{STACK_NAME}-{logical_id}"[:80]
            return logical_id
        with self._guard(logical_id, where):
            name = self.resolve(properties[name_property], f"resource {logical_id}")
        if name is NO_VALUE:
            return logical_id
        return self.stringify(name, f"resource {logical_id}", name_property)

    def get_att(self, argument: Any, where: str) -> str:
        if isinstance(argument, str) and "." in argument:
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(where, f"Fn::GetAtt takes [LogicalId, Attribute], got {argument!r}")
        logical_id = self._resource(self.resolve_string(argument[0], where, "GetAtt id"), where)
        attribute = self.resolve_string(argument[1], where, "GetAtt attribute")
        kind = self.resources[logical_id]["Type"]
        if attribute == "Arn":
            return self.arn(logical_id, where)
        if kind in _TABLE_TYPES and attribute == "StreamArn":
            return f"{self.arn(logical_id, where)}/stream/1970-01-01T00:00:00.000"
        if kind == "AWS::ApiGatewayV2::Api" and attribute == "ApiId":
            return self.physical_id(logical_id, where)
        if kind == QUEUE_TYPE and attribute == "QueueName":
            return self.physical_id(logical_id, where)
        if kind == QUEUE_TYPE and attribute == "QueueUrl":
            return self.queue_url(logical_id, where)
        return f"{logical_id}.{attribute}"

    def arn(self, logical_id: str, where: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_id(logical_id, where)
        prefix = f"arn:aws:{{}}:{self.region}:{ACCOUNT_ID}"
        if kind in _TABLE_TYPES:
            return f"{prefix.format('dynamodb')}:table/{name}"
        if kind in FUNCTION_TYPES:
            return f"{prefix.format('lambda')}:function:{name}"
        if kind == QUEUE_TYPE:
            return f"{prefix.format('sqs')}:{name}"
        _, service, resource_type = [*kind.split("::"), "", ""][:3]
        return f"{prefix.format(service.lower())}:{resource_type.lower()}/{name}"

    # -- conditions ----------------------------------------------------------------------------

    def chosen(self, value: Any, where: str) -> Any:
        """``value`` with its outer ``Fn::If`` choices made and nothing else resolved: what a
        property that names a resource (``{"Ref": id}``) names under these conditions."""
        while isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
            argument = value["Fn::If"]
            if not isinstance(argument, list) or len(argument) != 3:
                raise self.error(
                    where, f"Fn::If takes [condition, if true, if false]: {argument!r}"
                )
            name, if_true, if_false = argument
            value = if_true if self.condition(name, where) else if_false
        if value == {"Ref": "AWS::NoValue"}:
            return None
        return value

    def condition(self, name: Any, where: str) -> bool:
        if not isinstance(name, str):
            raise self.error(where, f"a condition is named by a string, got {name!r}")
        if name not in self._condition_values:
            if name not in self._conditions:
                raise self.error(where, f"condition {name!r} is not in Conditions")
            with self._guard(f"Conditions.{name}", where):
                value = self.truth(self._conditions[name], f"condition {name}")
            self._condition_values[name] = value
        return self._condition_values[name]

    def truth(self, value: Any, where: str) -> bool:
        resolved = self.resolve(value, where)
        if isinstance(resolved, bool):
            return resolved
        if isinstance(resolved, str) and resolved.lower() in ("true", "false"):
            return resolved.lower() == "true"
        raise self.error(where, f"expected a condition, got {resolved!r}")


# -- the functions, by name ----------------------------------------------------------------------


def _arguments(resolver: Resolver, argument: Any, count: int, name: str, where: str) -> list[Any]:
    if not isinstance(argument, list) or len(argument) != count:
        raise resolver.error(where, f"{name} takes a list of {count} items, got {argument!r}")
    return argument


def _sub(resolver: Resolver, argument: Any, where: str) -> str:
    variables: dict[str, Any] = {}
    if isinstance(argument, list):
        text, variables = _arguments(resolver, argument, 2, "Fn::Sub", where)
        if not isinstance(variables, dict):
            raise resolver.error(where, "Fn::Sub's second item must be a mapping of variables")
    else:
        text = argument
    if not isinstance(text, str):
        raise resolver.error(where, f"Fn::Sub takes a string, got {text!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!Literal} is written out as ${Literal}
            return "${" + name[1:] + "}"
        name = name.strip()
        if name in variables:
            value = resolver.resolve(variables[name], where)
        elif "." in name and not name.startswith("AWS::"):  # ${Resource.Attribute}
            value = resolver.get_att(name, where)
        else:
            value = resolver.ref(name, where)
        return resolver.stringify(value, where, f"Fn::Sub variable ${{{name}}}")

    return _SUB_VARIABLE.sub(replace, text)


def _join(resolver: Resolver, argument: Any, where: str) -> str:
    delimiter, items = _arguments(resolver, argument, 2, "Fn::Join", where)
    items = resolver.resolve(items, where)
    if not isinstance(items, list):
        raise resolver.error(where, f"Fn::Join joins a list, got {items!r}")
    separator = resolver.resolve_string(delimiter, where, "Fn::Join delimiter")
    return separator.join(resolver.stringify(item, where, "Fn::Join item") for item in items)


def _select(resolver: Resolver, argument: Any, where: str) -> Any:
    index, items = _arguments(resolver, argument, 2, "Fn::Select", where)
    position = resolver.resolve_string(index, where, "Fn::Select index")
    items = resolver.resolve(items, where)
    if not isinstance(items, list) or not position.isdigit() or int(position) >= len(items):
        raise resolver.error(where, f"Fn::Select index {position} is not in {items!r}")
    return items[int(position)]


def _split(resolver: Resolver, argument: Any, where: str) -> list[str]:
    delimiter, text = _arguments(resolver, argument, 2, "Fn::Split", where)
    separator = resolver.resolve_string(delimiter, where, "Fn::Split delimiter")
    return resolver.resolve_string(text, where, "Fn::Split source").split(separator)


def _if(resolver: Resolver, argument: Any, where: str) -> Any:
    name, if_true, if_false = _arguments(resolver, argument, 3, "Fn::If", where)
    return resolver.resolve(if_true if resolver.condition(name, where) else if_false, where)


def _equals(resolver: Resolver, argument: Any, where: str) -> bool:
    left, right = _arguments(resolver, argument, 2, "Fn::Equals", where)
    return resolver.resolve_string(left, where, "Fn::Equals value") == resolver.resolve_string(
        right, where, "Fn::Equals value"
    )


def _not(resolver: Resolver, argument: Any, where: str) -> bool:
    (operand,) = _arguments(resolver, argument, 1, "Fn::Not", where)
    return not resolver.truth(operand, where)


def _conditions(resolver: Resolver, argument: Any, name: str, where: str) -> list[bool]:
    if not isinstance(argument, list) or not argument:
        raise resolver.error(where, f"{name} takes a list of conditions, got {argument!r}")
    return [resolver.truth(operand, where) for operand in argument]


def _find_in_map(resolver: Resolver, argument: Any, where: str) -> Any:
    keys = [
        resolver.resolve_string(key, where, "Fn::FindInMap key")
        for key in _arguments(resolver, argument, 3, "Fn::FindInMap", where)
    ]
    value: Any = resolver.mappings
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            path = ".".join(keys[: depth + 1])
            raise resolver.error(where, f"Fn::FindInMap: {path} is not in Mappings")
        value = value[key]
    return resolver.resolve(value, where)


def _import_value(resolver: Resolver, argument: Any, where: str) -> Any:
    raise resolver.error(
        where,
        f"Fn::ImportValue {argument!r} reads another stack's export and cannot be resolved"
        " locally; make it a template parameter and pass its value (--parameter NAME=VALUE)",
    )


def _base64(resolver: Resolver, argument: Any, where: str) -> str:
    text = resolver.resolve_string(argument, where, "Fn::Base64 value")
    return base64.b64encode(text.encode()).decode("ascii")


def _get_azs(resolver: Resolver, argument: Any, where: str) -> list[str]:
    region = resolver.resolve_string(argument, where, "Fn::GetAZs region") or resolver.region
    return [f"{region}{zone}" for zone in "abc"]


_FUNCTIONS: Final[dict[str, Callable[[Resolver, Any, str], Any]]] = {
    "Fn::GetAtt": lambda resolver, argument, where: resolver.get_att(argument, where),
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": lambda resolver, argument, where: all(
        _conditions(resolver, argument, "Fn::And", where)
    ),
    "Fn::Or": lambda resolver, argument, where: any(
        _conditions(resolver, argument, "Fn::Or", where)
    ),
    "Fn::FindInMap": _find_in_map,
    "Fn::ImportValue": _import_value,
    "Fn::Base64": _base64,
    "Fn::GetAZs": _get_azs,
}
_FUNCTION_NAMES: Final = frozenset(_FUNCTIONS)

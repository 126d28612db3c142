"""template.yaml, checked offline: cfn-lint, least-privilege IAM, the routes, the table, and that
every Handler string names a function ``sam build`` will actually ship (src/ plus
src/requirements.txt, with boto3 from the Lambda runtime)."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import inspect
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REQUIREMENTS_PATH = ROOT / "src" / "requirements.txt"

TABLE = "ConnectionsTable"
TABLE_ARN = {"Fn::GetAtt": [TABLE, "Arn"]}
MANAGE_CONNECTIONS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    "${Api}/${StageName}/POST/@connections/*"
}

# route key -> (function logical id, handler): the seed's routes, one function each.
ROUTES = {
    "$connect": ("ConnectFunction", "wschat.handlers.connect.lambda_handler"),
    "$disconnect": ("DisconnectFunction", "wschat.handlers.disconnect.lambda_handler"),
    "sendMessage": ("SendMessageFunction", "wschat.handlers.send_message.lambda_handler"),
    "$default": ("DefaultFunction", "wschat.handlers.default.lambda_handler"),
}

# What each function may do, and on what: exactly what its handler calls, nothing more.
# sendMessage deletes the records of connections that answer 410 Gone; $default only replies to
# the sender through @connections and never touches the table.
ALLOWED = {
    "ConnectFunction": {"dynamodb:PutItem": TABLE_ARN},
    "DisconnectFunction": {"dynamodb:DeleteItem": TABLE_ARN},
    "SendMessageFunction": {
        "dynamodb:Scan": TABLE_ARN,
        "dynamodb:DeleteItem": TABLE_ARN,
        "execute-api:ManageConnections": MANAGE_CONNECTIONS_ARN,
    },
    "DefaultFunction": {"execute-api:ManageConnections": MANAGE_CONNECTIONS_ARN},
}

# Distributions the python3.12 Lambda runtime provides (boto3 and what it pulls in).
RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
}


# --- CloudFormation YAML ----------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation's short-form tags as their long-form dicts:
    ``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``,
    ``!Sub s`` -> ``{"Fn::Sub": "s"}`` and so on for every ``!Name``."""


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        document = yaml.load(f, Loader=CfnLoader)  # a SafeLoader: no arbitrary objects
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources_of_type(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == type_name
    }


def function_properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties with the template's Globals merged in, as SAM merges them
    (maps merge key by key, the function's own value wins)."""

    def merge(base: Any, own: Any) -> Any:
        if isinstance(base, dict) and isinstance(own, dict):
            merged = dict(base)
            for key, value in own.items():
                merged[key] = merge(base[key], value) if key in base else value
            return merged
        return own

    globals_ = template.get("Globals", {}).get("Function", {})
    own = template["Resources"][logical_id]["Properties"]
    merged: dict[str, Any] = merge(copy.deepcopy(globals_), own)
    return merged


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ref_target(value: Any) -> str | None:
    """The logical id a ``!Ref X`` or ``!GetAtt X.Arn`` points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


# --- 1. cfn-lint ------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing() -> None:
    # The same entry point as the cfn-lint command, in this interpreter, for the seed's region
    # and cfn-lint's default one.
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--regions",
            "ap-northeast-2",
            "us-east-1",
            "--",
            str(TEMPLATE_PATH),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = (completed.stdout + completed.stderr).strip()
    assert completed.returncode == 0 and not report, f"cfn-lint found problems:\n{report}"


# --- 2. IAM: least privilege ------------------------------------------------------------------


def policy_documents(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy document anywhere in the template (anything with a Statement list)."""
    if isinstance(node, dict):
        if "Statement" in node:
            yield where, node
        for key, value in node.items():
            yield from policy_documents(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from policy_documents(value, f"{where}[{index}]")


def _is_star(resource: Any) -> bool:
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        resource = resource["Fn::Sub"]
    return isinstance(resource, str) and resource.strip() == "*"


def iam_violations(template: dict[str, Any]) -> list[str]:
    """Everything that breaks least privilege, one line each; empty when the template is fine."""
    problems: list[str] = []

    for where, document in policy_documents(template):
        for index, statement in enumerate(as_list(document["Statement"])):
            at = f"{where} statement {index}"
            for key in ("NotAction", "NotResource"):
                if key in statement:
                    problems.append(f"{at}: {key} grants everything it does not name")
            resources = as_list(statement.get("Resource", []))
            if any(_is_star(resource) for resource in resources):
                problems.append(f'{at}: Resource "*" ({resources})')
            for action in as_list(statement.get("Action", [])):
                if not isinstance(action, str) or "*" in action or "?" in action:
                    problems.append(f"{at}: wildcard action {action!r}")

    functions = resources_of_type(template, "AWS::Serverless::Function")
    for logical_id in functions:
        props = function_properties(template, logical_id)
        if "Role" in props:
            problems.append(f"{logical_id}: its own Role bypasses the inline policies")
        allowed = ALLOWED.get(logical_id)
        if allowed is None:
            problems.append(f"{logical_id}: no entry in the allowed-actions table")
            continue
        granted: dict[str, list[Any]] = {}
        for policy in as_list(props.get("Policies", [])):
            # Inline documents only: a SAM policy template or a managed policy name grants
            # whatever its author chose, usually more than one action on one table.
            if not (isinstance(policy, dict) and "Statement" in policy):
                problems.append(f"{logical_id}: policy {policy!r} is not an inline document")
                continue
            for statement in as_list(policy["Statement"]):
                if statement.get("Effect") != "Allow":
                    continue
                for action in as_list(statement.get("Action", [])):
                    granted.setdefault(action, []).extend(as_list(statement.get("Resource", [])))
        for action, resources in granted.items():
            if action not in allowed:
                problems.append(f"{logical_id}: {action} is not something its handler does")
                continue
            for resource in resources:
                if resource != allowed[action]:
                    problems.append(
                        f"{logical_id}: {action} on {json.dumps(resource)}, expected only "
                        f"{json.dumps(allowed[action])}"
                    )
        for action in sorted(set(allowed) - set(granted)):
            problems.append(f"{logical_id}: lacks {action}, which its handler needs")

    for logical_id in set(ALLOWED) - set(functions):
        problems.append(f"{logical_id}: in the allowed-actions table but not in the template")
    return problems


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    problems = iam_violations(template)
    assert not problems, "\n".join(problems)


def _connect_statement(template: dict[str, Any]) -> dict[str, Any]:
    policy = template["Resources"]["ConnectFunction"]["Properties"]["Policies"][0]
    statement: dict[str, Any] = policy["Statement"][0]
    return statement


def _star_resource(t: dict[str, Any]) -> None:
    _connect_statement(t)["Resource"] = "*"


def _star_in_resource_list(t: dict[str, Any]) -> None:
    _connect_statement(t)["Resource"] = [TABLE_ARN, "*"]


def _extra_action(t: dict[str, Any]) -> None:
    _connect_statement(t)["Action"] = ["dynamodb:PutItem", "dynamodb:Scan"]


def _wildcard_action(t: dict[str, Any]) -> None:
    _connect_statement(t)["Action"] = "dynamodb:*"


def _other_table(t: dict[str, Any]) -> None:
    _connect_statement(t)["Resource"] = {"Fn::Sub": "arn:aws:dynamodb:*:*:table/*"}


def _default_touches_table(t: dict[str, Any]) -> None:
    statements = t["Resources"]["DefaultFunction"]["Properties"]["Policies"][0]["Statement"]
    statements.append({"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": TABLE_ARN})


def _sam_policy_template(t: dict[str, Any]) -> None:
    t["Resources"]["DisconnectFunction"]["Properties"]["Policies"] = [
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": TABLE}}}
    ]


def _missing_action(t: dict[str, Any]) -> None:
    statement = t["Resources"]["SendMessageFunction"]["Properties"]["Policies"][0]["Statement"][1]
    statement["Action"] = "dynamodb:GetItem"


@pytest.mark.parametrize(
    "break_it",
    [
        _star_resource,
        _star_in_resource_list,
        _extra_action,
        _wildcard_action,
        _other_table,
        _default_touches_table,
        _sam_policy_template,
        _missing_action,
    ],
)
def test_iam_check_catches(template: dict[str, Any], break_it: Any) -> None:
    # The check above is only worth something if it fails on a template that over-grants.
    broken = copy.deepcopy(template)
    break_it(broken)
    assert iam_violations(broken)


def test_functions_that_touch_the_table_are_told_its_name(template: dict[str, Any]) -> None:
    for logical_id, allowed in ALLOWED.items():
        if not any(action.startswith("dynamodb:") for action in allowed):
            continue
        variables = function_properties(template, logical_id)["Environment"]["Variables"]
        assert variables.get("WEBSOCKET_TABLE") == {"Ref": TABLE}, logical_id
        assert variables.get("WSCHAT_STORE") == "dynamodb", logical_id


# --- 3. The WebSocket API ---------------------------------------------------------------------


def _integration_of(target: Any) -> str | None:
    """The integration a route's Target names: ``!Sub integrations/${X}`` or
    ``!Join ["/", [integrations, !Ref X]]``."""
    if isinstance(target, dict) and "Fn::Sub" in target:
        match = re.fullmatch(r"integrations/\$\{(\w+)\}", str(target["Fn::Sub"]))
        return match.group(1) if match else None
    if isinstance(target, dict) and "Fn::Join" in target:
        separator, parts = target["Fn::Join"]
        if separator == "/" and len(parts) == 2 and parts[0] == "integrations":
            return ref_target(parts[1])
    return None


def test_api_selects_routes_by_action(template: dict[str, Any]) -> None:
    apis = resources_of_type(template, "AWS::ApiGatewayV2::Api")
    assert list(apis) == ["Api"]
    props = apis["Api"]["Properties"]
    assert props["ProtocolType"] == "WEBSOCKET"
    assert props["RouteSelectionExpression"] == "$request.body.action"


def test_each_route_invokes_its_function(template: dict[str, Any]) -> None:
    routes = resources_of_type(template, "AWS::ApiGatewayV2::Route")
    by_key = {route["Properties"]["RouteKey"]: route["Properties"] for route in routes.values()}
    assert set(by_key) == set(ROUTES)
    resources = template["Resources"]
    for route_key, (function_id, _) in ROUTES.items():
        route = by_key[route_key]
        assert route["ApiId"] == {"Ref": "Api"}, route_key
        integration_id = _integration_of(route["Target"])
        assert integration_id is not None, f"{route_key}: Target {route['Target']!r}"
        integration = resources[integration_id]
        assert integration["Type"] == "AWS::ApiGatewayV2::Integration"
        props = integration["Properties"]
        assert props["ApiId"] == {"Ref": "Api"}
        assert props["IntegrationType"] == "AWS_PROXY"
        assert props["IntegrationUri"] == {
            "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31"
            f"/functions/${{{function_id}.Arn}}/invocations"
        }, route_key


def test_api_gateway_may_invoke_each_function_from_this_api_only(
    template: dict[str, Any],
) -> None:
    permissions = resources_of_type(template, "AWS::Lambda::Permission")
    permitted = {}
    for permission in permissions.values():
        props = permission["Properties"]
        assert props["Action"] == "lambda:InvokeFunction"
        assert props["Principal"] == "apigateway.amazonaws.com"
        source = props["SourceArn"]["Fn::Sub"]
        assert source.startswith(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/"
        ), source
        permitted[ref_target(props["FunctionName"])] = source
    assert set(permitted) == {function_id for function_id, _ in ROUTES.values()}


def test_stage_serves_the_current_routes_with_throttling(template: dict[str, Any]) -> None:
    stages = resources_of_type(template, "AWS::ApiGatewayV2::Stage")
    assert list(stages) == ["Stage"]
    props = stages["Stage"]["Properties"]
    assert props["ApiId"] == {"Ref": "Api"}
    assert props["StageName"] == {"Ref": "StageName"}
    assert template["Parameters"]["StageName"]["Default"] == "prod"
    # Either API Gateway redeploys on every change, or a Deployment exists after every route.
    if props.get("AutoDeploy") is not True:
        deployment = template["Resources"][ref_target(props["DeploymentId"]) or ""]
        routes = set(resources_of_type(template, "AWS::ApiGatewayV2::Route"))
        assert set(as_list(deployment.get("DependsOn", []))) >= routes
    settings = props["DefaultRouteSettings"]
    assert "ThrottlingRateLimit" in settings and "ThrottlingBurstLimit" in settings


def test_outputs_name_the_urls_a_client_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["WebSocketURL"]["Value"] == {
        "Fn::Sub": "wss://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}"
    }
    assert outputs["ConnectionsURL"]["Value"] == {
        "Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}/@connections"
    }
    assert outputs["ConnectionsTableName"]["Value"] == {"Ref": TABLE}
    for function_id, _ in ROUTES.values():
        assert outputs[f"{function_id}Arn"]["Value"] == {"Fn::GetAtt": [function_id, "Arn"]}


# --- 4. The table -----------------------------------------------------------------------------


def test_connections_table_is_the_seeds(template: dict[str, Any]) -> None:
    table = template["Resources"][TABLE]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["TableName"] == {"Ref": "TableName"}
    assert template["Parameters"]["TableName"]["Default"] == "websocket-connections"
    assert props["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [
        {"AttributeName": "connectionId", "AttributeType": "S"}
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


# --- 5. Handlers and what sam build ships -----------------------------------------------------


def test_functions_are_the_seeds(template: dict[str, Any]) -> None:
    functions = resources_of_type(template, "AWS::Serverless::Function")
    assert set(functions) == {function_id for function_id, _ in ROUTES.values()}
    connect_name = functions["ConnectFunction"]["Properties"]["FunctionName"]
    assert connect_name == {"Fn::Sub": "${AWS::StackName}-websocket-connect"}
    for function_id, handler in ROUTES.values():
        props = function_properties(template, function_id)
        assert props["Handler"] == handler
        assert props["Runtime"] == "python3.12"
        assert props["CodeUri"] == "src/"


@pytest.mark.parametrize("function_id", [function_id for function_id, _ in ROUTES.values()])
def test_handler_is_an_importable_function_in_the_code_uri(
    template: dict[str, Any], function_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = function_properties(template, function_id)
    code_dir = (ROOT / props["CodeUri"]).resolve()
    module_name, _, function_name = props["Handler"].rpartition(".")
    assert (code_dir / (module_name.replace(".", "/") + ".py")).is_file()
    # The code directory first on the path, as /var/task is on Lambda.
    monkeypatch.syspath_prepend(str(code_dir))
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(code_dir)
    handler = getattr(module, function_name)
    assert callable(handler)
    assert list(inspect.signature(handler).parameters) == ["event", "context"]


def _requirements() -> list[Requirement]:
    lines = REQUIREMENTS_PATH.read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _with_dependencies(names: set[str]) -> set[str]:
    """The distributions pip installs for ``names``: they and their non-extra dependencies."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_requirements_leave_boto3_to_the_runtime_and_match_pyproject() -> None:
    requirements = {_canonical(r.name): r for r in _requirements()}
    assert set(requirements) >= {"aws-lambda-powertools", "pyjwt"}
    assert not set(requirements) & {"boto3", "botocore"}
    with (ROOT / "pyproject.toml").open("rb") as f:
        declared = {
            _canonical(Requirement(line).name)
            for line in tomllib.load(f)["project"]["dependencies"]
        }
    for name, requirement in requirements.items():
        assert name in declared, f"{name} is shipped to Lambda but not a project dependency"
        installed = importlib.metadata.version(name)
        assert requirement.specifier.contains(installed), (
            f"{name} {installed} (what the tests run against) is outside {requirement.specifier}"
        )


def test_requirements_cover_what_the_handlers_import() -> None:
    # A fresh interpreter, so modules other tests imported do not hide a missing package.
    handlers = [handler.rpartition(".")[0] for _, handler in ROUTES.values()]
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "before = set(sys.modules)\n"
        f"for name in {handlers!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    imported = json.loads(completed.stdout)
    shipped = _with_dependencies({r.name for r in _requirements()})
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in imported:
        if module in sys.stdlib_module_names or module.startswith("_") or module == "wschat":
            continue
        owners = {_canonical(d) for d in distributions.get(module, [])}
        if not owners & (shipped | RUNTIME_PROVIDED):
            missing[module] = sorted(owners)
    assert not missing, f"imported by a handler but not in src/requirements.txt: {missing}"

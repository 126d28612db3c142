"""The template loader: SAM / CloudFormation templates and --route options into an ApiSpec.

Fixture templates live in tests/fixtures/templates/; each broken_*.yaml says in its first line
which mistake it makes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from wschat.gateway.intrinsics import NO_VALUE, Resolver
from wschat.gateway.spec import DEFAULT_ROUTE_SELECTION, ApiSpec
from wschat.gateway.template import (
    CloudFormationLoader,
    TemplateError,
    api_from_routes,
    load_api,
    parse_route_option,
    read_template,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "templates"
CHAT_APP = FIXTURES / "chat_app"
PROJECT_TEMPLATE = REPO / "template.yaml"


@pytest.fixture(autouse=True)
def _no_region_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def fixture(name: str) -> Path:
    return FIXTURES / name


def handlers(api: ApiSpec) -> dict[str, str]:
    return {key: route.function.handler for key, route in api.routes.items()}


# --- YAML short forms ---------------------------------------------------------------------------


def cfn_yaml(text: str) -> Any:
    return yaml.load(text, Loader=CloudFormationLoader)  # a SafeLoader subclass


def test_short_form_tags_read_as_their_long_forms() -> None:
    text = """
    ref: !Ref Table
    getatt: !GetAtt Fn.Arn
    getatt_list: !GetAtt [Fn, Arn]
    sub: !Sub "${AWS::Region}-x"
    sub_list: !Sub ["${A}", {A: !Ref B}]
    join: !Join ["", [a, !Ref B]]
    select: !Select [0, !Split [",", "a,b"]]
    if: !If [IsProd, a, !Ref AWS::NoValue]
    equals: !Equals [!Ref Env, prod]
    not: !Not [!Condition IsProd]
    and: !And [!Condition A, !Condition B]
    or: !Or [!Condition A, !Condition B]
    map: !FindInMap [M, top, second]
    import: !ImportValue shared
    base64: !Base64 hi
    azs: !GetAZs ""
    """
    assert cfn_yaml(text) == {
        "ref": {"Ref": "Table"},
        "getatt": {"Fn::GetAtt": ["Fn", "Arn"]},
        "getatt_list": {"Fn::GetAtt": ["Fn", "Arn"]},
        "sub": {"Fn::Sub": "${AWS::Region}-x"},
        "sub_list": {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]},
        "join": {"Fn::Join": ["", ["a", {"Ref": "B"}]]},
        "select": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
        "if": {"Fn::If": ["IsProd", "a", {"Ref": "AWS::NoValue"}]},
        "equals": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "and": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "map": {"Fn::FindInMap": ["M", "top", "second"]},
        "import": {"Fn::ImportValue": "shared"},
        "base64": {"Fn::Base64": "hi"},
        "azs": {"Fn::GetAZs": ""},
    }


def test_getatt_short_form_splits_at_the_first_dot_only() -> None:
    assert cfn_yaml("v: !GetAtt Db.Endpoint.Address") == {
        "v": {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    }


def test_dates_stay_strings_as_cloudformation_passes_them() -> None:
    assert cfn_yaml("AWSTemplateFormatVersion: 2010-09-09") == {
        "AWSTemplateFormatVersion": "2010-09-09"
    }


def test_missing_template_file_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read template"):
        read_template(tmp_path / "nope.yaml")


# --- a SAM template like ours -------------------------------------------------------------------


def test_sam_template_routes_to_its_handlers() -> None:
    api = load_api(fixture("sam_chat.yaml"))
    assert api.name == "local-chat"
    assert api.route_selection_expression == "$request.body.action"
    assert handlers(api) == {"$connect": "app.on_connect", "sendMessage": "app.on_message"}
    assert {route.function.name for route in api.routes.values()} == {
        "ConnectFunction",
        "SendFunction",
    }
    assert all(function.code_dir == CHAT_APP for function in api.functions)


def test_sam_globals_are_merged_and_the_function_wins() -> None:
    api = load_api(fixture("sam_chat.yaml"))
    connect = api.routes["$connect"].function
    send = api.routes["sendMessage"].function
    assert (connect.timeout, connect.memory_mb) == (10.0, 256)
    assert (send.timeout, send.memory_mb) == (29.0, 256)
    assert connect.environment == {
        "WEBSOCKET_TABLE": "websocket-connections",
        "LOG_LEVEL": "INFO",
        "SHARED": "from-globals",
    }
    assert send.environment == {
        "WEBSOCKET_TABLE": "websocket-connections",
        "LOG_LEVEL": "INFO",
        "SHARED": "from-function",
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/websocket-connections",
    }


def test_parameter_override_reaches_the_table_ref_in_env() -> None:
    api = load_api(fixture("sam_chat.yaml"), parameters={"TableName": "other-table"})
    assert api.routes["$connect"].function.environment["WEBSOCKET_TABLE"] == "other-table"


def test_parameter_override_must_fit_allowed_values_and_pattern() -> None:
    with pytest.raises(TemplateError, match=r"LogLevel='LOUD' is not one of"):
        load_api(fixture("sam_chat.yaml"), parameters={"LogLevel": "LOUD"})
    with pytest.raises(TemplateError, match=r"TableName='no spaces!' does not match"):
        load_api(fixture("sam_chat.yaml"), parameters={"TableName": "no spaces!"})


def test_undeclared_parameter_override_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"sam_chat.yaml: parameter override 'Nope'"):
        load_api(fixture("sam_chat.yaml"), parameters={"Nope": "x"})


def test_region_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    arn = load_api(fixture("sam_chat.yaml")).routes["sendMessage"].function.environment
    assert arn["TABLE_ARN"].startswith("arn:aws:dynamodb:eu-west-1:")
    monkeypatch.setenv("AWS_REGION", "ap-northeast-2")
    arn = load_api(fixture("sam_chat.yaml")).routes["sendMessage"].function.environment
    assert arn["TABLE_ARN"].startswith("arn:aws:dynamodb:ap-northeast-2:")


def test_code_uri_is_relative_to_the_template_not_the_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES.parent)
    api = load_api("templates/sam_chat.yaml")
    assert api.routes["$connect"].function.code_dir == CHAT_APP


def test_values_only_aws_knows_do_not_matter_where_unused() -> None:
    # sam_chat.yaml's ConnectFunction has an !ImportValue in its Policies: not run locally.
    assert "$connect" in load_api(fixture("sam_chat.yaml")).routes


# --- plain CloudFormation, JSON -----------------------------------------------------------------


def test_plain_cloudformation_json_template() -> None:
    api = load_api(fixture("plain_cfn.json"))
    assert api.name == "plain-ws"
    assert api.route_selection_expression == "$request.body.type"
    assert handlers(api) == {"$connect": "app.on_connect", "ping": "index.handler"}
    connect = api.routes["$connect"].function
    assert connect.code_dir == CHAT_APP
    assert (connect.timeout, connect.memory_mb) == (3.0, 128)  # Lambda's defaults


def test_environment_values_are_strings_as_cloudformation_makes_them() -> None:
    env = load_api(fixture("plain_cfn.json")).routes["$connect"].function.environment
    assert env == {"STAGE": "dev", "RETRIES": "3", "VERBOSE": "true"}


def test_route_response_selection_expression_makes_a_route_two_way() -> None:
    api = load_api(fixture("plain_cfn.json"))
    assert api.routes["ping"].two_way
    assert not api.routes["$connect"].two_way


def test_zip_file_code_runs_as_index_py() -> None:
    ping = load_api(fixture("plain_cfn.json")).routes["ping"].function
    assert (ping.timeout, ping.memory_mb) == (5.0, 1024)
    assert "'body': 'pong'" in (ping.code_dir / "index.py").read_text(encoding="utf-8")
    assert load_api(fixture("plain_cfn.json")).routes["ping"].function.code_dir == ping.code_dir


# --- runtimes and their handlers ----------------------------------------------------------------

ONE_FUNCTION = """
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Sub "integrations/${Integration}"}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/\\
        functions/${Fn.Arn}/invocations"
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: ., Handler: %s, Runtime: %s}
"""


def one_function(tmp_path: Path, runtime: str, handler: str) -> Any:
    (tmp_path / "template.yaml").write_text(ONE_FUNCTION % (handler, runtime))
    return load_api(tmp_path / "template.yaml").routes["$default"].function


@pytest.mark.parametrize(
    ("runtime", "handler", "read_as"),
    [
        ("python3.12", "app.on_message", "app.on_message"),
        ("python3.13", "src/app.on_message", "src.app.on_message"),
        ("nodejs18.x", "index.handler", "index.handler"),
        ("nodejs20.x", "src/app.handler", "src/app.handler"),
        ("nodejs22.x", "lib/ws.api.onMessage", "lib/ws.api.onMessage"),  # a nested export
        ("nodejs24.x", "my-app.$handler", "my-app.$handler"),
    ],
)
def test_handler_is_read_as_its_runtime_reads_it(
    tmp_path: Path, runtime: str, handler: str, read_as: str
) -> None:
    function = one_function(tmp_path, runtime, handler)
    assert (function.runtime, function.handler) == (runtime, read_as)
    assert function.is_node == runtime.startswith("nodejs")


def test_runtime_defaults_to_python_and_comes_from_globals(tmp_path: Path) -> None:
    assert load_api(fixture("plain_cfn.json")).routes["$connect"].function.runtime == "python3.12"
    text = "Globals:\n  Function:\n    Runtime: nodejs22.x\n" + ONE_FUNCTION.replace(
        ", Runtime: %s", ""
    )
    (tmp_path / "template.yaml").write_text(text % "src/app.handler")
    function = load_api(tmp_path / "template.yaml").routes["$default"].function
    assert (function.runtime, function.handler) == ("nodejs22.x", "src/app.handler")


@pytest.mark.parametrize(
    ("runtime", "handler"),
    [
        ("nodejs20.x", "handler"),  # no file
        ("nodejs20.x", "index."),
        ("nodejs20.x", "index.1st"),
        ("nodejs20.x", "../outside/index.handler"),  # not in the code directory
        ("nodejs20.x", "src/.handler"),
        ("python3.12", "index.handler-x"),
    ],
)
def test_bad_handler_for_the_runtime_is_an_error(
    tmp_path: Path, runtime: str, handler: str
) -> None:
    expected = "file.export" if runtime.startswith("nodejs") else "module.function"
    with pytest.raises(TemplateError, match=f"handler '{re.escape(handler)}' is not {expected}"):
        one_function(tmp_path, runtime, handler)


@pytest.mark.parametrize("runtime", ["java21", "provided.al2023", "nodejs16.x", "dotnet8", "ruby"])
def test_runtimes_the_gateway_cannot_run_are_refused(tmp_path: Path, runtime: str) -> None:
    with pytest.raises(TemplateError, match=f"Runtime {re.escape(runtime)} is not run locally"):
        one_function(tmp_path, runtime, "index.handler")


def test_node_inline_code_runs_as_index_js(tmp_path: Path) -> None:
    text = ONE_FUNCTION.replace("CodeUri: .", "InlineCode: 'exports.handler = async () => 1'")
    (tmp_path / "template.yaml").write_text(text % ("index.handler", "nodejs20.x"))
    function = load_api(tmp_path / "template.yaml").routes["$default"].function
    assert (function.code_dir / "index.js").read_text() == "exports.handler = async () => 1"
    assert not (function.code_dir / "index.py").exists()


# --- a third-party app --------------------------------------------------------------------------


def test_third_party_template_keeps_its_own_env_names() -> None:
    api = load_api(fixture("third_party.yaml"))
    assert api.route_selection_expression == "$request.body.op"
    assert handlers(api) == {
        "$connect": "app.on_connect",
        "$disconnect": "app.on_disconnect",
        "echo": "app.on_message",
    }
    connect = api.routes["$connect"].function.environment
    assert connect == {
        "TABLE_NAME": "local-conns",  # TableName: !Sub "${AWS::StackName}-conns"
        "TTL_HOURS": "2",
        "ALLOWED_ORIGINS": "https://a.example,https://b.example",
        "FIRST_ORIGIN": "https://a.example",
    }


def test_route_response_resource_makes_a_route_two_way() -> None:
    api = load_api(fixture("third_party.yaml"))
    assert api.routes["echo"].two_way
    assert not api.routes["$connect"].two_way


def test_sub_resolves_parameters_resources_attributes_and_literals() -> None:
    env = load_api(fixture("third_party.yaml")).routes["echo"].function.environment
    assert env["TABLE_ARN"] == "arn:aws:dynamodb:us-east-1:123456789012:table/local-conns"
    assert env["SELF_ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:local-dev-echo"
    assert env["LITERAL"] == "${NotAVariable} and dev"
    assert env["ENDPOINT"] == "https://Socket.execute-api.us-east-1.amazonaws.com/dev"
    assert (env["REGION"], env["ACCOUNT"], env["LOG_LEVEL"]) == (
        "us-east-1",
        "123456789012",
        "DEBUG",
    )


def test_overridden_parameter_changes_mappings_and_function_names() -> None:
    api = load_api(fixture("third_party.yaml"), parameters={"Stage": "prod"})
    env = api.routes["echo"].function.environment
    assert (env["STAGE"], env["LOG_LEVEL"]) == ("prod", "WARNING")
    # the integration still finds OnMessage although its FunctionName changed with the stage
    assert api.routes["echo"].function.name == "OnMessage"


# --- Conditions ---------------------------------------------------------------------------------


def test_conditions_pick_values_and_drop_no_value() -> None:
    api = load_api(fixture("conditions.yaml"))
    assert api.name == "Api"
    assert api.route_selection_expression == "$request.body.kind"
    assert set(api.routes) == {"$default"}  # AdminRoute has Condition IsProd
    function = api.routes["$default"].function
    assert function.timeout == 6.0
    assert function.environment == {
        "MODE": "development",
        "PROD_OR_FEATURE": "no",
        "DEV_WITH_FEATURE": "no",
        "DEBUG": "true",
        "RATE": "2.5",
        "ZONE": "us-east-1b",
        "DOMAIN_PART": "example",
        "ENCODED": "aGVsbG8=",
    }


def test_conditions_follow_parameter_overrides() -> None:
    prod = load_api(fixture("conditions.yaml"), parameters={"Env": "prod"})
    assert set(prod.routes) == {"$default", "admin"}
    assert prod.route_selection_expression == "$request.body.action"
    env = prod.routes["$default"].function.environment
    assert (env["MODE"], env["AUDIT_TABLE"], env["PROD_OR_FEATURE"]) == (
        "production",
        "AuditTable",  # a table without TableName is named by its logical id
        "yes",
    )
    assert prod.routes["$default"].function.timeout == 20.0
    feature = load_api(fixture("conditions.yaml"), parameters={"Feature": "on"})
    assert feature.routes["$default"].function.environment["DEV_WITH_FEATURE"] == "yes"


# --- several APIs -------------------------------------------------------------------------------


def test_api_name_picks_one_of_several_websocket_apis() -> None:
    api = load_api(fixture("broken_two_apis.yaml"), api_name="AdminApi")
    assert set(api.routes) == {"kick"}
    assert api.route_selection_expression == "$request.body.op"


def test_unknown_api_name_lists_the_websocket_apis() -> None:
    with pytest.raises(TemplateError, match=r"no WebSocket API 'Nope' .*ChatApi, AdminApi"):
        load_api(fixture("broken_two_apis.yaml"), api_name="Nope")


def test_http_apis_and_their_routes_are_ignored() -> None:
    # plain_cfn.json has an HTTP API whose route targets an integration that does not exist
    assert "GET /health" not in load_api(fixture("plain_cfn.json")).routes


# --- broken templates: one error each, naming the template and the logical id -------------------

BROKEN = [
    (
        "missing_integration",
        "route SendRoute targets integration 'Missing' which is not in Resources",
    ),
    ("no_websocket_api", "no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET"),
    ("two_apis", "several WebSocket APIs (ChatApi, AdminApi)"),
    ("s3_code_uri", "function SendFunction: CodeUri"),
    ("s3_code", "function SendFunction: Code"),
    ("import_value", "function SendFunction: Fn::ImportValue 'shared-table-name'"),
    ("missing_code_dir", "function SendFunction: code directory 'no_such_dir/' does not exist"),
    ("unknown_ref", "function SendFunction: 'Nope' is neither a parameter nor a resource"),
    ("unknown_sub_variable", "function SendFunction: 'Nope' is neither a parameter nor"),
    ("http_integration", "integration SendIntegration: IntegrationType HTTP_PROXY"),
    ("foreign_function", "integration SendIntegration: IntegrationUri invokes 'elsewhere'"),
    ("integration_of_other_api", "route SendRoute: integration SendIntegration belongs to another"),
    ("old_node_runtime", "function SendFunction: Runtime nodejs16.x is not run locally"),
    ("java_runtime", "function SendFunction: Runtime java21 is not run locally"),
    ("no_handler", "function SendFunction: has no Handler"),
    ("bad_handler", "function SendFunction: handler 'on_message' is not module.function"),
    ("bad_target", "route SendRoute: Target 'SendIntegration' is not integrations/"),
    ("no_target", "route SendRoute: has no Target"),
    ("duplicate_route_key", "route AgainRoute: route key 'sendMessage' is declared twice"),
    ("no_routes", "API Api: the API has no AWS::ApiGatewayV2::Route"),
    ("bad_getatt", "!GetAtt 'SendFunction' must be LogicalId.Attribute"),
    ("unsupported_intrinsic", "function SendFunction: unsupported intrinsic function Fn::Cidr"),
    ("list_env_value", "function SendFunction: environment variable ZONES must be a string"),
    ("not_a_template", "not a CloudFormation template"),
    ("parameter_without_default", "function SendFunction: parameter TableName has no Default"),
    ("circular_condition", "circular reference: Conditions.A -> Conditions.B -> Conditions.A"),
    ("function_condition_false", "SendFunction is not created: its Condition Never is false"),
]


@pytest.mark.parametrize(("name", "message"), BROKEN, ids=[name for name, _ in BROKEN])
def test_broken_template_names_the_template_and_the_fault(name: str, message: str) -> None:
    path = fixture(f"broken_{name}.yaml")
    with pytest.raises(TemplateError) as caught:
        load_api(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_every_broken_fixture_is_tested() -> None:
    on_disk = {path.stem.removeprefix("broken_") for path in FIXTURES.glob("broken_*.yaml")}
    assert on_disk == {name for name, _ in BROKEN}


# --- intrinsics on their own --------------------------------------------------------------------

TEMPLATE: dict[str, Any] = {
    "Parameters": {"Names": {"Type": "CommaDelimitedList", "Default": "a,b,c"}},
    "Mappings": {"M": {"top": {"second": "found"}}},
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "t"}},
        "Loop": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": {"Ref": "Loop"}}},
    },
}


def resolve(value: Any) -> Any:
    return Resolver(TEMPLATE, source="t.yaml").resolve(value, "test")


def test_pseudo_parameters_have_local_values() -> None:
    names = ["Region", "AccountId", "StackName", "Partition", "URLSuffix"]
    assert [resolve({"Ref": f"AWS::{name}"}) for name in names] == [
        "us-east-1",
        "123456789012",
        "local",
        "aws",
        "amazonaws.com",
    ]


def test_no_value_removes_keys_and_list_items() -> None:
    no_value = {"Ref": "AWS::NoValue"}
    assert resolve({"a": no_value, "b": [1, no_value, 2]}) == {"b": [1, 2]}
    assert resolve(no_value) is NO_VALUE


def test_get_att_of_other_attributes_and_types() -> None:
    assert (
        resolve({"Fn::GetAtt": ["Queue", "QueueUrl"]})
        == "https://sqs.us-east-1.amazonaws.com/123456789012/local-Queue"
    )
    assert (
        resolve({"Fn::GetAtt": ["Queue", "Arn"]})
        == "arn:aws:sqs:us-east-1:123456789012:local-Queue"
    )
    assert resolve({"Fn::GetAtt": ["Table", "StreamArn"]}).startswith(
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/"
    )
    assert resolve({"Fn::Sub": "${Table.Arn}"}) == "arn:aws:dynamodb:us-east-1:123456789012:table/t"


def test_list_parameters_select_join_split_and_find_in_map() -> None:
    assert resolve({"Ref": "Names"}) == ["a", "b", "c"]
    assert resolve({"Fn::Select": ["2", {"Ref": "Names"}]}) == "c"
    assert resolve({"Fn::Join": ["-", {"Ref": "Names"}]}) == "a-b-c"
    assert resolve({"Fn::FindInMap": ["M", "top", "second"]}) == "found"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Fn::Select": [5, ["a"]]}, "Fn::Select index 5"),
        ({"Fn::FindInMap": ["M", "top", "nope"]}, "Fn::FindInMap: M.top.nope is not in Mappings"),
        ({"Fn::FindInMap": ["M", "top"]}, "Fn::FindInMap takes a list of 3 items"),
        ({"Ref": "Loop"}, "circular reference: Loop -> Loop"),
        ({"Ref": "AWS::Nope"}, "unknown pseudo parameter AWS::Nope"),
        ({"Fn::If": ["Nope", "a", "b"]}, "condition 'Nope' is not in Conditions"),
        ({"Fn::Join": ["", [["nested"]]]}, "Fn::Join item must be a string, got list"),
    ],
)
def test_intrinsic_errors_say_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=r"^t\.yaml: (test|resource Loop): ") as caught:
        resolve(value)
    assert message in str(caught.value)


# --- --route options ----------------------------------------------------------------------------


def test_parse_route_option() -> None:
    assert parse_route_option("$connect=app.handlers.on_connect") == (
        "$connect",
        "app.handlers.on_connect",
    )
    assert parse_route_option(" sendMessage = app.send ") == ("sendMessage", "app.send")
    assert parse_route_option("$default=handlers/chat.handler") == (
        "$default",
        "handlers.chat.handler",
    )
    assert parse_route_option("a=b=app.fn") == ("a=b", "app.fn")


@pytest.mark.parametrize(
    "text", ["app.fn", "=app.fn", "$connect=", "$connect=fn", "$connect=app.1x"]
)
def test_bad_route_option_is_an_error(text: str) -> None:
    with pytest.raises(TemplateError, match=r"^--route "):
        parse_route_option(text)


def test_api_from_routes_shares_one_function_per_handler(tmp_path: Path) -> None:
    api = api_from_routes(
        ["$connect=app.connect", "sendMessage=app.message", "$default=app.message"],
        environment={"WEBSOCKET_TABLE": "t"},
        code_dir=tmp_path,
        timeout=7.0,
    )
    assert api.route_selection_expression == DEFAULT_ROUTE_SELECTION
    assert [function.name for function in api.functions] == ["app.connect", "app.message"]
    assert api.routes["sendMessage"].function is api.routes["$default"].function
    for function in api.functions:
        assert function.code_dir == tmp_path.resolve()
        assert function.environment == {"WEBSOCKET_TABLE": "t"}
        assert function.timeout == 7.0
    assert not any(route.two_way for route in api.routes.values())


def test_api_from_routes_takes_a_route_selection_expression(tmp_path: Path) -> None:
    api = api_from_routes(
        ["$default=app.fn"],
        environment={},
        code_dir=tmp_path,
        timeout=3.0,
        route_selection_expression="$request.body.type",
    )
    assert api.route_selection_expression == "$request.body.type"


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([], "give at least one route"),
        (["a=app.fn", "a=app.other"], "route 'a' is given twice"),
    ],
)
def test_api_from_routes_errors(tmp_path: Path, routes: list[str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        api_from_routes(routes, environment={}, code_dir=tmp_path, timeout=3.0)


def test_route_responses_make_route_option_routes_two_way(tmp_path: Path) -> None:
    api = api_from_routes(
        ["$connect=app.fn", "ping=app.fn", "say=app.fn"],
        environment={},
        code_dir=tmp_path,
        timeout=3.0,
        route_responses=["ping"],
    )
    assert {key for key, route in api.routes.items() if route.two_way} == {"ping"}


@pytest.mark.parametrize(
    ("route_key", "message"),
    [
        ("pong", "no --route has that key"),
        ("$connect", "only message routes reply"),
        ("$disconnect", "only message routes reply"),
    ],
)
def test_route_responses_need_a_message_route(tmp_path: Path, route_key: str, message: str) -> None:
    routes = ["$connect=app.fn", "$disconnect=app.fn", "ping=app.fn"]
    with pytest.raises(TemplateError, match=message):
        api_from_routes(
            routes, environment={}, code_dir=tmp_path, timeout=3.0, route_responses=[route_key]
        )


def test_api_from_routes_needs_an_existing_code_dir(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        api_from_routes(["a=app.fn"], environment={}, code_dir=tmp_path / "no", timeout=3.0)


# --- the project's own template -----------------------------------------------------------------


def test_project_template_runs_the_wschat_handlers() -> None:
    api = load_api(PROJECT_TEMPLATE)
    modules = {key: route.function.handler.rsplit(".", 2)[1] for key, route in api.routes.items()}
    assert modules == {
        "$connect": "connect",
        "$disconnect": "disconnect",
        "sendMessage": "send_message",
        "direct": "send_message",
        "typing": "send_message",
        "edit": "send_message",
        "delete": "send_message",
        "react": "send_message",
        "read": "rooms",
        "rooms": "rooms",
        "createRoom": "rooms",
        "invite": "rooms",
        "setRole": "rooms",
        "kick": "rooms",
        "mute": "rooms",
        "join": "rooms",
        "leave": "rooms",
        "setName": "rooms",
        "who": "rooms",
        "hello": "rooms",
        "history": "history",
        "$default": "default",
    }
    assert api.route_selection_expression == "$request.body.action"
    assert api.routes["$connect"].authorizer is None, "sign-in is off by default"
    # One function per handler module: routes of one module share its warm workers.
    assert {route.function.name for route in api.routes.values()} == {
        "ConnectFunction",
        "DisconnectFunction",
        "SendMessageFunction",
        "RoomsFunction",
        "HistoryFunction",
        "DefaultFunction",
    }
    assert api.routes["direct"].function is api.routes["sendMessage"].function
    for route in api.routes.values():
        function = route.function
        assert function.handler.startswith("wschat.handlers.")
        assert function.handler.endswith(".lambda_handler")
        assert function.code_dir == REPO / "src"
        # Table names resolve to the parameters' defaults; the chat settings to theirs.
        assert function.environment == {
            "WEBSOCKET_TABLE": "websocket-connections",
            "MEMBERS_TABLE": "chat-members",
            "MESSAGES_TABLE": "chat-messages",
            "ROOMS_TABLE": "chat-rooms",
            "ROOM_USERS_TABLE": "chat-room-users",
            "WSCHAT_STORE": "dynamodb",
            "POWERTOOLS_SERVICE_NAME": "wschat",
            "POWERTOOLS_METRICS_NAMESPACE": "wschat",
            "LOG_LEVEL": "INFO",
            "WSCHAT_MESSAGE_TTL_DAYS": "30",
            "WSCHAT_RATE_PER_SECOND": "10",
            "WSCHAT_RATE_BURST": "20",
            "WSCHAT_MAX_MESSAGE_CHARS": "4000",
            "WSCHAT_AUTH_SECRET": "",
            # Sign-in off by default: no issuer (and no $connect authorizer).
            "WSCHAT_OIDC_ISSUER": "",
            "WSCHAT_OIDC_AUDIENCE": "",
            "WSCHAT_OIDC_METADATA_URL": "",
            "WSCHAT_OIDC_NAME_CLAIM": "",
            # The queue's Ref is its URL on AWS; the gateway's SQS API takes it by name.
            "WSCHAT_FANOUT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/local-fanout",
            "WSCHAT_FANOUT_INLINE_LIMIT": "auto",
            "WSCHAT_FANOUT_PAGE_SIZE": "500",
        }, function.name
    assert api.routes["sendMessage"].function.timeout == 29
    assert api.routes["$connect"].function.timeout == 10


# --- SQS queues and event sources ---------------------------------------------------------------

SQS_APP = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: sqs-app, ProtocolType: WEBSOCKET}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Sub "integrations/${Integration}"}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt Handler.Arn
  Handler:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.on_message
      CodeUri: .
      Environment:
        Variables:
          QUEUE_URL: !Ref Jobs
          QUEUE_ARN: !GetAtt Jobs.Arn
          QUEUE_NAME: !GetAtt Jobs.QueueName
          DLQ_URL: !GetAtt Dlq.QueueUrl
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      KmsMasterKeyId: !ImportValue only-on-aws
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 3
  Dlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: my-dlq, MessageRetentionPeriod: 1209600}
  SamWorker:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.on_jobs
      CodeUri: .
      Timeout: 30
      Events:
        FromJobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 5
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {MaximumConcurrency: 4}
        Other:
          Type: Schedule
          Properties: {Schedule: rate(1 minute)}
  PlainWorker:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: plain-worker
      Handler: app.on_dlq
      Runtime: python3.12
      Code: .
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt Dlq.Arn
      FunctionName: !Ref PlainWorker
      Enabled: false
"""


def sqs_app(tmp_path: Path, text: str = SQS_APP) -> ApiSpec:
    (tmp_path / "template.yaml").write_text(text)
    return load_api(tmp_path / "template.yaml")


def test_queues_are_read_with_their_attributes_and_redrive(tmp_path: Path) -> None:
    api = sqs_app(tmp_path)
    assert set(api.queues) == {"local-Jobs", "my-dlq"}
    jobs = api.queues["local-Jobs"]
    assert jobs.visibility_timeout == 60
    assert (jobs.dead_letter_queue, jobs.max_receive_count) == ("my-dlq", 3)
    assert api.queues["my-dlq"].message_retention_period == 1209600
    assert api.queues["my-dlq"].visibility_timeout == 30  # SQS's default


def test_queue_refs_are_aws_urls_and_arns(tmp_path: Path) -> None:
    env = sqs_app(tmp_path).routes["$default"].function.environment
    assert env == {
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/local-Jobs",
        "QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:local-Jobs",
        "QUEUE_NAME": "local-Jobs",
        "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/my-dlq",
    }


def test_sqs_events_and_event_source_mappings_become_event_sources(tmp_path: Path) -> None:
    api = sqs_app(tmp_path)
    sam, mapping = api.event_sources
    assert (sam.name, sam.function.name, sam.queue) == (
        "SamWorker.FromJobs",
        "SamWorker",
        "local-Jobs",
    )
    assert (sam.batch_size, sam.maximum_batching_window) == (5, 2.0)
    assert sam.report_batch_item_failures and sam.enabled
    assert sam.maximum_concurrency == 4
    assert (mapping.name, mapping.function.name, mapping.queue) == (
        "Mapping",
        "PlainWorker",
        "my-dlq",
    )
    assert (mapping.batch_size, mapping.report_batch_item_failures) == (10, False)
    assert not mapping.enabled
    # Functions only SQS invokes are run too.
    assert {f.name for f in api.functions} == {"Handler", "SamWorker", "PlainWorker"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("QueueName: my-dlq", "QueueName: my-dlq.fifo"), "FIFO queues are not run locally"),
        (("VisibilityTimeout: 60", "VisibilityTimeout: 10"), "less than function SamWorker"),
        (("VisibilityTimeout: 60", "VisibilityTimeout: soon"), "must be an integer"),
        (("BatchSize: 5", "BatchSize: 50\n            Enabled: true"), ""),
        (("FunctionName: !Ref PlainWorker", "FunctionName: nobody"), "not a function in this"),
        (("maxReceiveCount: 3", "maxReceiveCount: 0"), "maxReceiveCount"),
    ],
)
def test_sqs_template_mistakes_are_template_errors(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = SQS_APP.replace(*change)
    assert text != SQS_APP
    if not message:  # a BatchSize over 10 with a batching window is fine
        assert sqs_app(tmp_path, text).event_sources[0].batch_size == 50
        return
    with pytest.raises(TemplateError, match=message):
        sqs_app(tmp_path, text)


def test_route_options_have_no_queues(tmp_path: Path) -> None:
    api = api_from_routes(["$default=app.h"], environment={}, code_dir=tmp_path, timeout=3.0)
    assert api.queues == {} and api.event_sources == []


# --- CDK output: code as assets beside the template ---------------------------------------------

ASSET = "asset.0123abcd"
CDK_S3_CODE: dict[str, Any] = {
    "S3Bucket": {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"},
    "S3Key": "0123abcd.zip",
}


def cdk_template(function: dict[str, Any]) -> dict[str, Any]:
    """A template shaped as ``cdk synth`` writes one: one $default route to ``function``
    (logical id Fn), CDKMetadata under a region condition, the bootstrap version check."""
    invocation_uri = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": ["Fn", "Arn"]},
                "/invocations",
            ],
        ]
    }
    regions = [{"Fn::Equals": [{"Ref": "AWS::Region"}, r]} for r in ("us-east-1", "eu-west-1")]
    return {
        "Resources": {
            "Api": {
                "Type": "AWS::ApiGatewayV2::Api",
                "Properties": {"Name": "Api", "ProtocolType": "WEBSOCKET"},
            },
            "Route": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "RouteKey": "$default",
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]},
                },
            },
            "Integration": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": invocation_uri,
                },
            },
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
            "Fn": function,
            "CDKMetadata": {
                "Type": "AWS::CDK::Metadata",
                "Properties": {"Analytics": "v2:deflate64:H4sI"},
                "Condition": "CDKMetadataAvailable",
            },
        },
        "Conditions": {"CDKMetadataAvailable": {"Fn::Or": regions}},
        "Parameters": {
            "BootstrapVersion": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/cdk-bootstrap/hnb659fds/version",
            }
        },
        "Rules": {
            "CheckBootstrapVersion": {
                "Assertions": [
                    {
                        "Assert": {
                            "Fn::Not": [{"Fn::Contains": [["1", "2"], {"Ref": "BootstrapVersion"}]}]
                        },
                        "AssertDescription": "CDK bootstrap stack version 6 required.",
                    }
                ]
            }
        },
    }


def lambda_function(**overrides: Any) -> dict[str, Any]:
    """An AWS::Lambda::Function as the CDK writes one: S3 Code, asset metadata."""
    function: dict[str, Any] = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": CDK_S3_CODE,
            "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Runtime": "python3.12",
        },
        "Metadata": {
            "aws:cdk:path": "Stack/Fn/Resource",
            "aws:asset:path": ASSET,
            "aws:asset:is-bundled": False,
            "aws:asset:property": "Code",
        },
    }
    for key, value in overrides.items():
        function[key] = {**function[key], **value}
    return function


def cdk_out(tmp_path: Path, function: dict[str, Any], *, asset: bool = True) -> Path:
    """``tmp_path/cdk.out/Stack.template.json`` with an ``asset.*`` code directory beside it."""
    directory = tmp_path / "cdk.out"
    if asset:
        (directory / ASSET).mkdir(parents=True)
        (directory / ASSET / "index.py").write_text("def handler(event, context): pass\n")
    directory.mkdir(exist_ok=True)
    path = directory / "Stack.template.json"
    path.write_text(json.dumps(cdk_template(function)))
    return path


def test_lambda_code_is_the_asset_directory_beside_the_template(tmp_path: Path) -> None:
    path = cdk_out(tmp_path, lambda_function())
    function = load_api(path).routes["$default"].function
    assert function.code_dir == (tmp_path / "cdk.out" / ASSET).resolve()
    assert function.handler == "index.handler"


def test_sam_code_uri_is_the_asset_directory_beside_the_template(tmp_path: Path) -> None:
    sam = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": {"Bucket": "cdk-assets", "Key": "0123abcd.zip"},
            "Handler": "index.handler",
            "Runtime": "python3.12",
        },
        "Metadata": {"aws:asset:path": ASSET, "aws:asset:property": "CodeUri"},
    }
    function = load_api(cdk_out(tmp_path, sam)).routes["$default"].function
    assert function.code_dir == (tmp_path / "cdk.out" / ASSET).resolve()


def test_a_bundled_asset_is_run_as_its_directory(tmp_path: Path) -> None:
    path = cdk_out(tmp_path, lambda_function(Metadata={"aws:asset:is-bundled": True}))
    assert load_api(path).routes["$default"].function.code_dir.name == ASSET


def test_an_unstaged_asset_is_its_source_directory(tmp_path: Path) -> None:
    # cdk synth --no-staging names the source directory by its absolute path.
    source = tmp_path / "lambda"
    source.mkdir()
    path = cdk_out(tmp_path, lambda_function(Metadata={"aws:asset:path": str(source)}))
    assert load_api(path).routes["$default"].function.code_dir == source.resolve()


def test_the_s3_location_of_an_asset_is_not_resolved(tmp_path: Path) -> None:
    # The CDK's legacy synthesizer names the bucket and key by parameters without a Default.
    legacy = {"S3Bucket": {"Ref": "AssetBucket"}, "S3Key": {"Ref": "AssetKey"}}
    template = cdk_template(lambda_function(Properties={"Code": legacy}))
    template["Parameters"].update({"AssetBucket": {"Type": "String"}, "AssetKey": {}})
    (tmp_path / ASSET).mkdir()
    (tmp_path / "template.json").write_text(json.dumps(template))
    function = load_api(tmp_path / "template.json").routes["$default"].function
    assert function.code_dir == (tmp_path / ASSET).resolve()


def test_s3_code_without_asset_metadata_is_not_local(tmp_path: Path) -> None:
    function = lambda_function()
    del function["Metadata"]["aws:asset:path"]
    with pytest.raises(TemplateError, match=r"function Fn: Code \{'S3Bucket'.* is not local"):
        load_api(cdk_out(tmp_path, function))


def test_asset_metadata_for_another_property_is_not_the_code(tmp_path: Path) -> None:
    function = lambda_function(Metadata={"aws:asset:property": "Layers"})
    with pytest.raises(TemplateError, match=r"function Fn: Code .* is not local"):
        load_api(cdk_out(tmp_path, function))


def test_a_missing_asset_directory_says_to_synthesize_again(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=rf"function Fn: asset directory '{ASSET}'.*cdk synth"):
        load_api(cdk_out(tmp_path, lambda_function(), asset=False))


def test_an_archive_asset_is_refused(tmp_path: Path) -> None:
    path = cdk_out(tmp_path, lambda_function(Metadata={"aws:asset:path": "asset.0123.zip"}))
    (path.parent / "asset.0123.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(TemplateError, match=r"asset 'asset.0123.zip' is a file \(an archive\)"):
        load_api(path)


def test_a_container_image_asset_is_refused(tmp_path: Path) -> None:
    image = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {"ImageUri": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.repo:0123abcd"}},
            "PackageType": "Image",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        },
        "Metadata": {
            "aws:asset:path": ASSET,
            "aws:asset:dockerfile-path": "Dockerfile",
            "aws:asset:property": "Code.ImageUri",
        },
    }
    with pytest.raises(TemplateError, match="function Fn: container image functions are not run"):
        load_api(cdk_out(tmp_path, image))


def test_bootstrap_version_rules_and_cdk_metadata_do_not_get_in_the_way(tmp_path: Path) -> None:
    # Rules hold Fn::Contains, which the loader does not resolve; BootstrapVersion is read
    # from SSM, which only matters to a value that refers to it.
    api = load_api(cdk_out(tmp_path, lambda_function()))
    assert [f.name for f in api.functions] == ["Fn"]
    uses_it = lambda_function(
        Properties={"Environment": {"Variables": {"V": {"Ref": "BootstrapVersion"}}}}
    )
    with pytest.raises(TemplateError, match="parameter BootstrapVersion is read from SSM"):
        load_api(cdk_out(tmp_path / "uses", uses_it))
    overridden = load_api(
        cdk_out(tmp_path / "given", uses_it), parameters={"BootstrapVersion": "6"}
    )
    assert overridden.routes["$default"].function.environment == {"V": "6"}

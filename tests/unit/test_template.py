"""template.yaml, checked offline: cfn-lint, least-privilege IAM derived from the code, the
routes, the tables, the functions' environment, and that every Handler string names a function
``sam build`` will actually ship (src/ plus src/requirements.txt, boto3 from the runtime).

The IAM check has three layers, so the allowed-actions table below cannot drift from the code:

1. ``ALLOWED`` (the table in docs/deploy.md) is exactly what each function's policy grants;
2. ``ALLOWED`` is exactly what the function's handler can reach: the ChatStore methods its
   code paths in ``wschat.service`` call (found by reading service.py's syntax tree) times
   ``STORE_CALLS``, what each of those methods asks of DynamoDB;
3. ``STORE_CALLS`` is exactly what ``wschat.storage.dynamodb.DynamoDBStore`` sends, recorded
   while it runs against in-process moto on tables made from this template.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.metadata
import inspect
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from wschat.auth import AuthSettings
from wschat.chat import registry
from wschat.gateway.template import load_api, read_template
from wschat.service import ChatConfig
from wschat.storage.base import TableNames

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REQUIREMENTS_PATH = ROOT / "src" / "requirements.txt"

# --- What the template should hold --------------------------------------------------------------

# The five tables: logical id -> (name parameter, its default, the TableNames field).
TABLES = {
    "ConnectionsTable": ("TableName", "websocket-connections", "connections"),
    "MembersTable": ("MembersTableName", "chat-members", "members"),
    "MessagesTable": ("MessagesTableName", "chat-messages", "messages"),
    "RoomsTable": ("RoomsTableName", "chat-rooms", "rooms"),
    "RoomUsersTable": ("RoomUsersTableName", "chat-room-users", "room_users"),
}

# Resources a policy may name, by a short key.
CONNECTIONS = "ConnectionsTable"
NAME_INDEX = "ConnectionsTable/index/name-index"
MEMBERS = "MembersTable"
MESSAGES = "MessagesTable"
ROOMS = "RoomsTable"
PUBLIC_INDEX = "RoomsTable/index/public-index"
ROOM_USERS = "RoomUsersTable"
POST = "@connections POST"
FANOUT = "FanoutQueue"

MANAGE_CONNECTIONS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    "${Api}/${StageName}/POST/@connections/*"
}
ARNS: dict[str, Any] = {
    CONNECTIONS: {"Fn::GetAtt": ["ConnectionsTable", "Arn"]},
    NAME_INDEX: {"Fn::Sub": "${ConnectionsTable.Arn}/index/name-index"},
    MEMBERS: {"Fn::GetAtt": ["MembersTable", "Arn"]},
    MESSAGES: {"Fn::GetAtt": ["MessagesTable", "Arn"]},
    ROOMS: {"Fn::GetAtt": ["RoomsTable", "Arn"]},
    PUBLIC_INDEX: {"Fn::Sub": "${RoomsTable.Arn}/index/public-index"},
    ROOM_USERS: {"Fn::GetAtt": ["RoomUsersTable", "Arn"]},
    POST: MANAGE_CONNECTIONS_ARN,
    FANOUT: {"Fn::GetAtt": ["FanoutQueue", "Arn"]},
}

# route key -> function logical id (docs/protocol.md's actions, grouped by handler module).
HANDLERS = {
    "ConnectFunction": "wschat.handlers.connect.lambda_handler",
    "DisconnectFunction": "wschat.handlers.disconnect.lambda_handler",
    "SendMessageFunction": "wschat.handlers.send_message.lambda_handler",
    "RoomsFunction": "wschat.handlers.rooms.lambda_handler",
    "HistoryFunction": "wschat.handlers.history.lambda_handler",
    "DefaultFunction": "wschat.handlers.default.lambda_handler",
}
# Functions no route invokes: the SQS event source of the fan-out queue runs this one.
QUEUE_HANDLERS = {"DeliveryFunction": "wschat.handlers.deliver.lambda_handler"}
# Functions outside the chat service: the $connect authorizer (API Gateway invokes it before
# $connect, when sign-in is on) and the page (behind the HTTP API PageApi).
EDGE_HANDLERS = {
    "AuthorizeFunction": "wschat.handlers.authorize.lambda_handler",
    "PageFunction": "wschat.handlers.page.lambda_handler",
}
ALL_HANDLERS = {**HANDLERS, **QUEUE_HANDLERS, **EDGE_HANDLERS}
# Route key -> template function, from the chat's registry (wschat/chat/registry.py).
ROUTES = {
    key: next(f for f, h in HANDLERS.items() if h == handler)
    for key, handler in registry.routes().items()
}

# What each ChatStore method asks of DynamoDB (src/wschat/storage/dynamodb.py), as IAM actions
# on resources. A TransactWriteItems has no IAM action of its own: each Put / Update / Delete in
# it needs PutItem / UpdateItem / DeleteItem on its table. test_store_calls_are_what_the_adapter
# _sends checks this table against the adapter's real requests.
STORE_CALLS: dict[str, set[tuple[str, str]]] = {
    # PutItem alone without rooms (the seed's put_item); with rooms a transaction of Puts on the
    # record and the memberships, and BatchWriteItem puts for rooms past one transaction's 100.
    "put_connection": {
        ("dynamodb:PutItem", CONNECTIONS),
        ("dynamodb:PutItem", MEMBERS),
        ("dynamodb:BatchWriteItem", MEMBERS),
    },
    "delete_connection": {("dynamodb:DeleteItem", CONNECTIONS)},
    "get_connection": {("dynamodb:GetItem", CONNECTIONS)},  # ConsistentRead
    "scan_connection_ids": {("dynamodb:Scan", CONNECTIONS)},  # the seed's paginated Scan
    # Conditional UpdateItem of the name (ReturnValues ALL_NEW), then of each membership's name.
    "rename_connection": {("dynamodb:UpdateItem", CONNECTIONS), ("dynamodb:UpdateItem", MEMBERS)},
    "connection_ids_named": {("dynamodb:Query", NAME_INDEX)},  # Query on the GSI
    # Read the bucket (GetItem), write it back only if unchanged (conditional UpdateItem).
    "take_token": {("dynamodb:GetItem", CONNECTIONS), ("dynamodb:UpdateItem", CONNECTIONS)},
    "admit": {("dynamodb:GetItem", CONNECTIONS), ("dynamodb:UpdateItem", CONNECTIONS)},
    # Transaction: conditional Put of the membership, Update (ADD rooms) of the record.
    "join_room": {("dynamodb:PutItem", MEMBERS), ("dynamodb:UpdateItem", CONNECTIONS)},
    # Transaction: Delete of the membership, Update (DELETE rooms) of the record; a plain
    # DeleteItem of the membership when the record is already gone.
    "leave_room": {("dynamodb:DeleteItem", MEMBERS), ("dynamodb:UpdateItem", CONNECTIONS)},
    "room_members": {("dynamodb:Query", MEMBERS)},
    "room_member_ids": {("dynamodb:Query", MEMBERS)},  # ProjectionExpression: the key alone
    # DeleteItem of the record (ReturnValues ALL_OLD: its rooms), BatchWriteItem deletes of
    # its memberships.
    "remove_connection": {
        ("dynamodb:DeleteItem", CONNECTIONS),
        ("dynamodb:BatchWriteItem", MEMBERS),
    },
    # GetItem of the room's record, then a transaction: Put of the record with its new lastId
    # (conditional: every attribute as read) and Put of the message.
    "append_message": {
        ("dynamodb:GetItem", ROOMS),
        ("dynamodb:PutItem", ROOMS),
        ("dynamodb:PutItem", MESSAGES),
    },
    "message_history": {("dynamodb:Query", MESSAGES)},
    "get_message": {("dynamodb:GetItem", MESSAGES)},
    "edit_message": {("dynamodb:UpdateItem", MESSAGES)},  # conditional: author, not deleted
    # GetItem (which reaction attributes to remove), conditional UpdateItem of the tombstone.
    "delete_message": {("dynamodb:GetItem", MESSAGES), ("dynamodb:UpdateItem", MESSAGES)},
    # A conditional UpdateItem; a removal reads the message first (GetItem).
    "react": {("dynamodb:GetItem", MESSAGES), ("dynamodb:UpdateItem", MESSAGES)},
    "unread_count": {("dynamodb:Query", MESSAGES)},  # Select COUNT
    # Conditional UpdateItems of the room's record; GetItem to read it.
    "create_room": {("dynamodb:UpdateItem", ROOMS)},
    "get_room": {("dynamodb:GetItem", ROOMS)},
    "set_topic": {("dynamodb:UpdateItem", ROOMS)},
    "public_rooms": {("dynamodb:Query", PUBLIC_INDEX)},  # the sparse GSI, never a Scan
    "room_member_count": {("dynamodb:Query", MEMBERS)},  # Select COUNT
    "get_room_user": {("dynamodb:GetItem", ROOM_USERS)},
    "room_users": {("dynamodb:Query", ROOM_USERS)},
    "set_role": {("dynamodb:UpdateItem", ROOM_USERS)},
    "invite": {("dynamodb:UpdateItem", ROOM_USERS)},
    "set_muted": {("dynamodb:UpdateItem", ROOM_USERS)},
    # Conditional UpdateItem (forward only); GetItem of the mark when it was already past.
    "mark_read": {("dynamodb:UpdateItem", ROOM_USERS), ("dynamodb:GetItem", ROOM_USERS)},
    "read_marks": {("dynamodb:BatchGetItem", ROOM_USERS)},  # chunks of 100 keys
}

# What the service asks of its JobQueue (``self.queue.X``, src/wschat/delivery/sqs.py):
# SendMessageBatch is authorised by sqs:SendMessage.
QUEUE_CALLS: dict[str, set[tuple[str, str]]] = {"queue.send": {("sqs:SendMessage", FANOUT)}}
CALLS = {**STORE_CALLS, **QUEUE_CALLS}

# Every function replies to its caller at least (an error, an ack, presence, history), and the
# ones that announce or deliver post to a room's members: POST to @connections. No handler
# reads (GET) or closes (DELETE) a connection.
ALWAYS = {("execute-api:ManageConnections", POST)}

# The least-privilege table (docs/deploy.md): resource -> actions, per function. Where each
# action comes from, by ChatService code path -> ChatStore method (see STORE_CALLS):
ALLOWED: dict[str, dict[str, set[str]]] = {
    # connect -> put_connection; _announce("joined") -> room_members; a member that answers
    # 410 -> _forget -> remove_connection + room_members ("left").
    # Every function that delivers to a room may find it over the inline limit: _to_room ->
    # _enqueue -> queue.send (a plan job), and room_member_ids to count it.
    "ConnectFunction": {
        CONNECTIONS: {"dynamodb:PutItem", "dynamodb:DeleteItem"},
        MEMBERS: {"dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Query"},
        POST: {"execute-api:ManageConnections"},
        FANOUT: {"sqs:SendMessage"},
        ROOMS: {"dynamodb:GetItem"},  # ?room= of a private room: get_room, get_room_user
        ROOM_USERS: {"dynamodb:GetItem"},
    },
    # disconnect -> _forget -> remove_connection + room_members ("left").
    "DisconnectFunction": {
        CONNECTIONS: {"dynamodb:DeleteItem"},
        MEMBERS: {"dynamodb:BatchWriteItem", "dynamodb:Query"},
        POST: {"execute-api:ManageConnections"},
        FANOUT: {"sqs:SendMessage"},
    },
    # handle -> get_connection, take_token; sendMessage -> append_message, room_members;
    # direct -> connection_ids_named, append_message; delivery 410s -> _forget.
    "SendMessageFunction": {
        CONNECTIONS: {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        NAME_INDEX: {"dynamodb:Query"},
        MEMBERS: {"dynamodb:Query", "dynamodb:BatchWriteItem"},
        ROOMS: {"dynamodb:GetItem", "dynamodb:PutItem"},
        # edit / delete / react: get_message, then a conditional UpdateItem.
        MESSAGES: {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"},
        ROOM_USERS: {"dynamodb:GetItem"},  # delete: is the deleter a moderator?
        POST: {"execute-api:ManageConnections"},
        FANOUT: {"sqs:SendMessage"},
    },
    # handle -> get_connection, take_token; join -> join_room, room_members, message_history;
    # leave -> leave_room, room_members; setName -> rename_connection; who -> room_members;
    # announcements' 410s -> _forget.
    "RoomsFunction": {
        CONNECTIONS: {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        NAME_INDEX: {"dynamodb:Query"},  # read marks and moderation reach a user's tabs
        MEMBERS: {
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:BatchWriteItem",
        },
        MESSAGES: {"dynamodb:Query"},  # history pages, unread counts
        ROOMS: {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # get_room, create_room
        PUBLIC_INDEX: {"dynamodb:Query"},  # the directory
        ROOM_USERS: {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"},
        POST: {"execute-api:ManageConnections"},
        FANOUT: {"sqs:SendMessage"},
    },
    # handle -> get_connection, take_token; history -> message_history. Replies only to its
    # caller, and reply_to leaves a gone caller to $disconnect: no _forget.
    "HistoryFunction": {
        CONNECTIONS: {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        MESSAGES: {"dynamodb:Query"},
        POST: {"execute-api:ManageConnections"},
    },
    # No store at all: it only tells the sender its action is unknown.
    "DefaultFunction": {POST: {"execute-api:ManageConnections"}},
    # deliver -> _plan: room_member_ids, queue.send (the pages, the rest of the room); a
    # deliver job's 410s -> _forget. Nothing of messages, names or rate limits.
    "DeliveryFunction": {
        CONNECTIONS: {"dynamodb:DeleteItem"},
        MEMBERS: {"dynamodb:Query", "dynamodb:BatchWriteItem"},
        POST: {"execute-api:ManageConnections"},
        FANOUT: {"sqs:SendMessage"},
    },
    # No store, no queue, no posts: the authorizer checks a token (its only calls are to the
    # issuer's discovery document and JWKS, over the internet); the page serves files.
    "AuthorizeFunction": {},
    "PageFunction": {},
}


def allowed_pairs(function_id: str) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for resource, actions in ALLOWED[function_id].items()
        for action in actions
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


# --- Reading the template -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    # The gateway's own reader: CloudFormation's short forms in long form, on a SafeLoader.
    return read_template(TEMPLATE_PATH)


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


# --- 2. IAM: the template grants exactly ALLOWED ----------------------------------------------


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


def _resource_key(resource: Any) -> str | None:
    for key, arn in ARNS.items():
        if resource == arn:
            return key
    return None


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
        if logical_id not in ALLOWED:
            problems.append(f"{logical_id}: no entry in the allowed-actions table")
            continue
        allowed = allowed_pairs(logical_id)
        granted: set[tuple[str, str]] = set()
        for policy in as_list(props.get("Policies", [])):
            # Inline documents only: a SAM policy template or a managed policy name grants
            # whatever its author chose, usually more than one action on one table.
            if not (isinstance(policy, dict) and "Statement" in policy):
                problems.append(f"{logical_id}: policy {policy!r} is not an inline document")
                continue
            for statement in as_list(policy["Statement"]):
                if statement.get("Effect") != "Allow":
                    continue
                if "Condition" in statement:
                    problems.append(f"{logical_id}: a Condition this check does not read")
                for action in as_list(statement.get("Action", [])):
                    for resource in as_list(statement.get("Resource", [])):
                        key = _resource_key(resource)
                        if key is None or (action, key) not in allowed:
                            problems.append(
                                f"{logical_id}: {action} on {json.dumps(resource)} is not "
                                "something its handler does"
                            )
                        else:
                            granted.add((action, key))
        for action, key in sorted(allowed - granted):
            problems.append(f"{logical_id}: lacks {action} on {key}, which its handler needs")

    for logical_id in set(ALLOWED) - set(functions):
        problems.append(f"{logical_id}: in the allowed-actions table but not in the template")
    return problems


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    problems = iam_violations(template)
    assert not problems, "\n".join(problems)


def _statement(t: dict[str, Any], function_id: str, sid: str) -> dict[str, Any]:
    policy = t["Resources"][function_id]["Properties"]["Policies"][0]
    for statement in policy["Statement"]:
        if statement.get("Sid") == sid:
            found: dict[str, Any] = statement
            return found
    raise AssertionError(f"{function_id} has no statement {sid}")


def _set(t: dict[str, Any], function_id: str, sid: str, key: str, value: Any) -> None:
    policy = t["Resources"][function_id]["Properties"]["Policies"][0]
    for statement in policy["Statement"]:
        if statement.get("Sid") == sid:
            statement[key] = value


def _star_resource(t: dict[str, Any]) -> None:
    _set(t, "ConnectFunction", "Connections", "Resource", "*")


def _star_in_resource_list(t: dict[str, Any]) -> None:
    _set(t, "ConnectFunction", "Connections", "Resource", [ARNS[CONNECTIONS], "*"])


def _extra_action(t: dict[str, Any]) -> None:
    actions = as_list(_statement(t, "HistoryFunction", "Connections")["Action"])
    _set(t, "HistoryFunction", "Connections", "Action", [*actions, "dynamodb:DeleteItem"])


def _wildcard_action(t: dict[str, Any]) -> None:
    _set(t, "ConnectFunction", "Connections", "Action", "dynamodb:*")


def _other_table(t: dict[str, Any]) -> None:
    _set(
        t, "ConnectFunction", "Connections", "Resource", {"Fn::Sub": "arn:aws:dynamodb:*:*:table/*"}
    )


def _action_on_the_wrong_table(t: dict[str, Any]) -> None:
    # The same action the function may do, on a table it may touch, but not that one.
    _set(t, "SendMessageFunction", "Messages", "Resource", ARNS[MEMBERS])


def _table_instead_of_index(t: dict[str, Any]) -> None:
    _set(t, "SendMessageFunction", "ConnectionsByName", "Resource", ARNS[CONNECTIONS])


def _default_touches_a_table(t: dict[str, Any]) -> None:
    statements = t["Resources"]["DefaultFunction"]["Properties"]["Policies"][0]["Statement"]
    statements.append(
        {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": ARNS[CONNECTIONS]}
    )


def _get_and_delete_connections(t: dict[str, Any]) -> None:
    _set(
        t,
        "DefaultFunction",
        "ReplyToSender",
        "Resource",
        {"Fn::Sub": MANAGE_CONNECTIONS_ARN["Fn::Sub"].replace("/POST/", "/*/")},
    )


def _sam_policy_template(t: dict[str, Any]) -> None:
    t["Resources"]["DisconnectFunction"]["Properties"]["Policies"] = [
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "TableName"}}}
    ]


def _missing_action(t: dict[str, Any]) -> None:
    _set(t, "RoomsFunction", "Messages", "Action", "dynamodb:GetItem")


def _missing_forget(t: dict[str, Any]) -> None:
    # A function that posts to a room but could not forget a connection that answered 410.
    _set(t, "RoomsFunction", "Connections", "Action", ["dynamodb:GetItem", "dynamodb:UpdateItem"])


@pytest.mark.parametrize(
    "break_it",
    [
        _star_resource,
        _star_in_resource_list,
        _extra_action,
        _wildcard_action,
        _other_table,
        _action_on_the_wrong_table,
        _table_instead_of_index,
        _default_touches_a_table,
        _get_and_delete_connections,
        _sam_policy_template,
        _missing_action,
        _missing_forget,
    ],
)
def test_iam_check_catches(template: dict[str, Any], break_it: Callable[..., None]) -> None:
    # The check above is only worth something if it fails on a template that over-grants.
    broken = copy.deepcopy(template)
    break_it(broken)
    assert iam_violations(broken)


# --- 3. IAM: ALLOWED is what the registry says each function's code asks of the store -----------
# wschat/chat/registry.py declares, per action, what its use case calls; the service hands
# each use case (and the deliverer, connect and forget) a store narrowed to exactly that
# (wschat.chat.context.ScopedStore), so every test that runs the code checks the declaration.


def function_group(function_id: str) -> str:
    """The registry's function group of a template function: its handler module's name."""
    return ALL_HANDLERS[function_id].split(".")[2]


@pytest.mark.parametrize("function_id", [*HANDLERS, *QUEUE_HANDLERS])
def test_allowed_table_is_what_the_registry_declares(function_id: str) -> None:
    methods = registry.store_needs(function_group(function_id))
    unknown = methods - set(CALLS)
    assert not unknown, f"{function_id} reaches store methods STORE_CALLS lacks: {unknown}"
    needed = set(ALWAYS)
    why: dict[tuple[str, str], list[str]] = {}
    for method in sorted(methods):
        for pair in CALLS[method]:
            needed.add(pair)
            why.setdefault(pair, []).append(method)
    allowed = allowed_pairs(function_id)
    missing = {pair: why.get(pair) for pair in needed - allowed}
    extra = allowed - needed
    assert not missing, f"{function_id} needs (for the store methods named): {missing}"
    assert not extra, f"{function_id} is allowed what none of {sorted(methods)} does: {extra}"


@pytest.mark.parametrize("function_id", [*HANDLERS, *QUEUE_HANDLERS])
def test_handlers_reach_the_store_only_through_the_service(function_id: str) -> None:
    # The narrowing holds only if no handler reaches around it to the whole store.
    module = importlib.import_module(ALL_HANDLERS[function_id].rpartition(".")[0])
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ("_runtime", "store"), function_id


def test_a_use_case_calling_an_undeclared_store_method_fails() -> None:
    from wschat.chat.context import ScopedStore, UndeclaredStoreCall
    from wschat.storage.sqlite import SqliteStore

    store = SqliteStore(":memory:")
    scoped = ScopedStore(store, {"get_connection"}, "who")
    assert scoped.get_connection("c") is None
    with pytest.raises(UndeclaredStoreCall, match=r"who calls store\.room_members"):
        scoped.room_members("lobby")
    store.close()


CHAT_PACKAGES = ("wschat.service", "wschat.storage", "wschat.delivery", "wschat.handlers._runtime")


@pytest.mark.parametrize("function_id", list(EDGE_HANDLERS))
def test_edge_functions_import_no_store_queue_or_sender(function_id: str) -> None:
    # Their allowed-actions entries are empty because their code cannot reach a table, the
    # queue or @connections: it does not import what does.
    path = ROOT / "src" / (EDGE_HANDLERS[function_id].rpartition(".")[0].replace(".", "/") + ".py")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    reaching = {name for name in imported if name.startswith(CHAT_PACKAGES)}
    assert not reaching, f"{function_id} imports {reaching}"
    assert ALLOWED[function_id] == {}


# --- 4. STORE_CALLS is what the DynamoDB adapter sends -------------------------------------------


def _table_key(name: str) -> str:
    by_name = {default: logical_id for logical_id, (_, default, _) in TABLES.items()}
    return by_name.get(name, f"unknown table {name}")


def iam_of(operation: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    """The IAM (action, resource) pairs one DynamoDB request needs."""
    if operation == "TransactWriteItems":
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
        kinds["ConditionCheck"] = "ConditionCheckItem"
        return {
            (f"dynamodb:{kinds[kind]}", _table_key(body["TableName"]))
            for item in params["TransactItems"]
            for kind, body in item.items()
        }
    if operation == "TransactGetItems":
        return {
            ("dynamodb:GetItem", _table_key(item["Get"]["TableName"]))
            for item in params["TransactItems"]
        }
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return {(f"dynamodb:{operation}", _table_key(name)) for name in params["RequestItems"]}
    resource = _table_key(params["TableName"])
    if "IndexName" in params:
        resource = f"{resource}/index/{params['IndexName']}"
    return {(f"dynamodb:{operation}", resource)}


def _create_table_request(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props = template["Resources"][logical_id]["Properties"]
    request = {
        "TableName": TABLES[logical_id][1],
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props["BillingMode"],
    }
    if "GlobalSecondaryIndexes" in props:
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return request


@pytest.fixture(scope="module")
def adapter_calls(template: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Every ChatStore method of the DynamoDB adapter, run through each of its branches on
    in-process moto (tables made from this template), with the IAM each request needed."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from wschat.storage.base import Connection, NewMessage, RateLimit
    from wschat.storage.dynamodb import DynamoDBStore

    recorded: dict[str, set[tuple[str, str]]] = {}
    requests: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        requests.append((model.name, copy.deepcopy(params)))

    with pytest.MonkeyPatch.context() as env, moto.mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
            env.delenv(name, raising=False)
        client = boto3.client(
            "dynamodb",
            region_name="ap-northeast-2",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for logical_id in TABLES:
            client.create_table(**_create_table_request(template, logical_id))
        client.meta.events.register("before-parameter-build.dynamodb", record)
        store = DynamoDBStore(client, TableNames())

        def run(method: str, *args: Any, **kwargs: Any) -> Any:
            requests.clear()
            result = getattr(store, method)(*args, **kwargs)
            if inspect.isgenerator(result):
                result = list(result)
            calls = recorded.setdefault(method, set())
            for operation, params in requests:
                calls |= iam_of(operation, params)
            return result

        now_ms = int(time.time() * 1000)
        expires = now_ms // 1000 + 3600
        many_rooms = frozenset(f"room{i:03d}" for i in range(120))  # past one transaction
        run("put_connection", Connection.opened("plain", now_ms))  # no rooms: a PutItem
        run(
            "put_connection",
            Connection.opened("a", now_ms, name="alice", rooms=frozenset({"lobby"})),
        )
        run("put_connection", Connection.opened("b", now_ms, name="bob", rooms=many_rooms))
        run(
            "put_connection",
            Connection.opened("c", now_ms, name="carol", rooms=frozenset({"lobby"})),
        )
        assert run("get_connection", "a") is not None
        assert run("get_connection", "nobody") is None
        assert set(run("scan_connection_ids")) == {"plain", "a", "b", "c"}
        assert run("connection_ids_named", "alice") == ["a"]
        assert run("connection_ids_named", "") == []
        assert run("rename_connection", "a", "alice2") is not None
        assert run("rename_connection", "plain", "") is not None
        assert run("rename_connection", "nobody", "x") is None
        limit = RateLimit(rate_per_second=0.001, burst=1)
        assert run("take_token", "a", now_ms, limit) is True
        assert run("take_token", "a", now_ms, limit) is False
        assert run("take_token", "nobody", now_ms, limit) is True
        assert run("admit", "c", now_ms, limit)[1] is True
        assert run("admit", "c", now_ms, limit)[1] is False
        assert run("admit", "nobody", now_ms, limit) == (None, True)
        assert run("join_room", "general", "a", "alice2", expires) is True
        assert run("join_room", "general", "a", "alice2", expires) is False
        assert run("leave_room", "general", "a") is True
        assert run("leave_room", "general", "a") is False
        # A membership whose connection record is already gone: the plain DeleteItem branch.
        assert run("join_room", "general", "c", "carol", expires) is True
        run("delete_connection", "c")
        assert run("leave_room", "general", "c") is True
        assert "a" in {m.connection_id for m in run("room_members", "lobby")}
        assert "a" in run("room_member_ids", "lobby", limit=10)
        assert run("room_member_ids", "lobby", after="a", limit=1) != ["a"]
        assert run("room_member_count", "lobby", limit=1) == 1
        assert run("room_member_count", "lobby", limit=100) >= 2
        first = run("append_message", NewMessage("lobby", "alice2", "one", now_ms, expires))
        second = run("append_message", NewMessage("lobby", "alice2", "two", now_ms, expires))
        assert first.id < second.id
        assert [m.id for m in run("message_history", "lobby").messages] == [first.id, second.id]
        assert [m.id for m in run("message_history", "lobby", after=first.id).messages] == [
            second.id
        ]
        assert [m.id for m in run("message_history", "lobby", before=second.id).messages] == [
            first.id
        ]
        assert run("remove_connection", "b") is not None
        assert run("remove_connection", "nobody") is None
        # Issue 12's records, each branch.
        assert run("get_message", "lobby", first.id) is not None
        assert run("edit_message", "lobby", first.id, author="alice2", text="1", edited_at=now_ms)
        assert (
            run("edit_message", "lobby", first.id, author="bob", text="x", edited_at=now_ms) is None
        )
        react = {"user": "bob", "emoji": "+1", "max_emojis": 2}
        assert run("react", "lobby", first.id, on=True, **react) is not None
        assert run("react", "lobby", first.id, on=True, **{**react, "emoji": "a"}) is not None
        assert run("react", "lobby", first.id, on=True, **{**react, "emoji": "b"}) is None
        assert run("react", "lobby", first.id, on=False, **{**react, "user": "x"}) is not None
        assert run("react", "lobby", first.id, on=False, **react) is not None
        assert run("delete_message", "lobby", first.id, deleted_at=now_ms, author=None)
        assert run("delete_message", "lobby", first.id, deleted_at=now_ms, author=None) is None
        assert run("react", "lobby", first.id, on=True, **react) is None
        assert run("unread_count", "lobby", after=None, limit=10) == 1
        assert run("create_room", "lobby", owner="a", topic="", private=False, created_at=now_ms)
        assert not run("create_room", "lobby", owner="b", topic="", private=True, created_at=1)
        assert run("get_room", "lobby") is not None
        assert run("set_topic", "lobby", "t") is True
        assert run("set_topic", "nowhere", "t") is False
        assert [r.room for r in run("public_rooms", after=None, limit=5)] == ["lobby"]
        assert run("room_member_count", "lobby") >= 1
        assert run("get_room_user", "lobby", "bob") is None
        run("set_role", "lobby", "bob", "moderator")
        run("set_role", "lobby", "bob", None)
        assert run("invite", "lobby", "bob") is True
        assert run("invite", "lobby", "bob") is False
        run("set_muted", "lobby", "bob", now_ms)
        run("set_muted", "lobby", "bob", None)
        assert run("mark_read", "lobby", "bob", second.id) == second.id
        assert run("mark_read", "lobby", "bob", first.id) == second.id
        assert run("read_marks", "bob", ["lobby", "general"]) == {"lobby": second.id}
        assert [u.user for u in run("room_users", "lobby", limit=5)] == ["bob"]
    return recorded


@pytest.mark.parametrize("method", sorted(STORE_CALLS))
def test_store_calls_are_what_the_adapter_sends(
    adapter_calls: dict[str, set[tuple[str, str]]], method: str
) -> None:
    assert adapter_calls.get(method) == STORE_CALLS[method], (
        f"{method}: the adapter sent {sorted(adapter_calls.get(method, set()))}"
    )


def test_every_chat_store_method_is_accounted_for() -> None:
    from wschat.storage.base import ChatStore

    methods = {
        name
        for name, value in inspect.getmembers(ChatStore, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    assert methods == set(STORE_CALLS)


# --- 5. The WebSocket API ---------------------------------------------------------------------


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


def _invocation_uri(function_id: str) -> dict[str, str]:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31"
        f"/functions/${{{function_id}.Arn}}/invocations"
    }


def of_api(template: dict[str, Any], type_name: str, api: str = "Api") -> dict[str, Any]:
    """The resources of ``type_name`` that belong to ``api`` (the WebSocket API by default)."""
    return {
        logical_id: resource
        for logical_id, resource in resources_of_type(template, type_name).items()
        if resource["Properties"]["ApiId"] == {"Ref": api}
    }


def test_api_selects_routes_by_action(template: dict[str, Any]) -> None:
    apis = resources_of_type(template, "AWS::ApiGatewayV2::Api")
    assert {k: v["Properties"]["ProtocolType"] for k, v in apis.items()} == {
        "Api": "WEBSOCKET",
        "PageApi": "HTTP",
    }
    props = apis["Api"]["Properties"]
    assert props["ProtocolType"] == "WEBSOCKET"
    assert props["RouteSelectionExpression"] == "$request.body.action"


def test_every_protocol_action_has_a_route() -> None:
    custom = {key for key in ROUTES if not key.startswith("$")}
    assert custom == set(registry.NAMES)


def test_each_route_invokes_its_function(template: dict[str, Any]) -> None:
    routes = of_api(template, "AWS::ApiGatewayV2::Route")
    by_key = {route["Properties"]["RouteKey"]: route["Properties"] for route in routes.values()}
    assert len(by_key) == len(routes), "a route key is declared twice"
    assert set(by_key) == set(ROUTES)
    resources = template["Resources"]
    for route_key, function_id in ROUTES.items():
        route = by_key[route_key]
        assert route["ApiId"] == {"Ref": "Api"}, route_key
        integration_id = _integration_of(route["Target"])
        assert integration_id is not None, f"{route_key}: Target {route['Target']!r}"
        integration = resources[integration_id]
        assert integration["Type"] == "AWS::ApiGatewayV2::Integration"
        props = integration["Properties"]
        assert props["ApiId"] == {"Ref": "Api"}
        assert props["IntegrationType"] == "AWS_PROXY"
        assert props["IntegrationUri"] == _invocation_uri(function_id), route_key


def test_one_integration_per_function(template: dict[str, Any]) -> None:
    integrations = of_api(template, "AWS::ApiGatewayV2::Integration")
    invoked = [props["Properties"]["IntegrationUri"] for props in integrations.values()]
    assert sorted(map(json.dumps, invoked)) == sorted(
        json.dumps(_invocation_uri(function_id)) for function_id in HANDLERS
    )


@pytest.mark.parametrize("function_id", [f for f in HANDLERS if f != "DefaultFunction"])
def test_action_handlers_serve_exactly_their_routes(function_id: str) -> None:
    # run_action refuses actions outside the module's ACTIONS; every route sent to the module
    # must be one of them, and every one of them must have a route.
    module = importlib.import_module(HANDLERS[function_id].rpartition(".")[0])
    routed = {key for key, target in ROUTES.items() if target == function_id}
    if not any(key.startswith("$") for key in routed):
        assert set(module.ACTIONS) == routed


def test_api_gateway_may_invoke_each_function_from_this_api_only(
    template: dict[str, Any],
) -> None:
    permissions = resources_of_type(template, "AWS::Lambda::Permission")
    arn = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    # The authorizer from this API's authorizer alone; the page from its HTTP API.
    expected = {function_id: arn + "${Api}/*" for function_id in HANDLERS}
    expected["AuthorizeFunction"] = arn + "${Api}/authorizers/${Authorizer}"
    expected["PageFunction"] = arn + "${PageApi}/*"
    permitted = {}
    for permission in permissions.values():
        props = permission["Properties"]
        assert props["Action"] == "lambda:InvokeFunction"
        assert props["Principal"] == "apigateway.amazonaws.com"
        permitted[ref_target(props["FunctionName"])] = props["SourceArn"]["Fn::Sub"]
    assert len(permitted) == len(permissions)
    assert permitted == expected
    assert permissions["AuthorizePermission"]["Condition"] == "SignInOn"


def test_stage_serves_the_current_routes_with_throttling(template: dict[str, Any]) -> None:
    stages = of_api(template, "AWS::ApiGatewayV2::Stage")
    assert list(stages) == ["Stage"]
    props = stages["Stage"]["Properties"]
    assert props["ApiId"] == {"Ref": "Api"}
    assert props["StageName"] == {"Ref": "StageName"}
    assert template["Parameters"]["StageName"]["Default"] == "prod"
    # Either API Gateway redeploys on every change, or a Deployment exists after every route.
    routes = set(of_api(template, "AWS::ApiGatewayV2::Route"))
    if props.get("AutoDeploy") is not True:
        deployment = template["Resources"][ref_target(props["DeploymentId"]) or ""]
        assert set(as_list(deployment.get("DependsOn", []))) >= routes
    else:
        # The first deployment already has every route.
        assert set(as_list(stages["Stage"].get("DependsOn", []))) >= routes
    settings = props["DefaultRouteSettings"]
    assert "ThrottlingRateLimit" in settings and "ThrottlingBurstLimit" in settings


def test_outputs_name_the_urls_tables_and_functions(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    websocket_url = "wss://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}"
    assert outputs["WebSocketURL"]["Value"] == {"Fn::Sub": websocket_url}
    assert outputs["ConnectionsURL"]["Value"] == {
        "Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}/@connections"
    }
    for logical_id in TABLES:
        assert outputs[f"{logical_id}Name"]["Value"] == {"Ref": logical_id}
    for function_id in [*HANDLERS, *QUEUE_HANDLERS, "PageFunction"]:
        assert outputs[f"{function_id}Arn"]["Value"] == {"Fn::GetAtt": [function_id, "Arn"]}
    page_url = "https://${PageApi}.execute-api.${AWS::Region}.amazonaws.com/"
    assert outputs["PageURL"]["Value"] == {"Fn::Sub": page_url}
    for name in ("UserPoolId", "UserPoolClientId", "SignInDomain"):
        assert outputs[name]["Condition"] == "UserPoolOn"


def test_the_page_is_the_page_function_behind_its_http_api(template: dict[str, Any]) -> None:
    [route] = of_api(template, "AWS::ApiGatewayV2::Route", "PageApi").values()
    assert route["Properties"]["RouteKey"] == "$default"
    integration_id = _integration_of(route["Properties"]["Target"])
    assert integration_id is not None
    integration = template["Resources"][integration_id]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["PageFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    [stage] = of_api(template, "AWS::ApiGatewayV2::Stage", "PageApi").values()
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["AutoDeploy"] is True
    page = function_properties(template, "PageFunction")["Environment"]["Variables"]
    assert page["WSCHAT_WEBSOCKET_URL"] == {
        "Fn::Sub": "wss://${Api}.execute-api.${AWS::Region}.amazonaws.com/${StageName}"
    }


def test_sign_in_puts_the_authorizer_on_connect_only(template: dict[str, Any]) -> None:
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in of_api(template, "AWS::ApiGatewayV2::Route").values()
    }
    connect = routes.pop("$connect")
    assert connect["AuthorizationType"] == {"Fn::If": ["SignInOn", "CUSTOM", "NONE"]}
    assert connect["AuthorizerId"] == {
        "Fn::If": ["SignInOn", {"Ref": "Authorizer"}, {"Ref": "AWS::NoValue"}]
    }
    assert {route["AuthorizationType"] for route in routes.values()} == {"NONE"}
    authorizer = template["Resources"]["Authorizer"]
    assert authorizer["Condition"] == "SignInOn"
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "REQUEST"
    assert props["AuthorizerUri"] == _invocation_uri("AuthorizeFunction")
    assert props["IdentitySource"] == ["route.request.querystring.token"]
    assert template["Resources"]["AuthorizeFunction"]["Condition"] == "SignInOn"


@pytest.mark.parametrize(
    ("parameters", "signed_in"),
    [
        ({}, False),
        ({"AuthSecret": "a-secret-of-at-least-32-bytes-long!!"}, True),
        ({"OidcIssuer": "https://issuer.example", "OidcAudience": "client"}, True),
    ],
    ids=["off", "secret", "issuer"],
)
def test_the_local_gateway_runs_the_authorizer_as_the_parameters_say(
    parameters: dict[str, str], signed_in: bool
) -> None:
    api = load_api(TEMPLATE_PATH, parameters=parameters)
    authorizer = api.routes["$connect"].authorizer
    assert (authorizer is not None) == signed_in
    if authorizer is not None:
        assert authorizer.function.handler == EDGE_HANDLERS["AuthorizeFunction"]
        assert authorizer.identity_sources == ("route.request.querystring.token",)
    for function in api.functions:
        assert ChatConfig.from_env(function.environment).auth_required == signed_in


def test_the_user_pool_signs_in_the_page_with_pkce_only(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for logical_id in ("UserPool", "UserPoolClient", "UserPoolDomain"):
        assert resources[logical_id]["Condition"] == "UserPoolOn", logical_id
    client = resources["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False  # a page cannot keep a secret: PKCE instead
    assert client["AllowedOAuthFlows"] == ["code"]
    page_url = {"Fn::Sub": "https://${PageApi}.execute-api.${AWS::Region}.amazonaws.com/"}
    assert client["CallbackURLs"] == [page_url]
    assert client["LogoutURLs"] == [page_url]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["WSCHAT_OIDC_AUDIENCE"] == {
        "Fn::If": ["UserPoolOn", {"Ref": "UserPoolClient"}, {"Ref": "OidcAudience"}]
    }
    issuer = variables["WSCHAT_OIDC_ISSUER"]["Fn::If"]
    assert issuer[0] == "UserPoolOn"
    assert issuer[1] == {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}"}


# --- 6. The tables ------------------------------------------------------------------------------


def test_tables_are_named_by_parameters_with_the_design_defaults(
    template: dict[str, Any],
) -> None:
    assert set(resources_of_type(template, "AWS::DynamoDB::Table")) == set(TABLES)
    for logical_id, (parameter, default, field) in TABLES.items():
        props = template["Resources"][logical_id]["Properties"]
        assert props["TableName"] == {"Ref": parameter}
        assert template["Parameters"][parameter]["Default"] == default
        # The name the code falls back to without the environment variable is the same.
        assert getattr(TableNames(), field) == default


@pytest.mark.parametrize("logical_id", list(TABLES))
def test_tables_are_on_demand_encrypted_and_recoverable(
    template: dict[str, Any], logical_id: str
) -> None:
    props = template["Resources"][logical_id]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_table_keys_index_and_ttl(template: dict[str, Any]) -> None:
    def keys(logical_id: str) -> list[tuple[str, str, str]]:
        props = template["Resources"][logical_id]["Properties"]
        types = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
        return [
            (k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
            for k in props["KeySchema"]
        ]

    assert keys("ConnectionsTable") == [("connectionId", "HASH", "S")]  # the seed's
    assert keys("MembersTable") == [("room", "HASH", "S"), ("connectionId", "RANGE", "S")]
    assert keys("MessagesTable") == [("room", "HASH", "S"), ("id", "RANGE", "S")]
    assert keys("RoomsTable") == [("room", "HASH", "S")]
    assert keys("RoomUsersTable") == [("room", "HASH", "S"), ("user", "RANGE", "S")]

    connections = template["Resources"]["ConnectionsTable"]["Properties"]
    assert connections["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "name-index",
            "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    assert {"AttributeName": "name", "AttributeType": "S"} in connections["AttributeDefinitions"]
    rooms = template["Resources"]["RoomsTable"]["Properties"]
    assert rooms["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "public-index",
            "KeySchema": [
                {"AttributeName": "listed", "KeyType": "HASH"},
                {"AttributeName": "room", "KeyType": "RANGE"},
            ],
            "Projection": {
                "ProjectionType": "INCLUDE",
                "NonKeyAttributes": ["owner", "topic", "createdAt"],
            },
        }
    ]
    assert {"AttributeName": "listed", "AttributeType": "S"} in rooms["AttributeDefinitions"]

    ttl = {"AttributeName": "expiresAt", "Enabled": True}
    for logical_id in ("ConnectionsTable", "MembersTable", "MessagesTable"):
        props = template["Resources"][logical_id]["Properties"]
        assert props["TimeToLiveSpecification"] == ttl, logical_id
    # A room's lastId must outlive its messages, or ids could repeat; a user's role and read
    # mark outlive their connections.
    for logical_id in ("RoomsTable", "RoomUsersTable"):
        assert "TimeToLiveSpecification" not in template["Resources"][logical_id]["Properties"]


def test_tables_match_what_the_store_creates(template: dict[str, Any]) -> None:
    # wschat.storage.dynamodb_tables defines the tables for development servers and tests; the
    # deployed ones must be the same, or the adapter's requests fail only on AWS.
    from wschat.storage import dynamodb_tables

    names = TableNames()
    definitions = {d["TableName"]: d for d in dynamodb_tables.table_definitions(names)}
    by_name = {default: logical_id for logical_id, (_, default, _) in TABLES.items()}
    assert set(definitions) == set(by_name)
    for name, definition in definitions.items():
        props = template["Resources"][by_name[name]]["Properties"]

        def canon(items: list[dict[str, Any]]) -> list[str]:
            return sorted(json.dumps(item, sort_keys=True) for item in items)

        assert props["KeySchema"] == definition["KeySchema"], name
        assert canon(props["AttributeDefinitions"]) == canon(definition["AttributeDefinitions"])
        assert canon(props.get("GlobalSecondaryIndexes", [])) == canon(
            definition.get("GlobalSecondaryIndexes", [])
        ), name
        assert props["BillingMode"] == definition["BillingMode"], name
        has_ttl = "TimeToLiveSpecification" in props
        assert has_ttl == (name in dynamodb_tables.ttl_tables(names)), name


# --- 7. The functions' environment ----------------------------------------------------------------

ENVIRONMENT = {
    "WEBSOCKET_TABLE": {"Ref": "ConnectionsTable"},
    "MEMBERS_TABLE": {"Ref": "MembersTable"},
    "MESSAGES_TABLE": {"Ref": "MessagesTable"},
    "ROOMS_TABLE": {"Ref": "RoomsTable"},
    "ROOM_USERS_TABLE": {"Ref": "RoomUsersTable"},
    "WSCHAT_STORE": "dynamodb",
    "POWERTOOLS_SERVICE_NAME": "wschat",
    "POWERTOOLS_METRICS_NAMESPACE": "wschat",
    "LOG_LEVEL": {"Ref": "LogLevel"},
    "WSCHAT_MESSAGE_TTL_DAYS": {"Ref": "MessageTtlDays"},
    "WSCHAT_RATE_PER_SECOND": {"Ref": "RatePerSecond"},
    "WSCHAT_RATE_BURST": {"Ref": "RateBurst"},
    "WSCHAT_MAX_MESSAGE_CHARS": {"Ref": "MaxMessageChars"},
    "WSCHAT_AUTH_SECRET": {"Ref": "AuthSecret"},
    "WSCHAT_OIDC_ISSUER": {
        "Fn::If": [
            "UserPoolOn",
            {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}"},
            {"Ref": "OidcIssuer"},
        ]
    },
    "WSCHAT_OIDC_AUDIENCE": {
        "Fn::If": ["UserPoolOn", {"Ref": "UserPoolClient"}, {"Ref": "OidcAudience"}]
    },
    "WSCHAT_OIDC_METADATA_URL": {"Ref": "OidcMetadataUrl"},
    "WSCHAT_OIDC_NAME_CLAIM": {"Fn::If": ["UserPoolOn", "cognito:username", ""]},
    "WSCHAT_FANOUT_QUEUE_URL": {"Ref": "FanoutQueue"},
    "WSCHAT_FANOUT_INLINE_LIMIT": {"Ref": "FanoutInlineLimit"},
    "WSCHAT_FANOUT_PAGE_SIZE": {"Ref": "FanoutPageSize"},
}
# What the delivery function gets beyond that: its share of the @connections budget.
DELIVERY_ENVIRONMENT = {
    "WSCHAT_POST_BUDGET": {"Ref": "PostBudget"},
    "WSCHAT_DELIVERY_CONCURRENCY": {"Ref": "DeliveryConcurrency"},
}


@pytest.mark.parametrize("function_id", list(ALL_HANDLERS))
def test_every_function_gets_the_whole_environment(
    template: dict[str, Any], function_id: str
) -> None:
    variables = function_properties(template, function_id)["Environment"]["Variables"]
    extra = DELIVERY_ENVIRONMENT if function_id in QUEUE_HANDLERS else {}
    if function_id == "PageFunction":
        extra = {"WSCHAT_WEBSOCKET_URL": variables["WSCHAT_WEBSOCKET_URL"]}
    assert variables == {**ENVIRONMENT, **extra}


def test_table_variables_are_the_ones_the_store_reads() -> None:
    by_field = {field: logical_id for logical_id, (_, _, field) in TABLES.items()}
    for field, variable in TableNames.ENV.items():
        assert ENVIRONMENT[variable] == {"Ref": by_field[field]}


def test_parameter_defaults_are_the_code_defaults() -> None:
    # The chat configuration a function gets from the template's defaults is the one the code
    # has without any environment: 30 days of history, 10/s in bursts of 20, 4,000 characters,
    # auth off.
    api = load_api(TEMPLATE_PATH)
    for function in api.functions:
        assert ChatConfig.from_env(function.environment) == ChatConfig(), function.name
        assert TableNames.from_env(function.environment) == TableNames(), function.name


def test_parameters_reach_the_chat_configuration() -> None:
    api = load_api(
        TEMPLATE_PATH,
        parameters={
            "AuthSecret": "s3cret",
            "MessageTtlDays": "7",
            "RatePerSecond": "2.5",
            "RateBurst": "5",
            "MaxMessageChars": "280",
            "MessagesTableName": "chat-messages-dev",
        },
    )
    config = ChatConfig.from_env(api.functions[0].environment)
    assert config.auth_required
    assert AuthSettings.from_env(api.functions[0].environment).secret == "s3cret"
    assert config.message_ttl_seconds == 7 * 86400
    assert config.rate_limit.rate_per_second == 2.5 and config.rate_limit.burst == 5
    assert config.max_message_chars == 280
    assert TableNames.from_env(api.functions[0].environment).messages == "chat-messages-dev"


def test_auth_secret_is_hidden_and_off_by_default(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["AuthSecret"]
    assert parameter["NoEcho"] is True
    assert parameter["Default"] == ""
    assert "AuthSecret" not in json.dumps(template["Outputs"])


# --- 8. Handlers and what sam build ships -----------------------------------------------------


def test_functions_and_their_handlers(template: dict[str, Any]) -> None:
    functions = resources_of_type(template, "AWS::Serverless::Function")
    assert set(functions) == set(ALL_HANDLERS)
    connect_name = functions["ConnectFunction"]["Properties"]["FunctionName"]
    assert connect_name == {"Fn::Sub": "${AWS::StackName}-websocket-connect"}
    for function_id, handler in ALL_HANDLERS.items():
        props = function_properties(template, function_id)
        assert props["Handler"] == handler
        assert props["Runtime"] == "python3.12"
        assert props["CodeUri"] == "src/"
        name = props["FunctionName"]["Fn::Sub"]
        prefix = (
            "${AWS::StackName}-"
            if function_id == "PageFunction"
            else "${AWS::StackName}-websocket-"
        )
        assert name.startswith(prefix), function_id


@pytest.mark.parametrize("function_id", list(ALL_HANDLERS))
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


# Run in a fresh interpreter that sees only what a Lambda package has: a top-level module owned
# by an installed distribution that is neither shipped nor in the runtime cannot be imported
# (PyJWT, for one, imports cryptography only if it is there). Then the handlers, the DynamoDB
# store they open on their first event, and a token round trip (wschat.auth, on $connect).
_AS_ON_LAMBDA = """
import importlib, importlib.abc, importlib.metadata, json, re, sys
sys.path.insert(0, SRC)
owners = importlib.metadata.packages_distributions()
blocked = set()

class NotInThePackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(top, [])}
        if dists and not dists & AVAILABLE:
            blocked.add(top)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInThePackage())
for name in MODULES:
    importlib.import_module(name)
from wschat.auth import issue_token, verify_token
assert verify_token(issue_token("alice", "k" * 32), "k" * 32) == "alice"
import jwt.algorithms
assert jwt.algorithms.has_crypto, "without cryptography PyJWT cannot check an issuer's RS256 keys"
imported = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"blocked": sorted(blocked), "imported": imported}))
"""


def test_requirements_cover_what_the_handlers_import() -> None:
    modules = [handler.rpartition(".")[0] for handler in ALL_HANDLERS.values()]
    modules.append("wschat.storage.dynamodb")
    available = _with_dependencies({r.name for r in _requirements()}) | RUNTIME_PROVIDED
    available.add("wschat")
    code = (
        f"SRC = {str(ROOT / 'src')!r}\n"
        f"MODULES = {modules!r}\n"
        f"AVAILABLE = {sorted(available)!r}\n"
        "AVAILABLE = set(AVAILABLE)\n" + _AS_ON_LAMBDA
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, (
        "a handler needs a package src/requirements.txt does not ship:\n" + completed.stderr
    )
    report = json.loads(completed.stdout)
    assert "jwt" in report["imported"]  # PyJWT ships: wschat.auth checks tokens on $connect

"""Lambda REQUEST authorizers on ``$connect``, as API Gateway runs them for WebSocket APIs.

The pure part (issue 11, first piece): what the gateway checks before invoking an authorizer,
the event it sends, and what it makes of the answer. AWS's rules ("Control access to WebSocket
APIs with AWS Lambda REQUEST authorizers", API Gateway developer guide):

- only ``$connect`` is authorized; the event is ``type: REQUEST`` with a ``methodArn`` of
  ``arn:aws:execute-api:{region}:{account}:{api}/{stage}/$connect``, the handshake's headers and
  query string (single and multi-value), stage variables and the ``requestContext``;
- an identity source missing from the request: 401, and the authorizer is not invoked;
- the answer is an IAM policy: ``principalId``, a ``policyDocument`` whose statements allow or
  deny ``execute-api:Invoke`` on resources matched against ``methodArn`` (``*`` and ``?``
  wildcards; an explicit Deny wins, no matching Allow is a deny), and an optional ``context``
  of string, number or boolean values. Allow: ``$connect`` runs, and every later event of the
  connection carries ``requestContext.authorizer`` = ``{"principalId": ..., **context}``;
  deny: 403; the function failing with the message ``Unauthorized``: 401; any other failure
  or an answer of another shape: 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
INVOKE_ACTIONS = {"execute-api:invoke", "execute-api:*", "*"}
# API Gateway's quota on a Lambda authorizer's result: a bigger answer fails the request (500).
MAX_RESULT_BYTES = 8 * 1024
_SOURCE = re.compile(r"^route\.request\.(header|querystring)\.(.+)$")
_STAGE_VARIABLE = re.compile(r"^stageVariables\.(.+)$")


class AuthorizerConfigError(ValueError):
    """An identity source this gateway cannot read (a template error, named at start)."""


@dataclass(frozen=True)
class Decision:
    """What API Gateway does with a handshake after its authorizer: ``status`` 200 lets
    ``$connect`` run with ``authorizer`` in its requestContext; 401, 403 or 500 refuse it."""

    status: int
    authorizer: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def method_arn(region: str, api_id: str, stage: str, account_id: str = ACCOUNT_ID) -> str:
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/$connect"


def check_identity_sources(sources: Sequence[str]) -> None:
    """Refuse, at start, identity sources a handshake cannot carry here."""
    for source in sources:
        if not (_SOURCE.match(source) or _STAGE_VARIABLE.match(source)):
            raise AuthorizerConfigError(
                f"identity source {source!r}: expected route.request.header.<name>, "
                "route.request.querystring.<name> or stageVariables.<name>"
            )


def missing_identity(
    sources: Sequence[str],
    headers: Sequence[tuple[str, str]],
    query: Mapping[str, Sequence[str]],
    stage_variables: Mapping[str, str] | None = None,
) -> str | None:
    """The first identity source the request lacks (or has empty), or None when all are
    there: API Gateway answers 401 then, without invoking the authorizer."""
    header_names = {name.lower() for name, value in headers if value.strip()}
    for source in sources:
        match = _SOURCE.match(source)
        if match is not None:
            kind, name = match.groups()
            present = (
                name.lower() in header_names
                if kind == "header"
                else any(value for value in query.get(name, ()))
            )
        else:
            variable = _STAGE_VARIABLE.match(source)
            present = bool(variable and (stage_variables or {}).get(variable.group(1)))
        if not present:
            return source
    return None


def request_event(
    arn: str,
    headers: Sequence[tuple[str, str]],
    query: Mapping[str, Sequence[str]],
    request_context: Mapping[str, Any],
    stage_variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The REQUEST authorizer event. Single-value maps keep the last value of a repeated
    header or parameter, as API Gateway's do; absent ones are null, as on AWS."""
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    return {
        "type": "REQUEST",
        "methodArn": arn,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: list(v)[-1] for k, v in query.items() if v} or None,
        "multiValueQueryStringParameters": {k: list(v) for k, v in query.items() if v} or None,
        "stageVariables": dict(stage_variables) if stage_variables else None,
        "requestContext": dict(request_context),
    }


def failure(error_message: str | None) -> Decision:
    """The decision when the authorizer function failed (raised, timed out)."""
    if (error_message or "").strip() == "Unauthorized":
        return Decision(401, reason="the authorizer said Unauthorized")
    return Decision(500, reason=f"the authorizer failed: {error_message or 'no message'}")


def decide(answer: Any, arn: str) -> Decision:
    """What the authorizer's answer means for the request to ``arn``."""
    if not isinstance(answer, dict):
        return Decision(500, reason="the authorizer's answer is not an object")
    if len(json.dumps(answer, separators=(",", ":"), default=str)) > MAX_RESULT_BYTES:
        return Decision(500, reason=f"the authorizer's answer is over {MAX_RESULT_BYTES} bytes")
    principal = answer.get("principalId")
    if not isinstance(principal, str) or not principal:
        return Decision(500, reason="the authorizer's answer has no principalId")
    document = answer.get("policyDocument")
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        return Decision(500, reason="the authorizer's answer has no policyDocument.Statement")
    context = answer.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict) or not all(
        isinstance(key, str) and isinstance(value, str | int | float | bool)
        for key, value in context.items()
    ):
        return Decision(
            500, reason="the authorizer's context must map names to strings, numbers or booleans"
        )
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            return Decision(500, reason="a policy statement without Effect Allow or Deny")
        actions = _strings(statement.get("Action"))
        resources = _strings(statement.get("Resource"))
        if actions is None or resources is None:
            return Decision(500, reason="a policy statement without Action or Resource")
        if not any(action.lower() in INVOKE_ACTIONS for action in actions):
            continue
        if not any(_matches(pattern, arn) for pattern in resources):
            continue
        if statement["Effect"] == "Deny":
            return Decision(403, reason="the policy denies $connect")
        allowed = True
    if not allowed:
        return Decision(403, reason="no policy statement allows $connect")
    return Decision(200, {"principalId": principal, **context})


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return None


def _matches(pattern: str, arn: str) -> bool:
    """IAM's resource match: ``*`` any run of characters, ``?`` any one, the rest literal."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, arn, flags=re.DOTALL) is not None

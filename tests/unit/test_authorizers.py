"""The pure core of Lambda REQUEST authorizers on ``$connect`` (src/wschat/gateway/authorizers.py):
identity sources, the event, and what an answer means, by AWS's documented rules."""

from __future__ import annotations

from typing import Any

import pytest

from wschat.gateway.authorizers import (
    AuthorizerConfigError,
    check_identity_sources,
    decide,
    failure,
    method_arn,
    missing_identity,
    request_event,
)

ARN = method_arn("ap-northeast-2", "abcdef123", "prod")


def policy(effect: str = "Allow", resource: Any = ARN, action: Any = "execute-api:Invoke") -> Any:
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": action, "Resource": resource}],
        },
    }


def test_method_arn_ends_with_connect() -> None:
    assert ARN == "arn:aws:execute-api:ap-northeast-2:123456789012:abcdef123/prod/$connect"


def test_an_allowing_policy_lets_connect_run_with_principal_and_context() -> None:
    answer = policy()
    answer["context"] = {"name": "minji", "admin": False, "level": 3}

    decision = decide(answer, ARN)

    assert decision.allowed
    assert decision.authorizer == {
        "principalId": "user-1",
        "name": "minji",
        "admin": False,
        "level": 3,
    }


@pytest.mark.parametrize(
    "resource",
    [ARN, "arn:aws:execute-api:ap-northeast-2:123456789012:abcdef123/*", "*", [ARN, "other"]],
)
def test_resources_match_with_iam_wildcards(resource: Any) -> None:
    assert decide(policy(resource=resource), ARN).status == 200


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:execute-api:ap-northeast-2:123456789012:abcdef123/dev/$connect",
        # An HTTP-style method/path pattern has one segment too many for $connect.
        "arn:aws:execute-api:ap-northeast-2:123456789012:abcdef123/prod/*/*",
    ],
)
def test_a_policy_for_other_resources_is_a_deny(resource: str) -> None:
    assert decide(policy(resource=resource), ARN).status == 403


def test_an_explicit_deny_wins_over_an_allow() -> None:
    answer = policy()
    answer["policyDocument"]["Statement"].append(
        {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": "*"}
    )
    assert decide(answer, ARN).status == 403


def test_statements_for_other_actions_do_not_allow() -> None:
    assert decide(policy(action="execute-api:ManageConnections"), ARN).status == 403
    assert decide(policy(action=["s3:GetObject", "execute-api:*"]), ARN).status == 200


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "Allow",
        {"policyDocument": policy()["policyDocument"]},  # no principalId
        {"principalId": "u", "policyDocument": {"Statement": []}},
        {"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Maybe"}]}},
        {**policy(), "context": {"nested": {"a": 1}}},
        {**policy(), "context": {"list": [1]}},
        {**policy(), "context": "text"},
    ],
)
def test_a_malformed_answer_is_a_500(answer: Any) -> None:
    assert decide(answer, ARN).status == 500


def test_an_answer_over_api_gateways_8_kb_result_quota_is_a_500() -> None:
    answer = policy()
    answer["context"] = {"note": "x" * 7_000}
    assert decide(answer, ARN).status == 200
    answer["context"] = {"note": "x" * 8_200}
    decision = decide(answer, ARN)
    assert decision.status == 500 and "8192 bytes" in decision.reason


def test_unauthorized_is_401_and_any_other_failure_500() -> None:
    assert failure("Unauthorized").status == 401
    assert failure("KeyError: 'token'").status == 500
    assert failure(None).status == 500


def test_a_missing_identity_source_is_named() -> None:
    sources = ["route.request.header.Auth", "route.request.querystring.token"]
    headers = [("Host", "x"), ("auth", "Bearer abc")]  # header names are case-insensitive

    assert missing_identity(sources, headers, {"token": ["t"]}) is None
    assert missing_identity(sources, headers, {}) == "route.request.querystring.token"
    assert missing_identity(sources, [("Auth", " ")], {"token": ["t"]}) == sources[0]
    assert missing_identity(["stageVariables.key"], [], {}) == "stageVariables.key"
    assert missing_identity(["stageVariables.key"], [], {}, {"key": "v"}) is None


def test_identity_sources_the_gateway_cannot_read_are_refused_at_start() -> None:
    check_identity_sources(["route.request.header.Auth", "stageVariables.x"])
    with pytest.raises(AuthorizerConfigError, match=r"context\.requestId"):
        check_identity_sources(["context.requestId"])


def test_the_event_has_api_gateways_shape() -> None:
    headers = [("Host", "h"), ("X-Multi", "1"), ("X-Multi", "2")]
    query = {"token": ["a", "b"], "empty": []}

    event = request_event(ARN, headers, query, {"routeKey": "$connect", "eventType": "CONNECT"})

    assert event["type"] == "REQUEST" and event["methodArn"] == ARN
    assert event["headers"] == {"Host": "h", "X-Multi": "2"}
    assert event["multiValueHeaders"] == {"Host": ["h"], "X-Multi": ["1", "2"]}
    assert event["queryStringParameters"] == {"token": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["a", "b"]}
    assert event["stageVariables"] is None
    assert event["requestContext"]["eventType"] == "CONNECT"
    assert request_event(ARN, [], {}, {})["queryStringParameters"] is None

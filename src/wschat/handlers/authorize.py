"""The ``$connect`` REQUEST authorizer: checks the ``?token=`` once per connection
(``wschat.auth``) and answers API Gateway with an IAM policy.

- a valid token: Allow ``execute-api:Invoke`` on the ``methodArn``, ``principalId`` the
  token's subject and ``context`` its identity (``name``, ``sub``, ``iss``), which API Gateway
  puts in ``requestContext.authorizer`` of every later event of the connection;
- a bad token: Deny (API Gateway answers the handshake 403); no token: ``Unauthorized`` (401;
  the template's identity source already answers that without invoking this);
- the issuer's keys unreadable, or settings that cannot check anyone: the function fails and
  API Gateway answers 500. The next connect tries again.

The event holds the token (query string, headers): nothing here logs the event. An event of
any other shape (no query string, a ``requestContext`` that is no object) is one without a
token: ``Unauthorized``, never another error.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from wschat.auth import (
    AuthError,
    AuthMisconfigured,
    AuthSettings,
    AuthUnavailable,
    TokenVerifier,
)
from wschat.observability import get_logger, publish_counts


@cache
def verifier() -> TokenVerifier:
    """One per execution environment: the issuer's keys are fetched on the first connect."""
    return TokenVerifier(AuthSettings.from_env(os.environ))


def policy(principal_id: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """An id for the log line: text only, short, and with a UTF-8 form (or the line is lost)."""
    if not isinstance(value, str):
        return None
    return value[:128].encode("utf-8", "replace").decode("utf-8")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    log = get_logger()
    log.clear_state()
    event = _object(event)
    request = _object(event.get("requestContext"))
    log.append_keys(
        connection_id=_text(request.get("connectionId")),
        request_id=_text(request.get("requestId")),
        route="$authorizer",
        function_request_id=getattr(context, "aws_request_id", None),
    )
    method_arn = event.get("methodArn")
    method_arn = method_arn if isinstance(method_arn, str) else ""
    token = _object(event.get("queryStringParameters")).get("token")
    try:
        identity = verifier().verify(token if isinstance(token, str) else None)
    except AuthError as exc:
        log.info("connect refused", extra={"status": exc.status, "reason": exc.reason})
        publish_counts({"ConnectsRefused": 1})
        if exc.status == 401:
            raise Exception("Unauthorized") from None  # API Gateway's way to a 401
        return policy("anonymous", "Deny", method_arn)
    except AuthUnavailable as exc:
        log.error(
            "connect not checked: the issuer's keys are unavailable", extra={"reason": str(exc)}
        )
        raise
    except AuthMisconfigured as exc:
        log.error(
            "connect not checked: the settings cannot check anyone", extra={"reason": str(exc)}
        )
        raise
    log.info("connect allowed", extra={"user_name": identity.name})
    return {**policy(identity.subject, "Allow", method_arn), "context": identity.context()}

"""The chat page on AWS: the function behind an HTTP API's ``$default`` route (payload format
2.0), serving ``wschat.page`` over https for the stage at ``WSCHAT_WEBSOCKET_URL``, with the
issuer's sign-in settings (``WSCHAT_OIDC_*``) when they are set."""

from __future__ import annotations

import base64
import os
from functools import cache
from typing import Any
from urllib.parse import unquote

from wschat.page import ChatPage, SignInSettings


@cache
def chat_page() -> ChatPage:
    """One per execution environment: the issuer's discovery document is read once."""
    websocket_url = os.environ.get("WSCHAT_WEBSOCKET_URL")
    if not websocket_url:
        raise RuntimeError("WSCHAT_WEBSOCKET_URL is not set: the page has no stage to talk to")
    return ChatPage(websocket_url, SignInSettings.from_env(os.environ), https=True)


def _path(event: dict[str, Any]) -> str:
    """The path within the page: percent-decoded once, without a named stage's prefix (a
    ``$default`` stage has none)."""
    context = event.get("requestContext") or {}
    path = unquote(str(event.get("rawPath") or "/"))
    stage = str(context.get("stage") or "$default")
    if stage != "$default":
        prefix = f"/{stage}"
        if path == prefix:
            return "/"
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return path


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or "GET").upper()
    response = chat_page().respond(method, _path(event))
    content_type = response.content_type
    text = content_type.startswith("text/") or content_type.startswith("application/json")
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.body.decode() if text else base64.b64encode(response.body).decode(),
        "isBase64Encoded": not text,
    }

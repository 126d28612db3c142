"""The seed's ``sendMessage`` Lambda, as the tutorial builds it: the baseline of bench/fanout.py.

The seed reads ``message`` from the JSON body, collects every connection id with a paginated
DynamoDB ``scan`` of ``websocket-connections`` and calls ``post_to_connection`` once per id,
one after the other, with a plain boto3 ``apigatewaymanagementapi`` client. This copy keeps
that algorithm and swaps only the table: the ids come from the same SQLite store wschat's
handler reads, through ``ConnectionStore.scan_connection_ids`` (a paginated scan too), so both
sides of the benchmark fan out to the same recipients.

Kept as the seed has it, on purpose:

- the raw ``message`` text is posted, not a JSON event;
- posts are sequential, and nothing catches ``GoneException``: one closed connection in the
  table aborts the loop and nobody after it gets the message.

One thing is kinder to the seed than the AWS tutorial it follows: the management client is
built once per endpoint and reused while warm, instead of once per invocation (~0.1 s each),
so the benchmark compares fan-out strategies only.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

from wschat.storage import ConnectionStore, open_store_from_env

_store: ConnectionStore | None = None
_clients: dict[str, Any] = {}


def _connections_table() -> ConnectionStore:
    # The seed's module-level ``dynamodb = boto3.client('dynamodb')``: opened once per cold start.
    global _store
    if _store is None:
        _store = open_store_from_env()
    return _store


def _management_client(event: dict[str, Any]) -> Any:
    context = event["requestContext"]
    # The seed's endpoint is https://{domainName}/{stage}; an explicit endpoint_url outranks
    # botocore's AWS_ENDPOINT_URL_* variables, so honour the override here as wschat does.
    endpoint_url = os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI") or (
        f"https://{context['domainName']}/{context['stage']}"
    )
    client = _clients.get(endpoint_url)
    if client is None:
        client = _clients[endpoint_url] = boto3.client(
            "apigatewaymanagementapi", endpoint_url=endpoint_url
        )
    return client


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    message = json.loads(event["body"])["message"]

    connection_ids = []
    for connection_id in _connections_table().scan_connection_ids():
        connection_ids.append(connection_id)

    client = _management_client(event)
    for connection_id in connection_ids:
        client.post_to_connection(Data=message, ConnectionId=connection_id)

    return {}


def reset_store() -> None:
    """Close the store; the next invocation opens the one the environment names."""
    global _store
    if _store is not None:
        _store.close()
        _store = None


def reset() -> None:
    """Forget all cold-start state: the store and the clients."""
    reset_store()
    for client in _clients.values():
        client.close()
    _clients.clear()

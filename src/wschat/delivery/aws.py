"""Sender over boto3's ``apigatewaymanagementapi`` client: the real @connections API.

Posting to many connections runs on a bounded thread pool. botocore's HTTP connection pool
(10 by default) is raised to the pool's size, otherwise the threads would queue for sockets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from wschat.delivery.base import ConnectionInfo, DeliveryError, FanoutResult, GoneConnection

DEFAULT_FANOUT_WORKERS = 64


def management_endpoint(domain_name: str, stage: str) -> str:
    """The @connections endpoint for an event's domainName and stage.

    ``AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`` (botocore's standard per-service override) wins,
    which is how the local gateway points plain-HTTP clients at itself.
    """
    override = os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
    if override:
        return override.rstrip("/")
    return f"https://{domain_name}/{stage}"


def _iso8601(value: Any) -> str:
    """botocore parses ``ConnectedAt`` into an aware datetime; ConnectionInfo keeps ISO 8601 in
    UTC as API Gateway sends it (``str(datetime)`` would give ``2024-05-01 12:00:00+00:00``)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return str(value.isoformat(timespec="milliseconds")).replace("+00:00", "Z")
    return "" if value is None else str(value)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class ApiGatewaySender:
    """Posts through API Gateway's Management API; GoneException becomes GoneConnection."""

    def __init__(self, client: Any, *, max_workers: int = DEFAULT_FANOUT_WORKERS) -> None:
        self._client = client
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def for_endpoint(
        cls, endpoint_url: str, *, max_workers: int = DEFAULT_FANOUT_WORKERS
    ) -> ApiGatewaySender:
        import boto3
        from botocore.config import Config

        config = Config(
            max_pool_connections=max_workers,
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
        )
        client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)
        return cls(client, max_workers=max_workers)

    def _call(self, operation: str, connection_id: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(ConnectionId=connection_id, **kwargs)
        except ClientError as exc:
            if _error_code(exc) == "GoneException":
                raise GoneConnection(connection_id) from exc
            raise DeliveryError(f"{operation} {connection_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"{operation} {connection_id}: {exc}") from exc

    def post(self, connection_id: str, data: bytes) -> None:
        self._call("post_to_connection", connection_id, Data=data)

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> FanoutResult:
        result = FanoutResult()
        if not connection_ids:
            return result
        if self._pool is None:
            # Kept for the life of the execution environment: warm invocations reuse the threads.
            self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="fanout")

        def post_one(connection_id: str) -> tuple[str, Exception | None]:
            try:
                self.post(connection_id, data)
            except DeliveryError as exc:
                return connection_id, exc
            return connection_id, None

        for connection_id, error in self._pool.map(post_one, connection_ids):
            if error is None:
                result.delivered += 1
            elif isinstance(error, GoneConnection):
                result.gone.append(connection_id)
            else:
                result.failed[connection_id] = str(error)
        return result

    def get(self, connection_id: str) -> ConnectionInfo:
        reply = self._call("get_connection", connection_id)
        identity = reply.get("Identity", {})
        return ConnectionInfo(
            connected_at=_iso8601(reply.get("ConnectedAt")),
            last_active_at=_iso8601(reply.get("LastActiveAt")),
            source_ip=str(identity.get("SourceIp", "")),
            user_agent=identity.get("UserAgent"),
        )

    def delete(self, connection_id: str) -> None:
        self._call("delete_connection", connection_id)

    def close(self) -> None:
        """Stop the fan-out threads and close the HTTP connections (tests, process shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

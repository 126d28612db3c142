"""The local SQS API: SQS's JSON protocol over the gateway's port, and long polling.

boto3 (botocore >= 1.34) speaks JSON to SQS: ``POST /`` with ``X-Amz-Target:
AmazonSQS.<Operation>`` and an ``application/x-amz-json-1.0`` body. The gateway serves it under
``/_aws/sqs`` and gives functions that address as ``AWS_ENDPOINT_URL_SQS``, so an unchanged
``boto3.client("sqs")`` reaches it. Errors carry SQS's ``__type`` and the
``x-amzn-query-error`` header, from which boto3 takes Error.Code
(``AWS.SimpleQueueService.NonExistentQueue``) and its modeled exception class.

A QueueUrl is accepted by its last path segment, the queue's name: the gateway's own URLs
(``{endpoint}/123456789012/{name}``) and the AWS ones a template's ``Ref`` gives
(``https://sqs.{region}.amazonaws.com/123456789012/{name}``) both work.

Who may call it: as for @connections (``iam.access_refused``), requests signed with the
management credentials when the gateway has them (service ``sqs``), else loopback clients only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wschat.gateway import http, iam
from wschat.gateway.queues import (
    MAX_WAIT_SECONDS,
    QueueError,
    QueueStore,
    ReceivedMessage,
    SendEntry,
    check_batch_ids,
    check_visibility_timeout,
    no_queue,
    parse_message_attributes,
)

if TYPE_CHECKING:
    from wschat.delivery.sigv4 import Credentials

log = logging.getLogger("wschat.gateway")

PATH_PREFIX = "/_aws/sqs"
CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."


class QueueService:
    """The queue store seen from the event loop: receives that wait (long polling, the event
    source pollers' batching windows) without blocking it."""

    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.closed = False
        store.listener = self._wake

    def _wake(self, name: str) -> None:
        for waiter in self._waiters.pop(name, set()):
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """End every wait (shutdown); later receives do not wait."""
        self.closed = True
        for name in list(self._waiters):
            self._wake(name)

    async def receive(
        self,
        name: str,
        max_messages: int = 1,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0.0,
    ) -> list[ReceivedMessage]:
        """ReceiveMessage: what is visible now, else wait up to ``wait_seconds`` for a send,
        a message whose visibility timeout or delay ends, or a move to this queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            messages = self.store.receive(name, max_messages, visibility_timeout)
            remaining = deadline - loop.time()
            if messages or remaining <= 0 or self.closed:
                return messages
            next_visible = self.store.next_visible_at(name)
            if next_visible is not None:
                remaining = min(remaining, max(0.0, next_visible - self.store.clock()) + 0.001)
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(name, set()).add(waiter)
            try:
                # asyncio.wait, not wait_for: 3.11's wait_for can swallow a cancellation that
                # arrives as the waiter completes, and a cancelled poller must stop.
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                waiter.cancel()
                waiters = self._waiters.get(name)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[name]


def _error(error: QueueError, status: int = 400) -> bytes:
    return http.response(
        status,
        json.dumps(
            {"__type": f"com.amazonaws.sqs#{error.kind}", "message": error.message}
        ).encode(),
        content_type=CONTENT_TYPE,
        headers={
            "x-amzn-query-error": f"{error.code};Sender",
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )


def _ok(payload: dict[str, Any]) -> bytes:
    return http.response(
        200,
        json.dumps(payload).encode(),
        content_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def refusal(request: http.Request, peer: str, credentials: Credentials | None) -> QueueError | None:
    """Why this SQS request is not served (unsigned from elsewhere, badly signed), or None."""
    reason = iam.access_refused(request, peer, credentials, api="local SQS API", service="sqs")
    return None if reason is None else QueueError("InvalidSecurity", reason)


def queue_name_of(url: Any) -> str:
    """The queue a QueueUrl names: its last path segment."""
    if not isinstance(url, str) or not url.strip():
        raise QueueError("MissingParameter", "The request must contain the parameter QueueUrl.")
    name = url.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise no_queue()
    return name


def _sender_id(request: http.Request) -> str:
    """The signer's access key id stands in for SQS's SenderId (the caller's principal id)."""
    authorization = request.header("Authorization") or ""
    credential = authorization.partition("Credential=")[2]
    return credential.partition("/")[0] or "AIDAWSCHATLOCALGATEWAY"


def _integer(params: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueError(
            "InvalidParameterValue", f"Value {value!r} for parameter {key} is invalid."
        )
    return value


def _string_list(params: dict[str, Any], key: str) -> list[str]:
    value = params.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise QueueError("InvalidParameterValue", f"{key} must be a list of strings.")
    return value


def _entries(params: dict[str, Any], entry_kind: str) -> list[dict[str, Any]]:
    entries = params.get("Entries")
    if entries is None:
        raise QueueError("MissingParameter", "The request must contain the parameter Entries.")
    if not isinstance(entries, list) or not all(isinstance(item, dict) for item in entries):
        raise QueueError("InvalidParameterValue", "Entries must be a list of objects.")
    check_batch_ids([str(entry.get("Id", "")) for entry in entries], entry_kind)
    return entries


class SqsApi:
    """One gateway's SQS endpoint: operations by name, each a function of the JSON body."""

    def __init__(
        self,
        service: QueueService,
        endpoint: Callable[[], str],
        credentials: Credentials | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.endpoint = endpoint  # the port is known once the gateway listens
        self.credentials = credentials
        self.requests = 0
        self._operations: dict[str, Callable[[dict[str, Any], http.Request], Any]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "ListQueues": self.list_queues,
            "DeleteQueue": self.delete_queue,
            "PurgeQueue": self.purge_queue,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
        }

    def queue_url(self, name: str) -> str:
        return f"{self.endpoint()}/123456789012/{name}"

    async def handle(self, request: http.Request, peer: str) -> bytes:
        self.requests += 1
        refused = refusal(request, peer, self.credentials)
        if refused is not None:
            return _error(refused, 403)
        target = request.header("X-Amz-Target") or ""
        if request.method != "POST" or not target.startswith(TARGET_PREFIX):
            return _error(
                QueueError(
                    "UnsupportedOperation",
                    "the local SQS API speaks SQS's JSON protocol (POST with X-Amz-Target: "
                    "AmazonSQS.<Operation>), as boto3 >= 1.34 does",
                )
            )
        name = target[len(TARGET_PREFIX) :]
        operation = self._operations.get(name)
        if operation is None:
            return _error(QueueError("UnsupportedOperation", f"{name} is not supported locally"))
        try:
            params = json.loads(request.body or b"{}")
        except ValueError:
            return _error(QueueError("InvalidParameterValue", "the body is not JSON"))
        if not isinstance(params, dict):
            return _error(QueueError("InvalidParameterValue", "the body is not a JSON object"))
        try:
            result = operation(params, request)
            if asyncio.iscoroutine(result):
                result = await result
        except QueueError as error:
            return _error(error)
        return _ok(result or {})

    # --- queues ------------------------------------------------------------------------------

    def create_queue(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = params.get("QueueName")
        if not isinstance(name, str):
            raise QueueError(
                "MissingParameter", "The request must contain the parameter QueueName."
            )
        self.store.create_queue(name, self._attribute_map(params))
        return {"QueueUrl": self.queue_url(name)}

    def _attribute_map(self, params: dict[str, Any]) -> dict[str, str]:
        attributes = params.get("Attributes") or {}
        if not isinstance(attributes, dict):
            raise QueueError("InvalidParameterValue", "Attributes must be a map.")
        return {str(key): str(value) for key, value in attributes.items()}

    def get_queue_url(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = params.get("QueueName")
        if not isinstance(name, str) or not self.store.exists(name):
            raise no_queue()
        return {"QueueUrl": self.queue_url(name)}

    def get_queue_attributes(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        names = _string_list(params, "AttributeNames")
        if not names:
            self.store.attributes(name, [])  # still QueueDoesNotExist for a missing queue
            return {}
        return {"Attributes": self.store.attributes(name, names)}

    def set_queue_attributes(self, params: dict[str, Any], request: http.Request) -> None:
        self.store.set_attributes(
            queue_name_of(params.get("QueueUrl")), self._attribute_map(params)
        )

    def list_queues(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        prefix = params.get("QueueNamePrefix") or ""
        limit = _integer(params, "MaxResults")
        names = self.store.queue_names(str(prefix))
        token = params.get("NextToken")
        if isinstance(token, str) and token:
            names = [name for name in names if name > token]
        result: dict[str, Any] = {}
        if limit is not None and len(names) > limit:
            names = names[:limit]
            result["NextToken"] = names[-1]
        if names:
            result["QueueUrls"] = [self.queue_url(name) for name in names]
        return result

    def delete_queue(self, params: dict[str, Any], request: http.Request) -> None:
        self.store.delete_queue(queue_name_of(params.get("QueueUrl")))

    def purge_queue(self, params: dict[str, Any], request: http.Request) -> None:
        self.store.purge(queue_name_of(params.get("QueueUrl")))

    # --- messages ----------------------------------------------------------------------------

    @staticmethod
    def _send_entry(params: dict[str, Any], entry_id: str = "") -> SendEntry:
        if params.get("MessageGroupId") or params.get("MessageDeduplicationId"):
            raise QueueError(
                "InvalidParameterValue",
                "MessageGroupId and MessageDeduplicationId are for FIFO queues, which the "
                "local gateway does not support",
            )
        body = params.get("MessageBody")
        if not isinstance(body, str):
            raise QueueError(
                "MissingParameter", "The request must contain the parameter MessageBody."
            )
        return SendEntry(
            body=body,
            delay_seconds=_integer(params, "DelaySeconds"),
            attributes=parse_message_attributes(params.get("MessageAttributes")),
            entry_id=entry_id,
        )

    def send_message(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        sent = self.store.send(name, self._send_entry(params), sender_id=_sender_id(request))
        result = {"MessageId": sent.message_id, "MD5OfMessageBody": sent.md5_of_body}
        if sent.md5_of_attributes:
            result["MD5OfMessageAttributes"] = sent.md5_of_attributes
        return result

    def send_message_batch(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        self.store.attributes(name, [])  # QueueDoesNotExist before any entry is looked at
        raw = _entries(params, "SendMessageBatchRequestEntry")
        entries = []
        early_failures = []
        for item in raw:
            try:
                entries.append(self._send_entry(item, str(item["Id"])))
            except QueueError as error:
                early_failures.append(_failure(item["Id"], error.code, error.message))
        sent, failed = (
            self.store.send_batch(name, entries, sender_id=_sender_id(request))
            if entries
            else ([], [])
        )
        successful = []
        for done in sent:
            result = {
                "Id": done.entry_id,
                "MessageId": done.message_id,
                "MD5OfMessageBody": done.md5_of_body,
            }
            if done.md5_of_attributes:
                result["MD5OfMessageAttributes"] = done.md5_of_attributes
            successful.append(result)
        failures = early_failures + [_failure(f.entry_id, f.code, f.message) for f in failed]
        return {"Successful": successful, "Failed": failures}

    async def receive_message(
        self, params: dict[str, Any], request: http.Request
    ) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        max_messages = _integer(params, "MaxNumberOfMessages", 1)
        visibility = _integer(params, "VisibilityTimeout")
        wait = _integer(params, "WaitTimeSeconds")
        if wait is None:
            wait = self.store.wait_time(name)
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise QueueError(
                "InvalidParameterValue",
                f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 "
                f"and <= {MAX_WAIT_SECONDS}, if provided.",
            )
        if visibility is not None:
            check_visibility_timeout(visibility)
        system = set(_string_list(params, "AttributeNames")) | set(
            _string_list(params, "MessageSystemAttributeNames")
        )
        wanted_attributes = _string_list(params, "MessageAttributeNames")
        messages = await self.service.receive(name, max_messages or 1, visibility, wait)
        if not messages:
            return {}
        return {"Messages": [_message_json(m, system, wanted_attributes) for m in messages]}

    def delete_message(self, params: dict[str, Any], request: http.Request) -> None:
        name = queue_name_of(params.get("QueueUrl"))
        handle = params.get("ReceiptHandle")
        if not isinstance(handle, str):
            raise QueueError(
                "MissingParameter", "The request must contain the parameter ReceiptHandle."
            )
        self.store.delete(name, handle)

    def delete_message_batch(self, params: dict[str, Any], request: http.Request) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        self.store.attributes(name, [])
        successful, failed = [], []
        for item in _entries(params, "DeleteMessageBatchRequestEntry"):
            try:
                self.store.delete(name, str(item.get("ReceiptHandle", "")))
            except QueueError as error:
                failed.append(_failure(item["Id"], error.code, error.message))
            else:
                successful.append({"Id": item["Id"]})
        return {"Successful": successful, "Failed": failed}

    def change_message_visibility(self, params: dict[str, Any], request: http.Request) -> None:
        name = queue_name_of(params.get("QueueUrl"))
        timeout = _integer(params, "VisibilityTimeout")
        if timeout is None:
            raise QueueError(
                "MissingParameter", "The request must contain the parameter VisibilityTimeout."
            )
        self.store.change_visibility(name, str(params.get("ReceiptHandle", "")), timeout)

    def change_message_visibility_batch(
        self, params: dict[str, Any], request: http.Request
    ) -> dict[str, Any]:
        name = queue_name_of(params.get("QueueUrl"))
        self.store.attributes(name, [])
        successful, failed = [], []
        for item in _entries(params, "ChangeMessageVisibilityBatchRequestEntry"):
            try:
                timeout = _integer(item, "VisibilityTimeout")
                if timeout is None:
                    raise QueueError("MissingParameter", "VisibilityTimeout is required.")
                self.store.change_visibility(name, str(item.get("ReceiptHandle", "")), timeout)
            except QueueError as error:
                failed.append(_failure(item["Id"], error.code, error.message))
            else:
                successful.append({"Id": item["Id"]})
        return {"Successful": successful, "Failed": failed}


def _failure(entry_id: Any, code: str, message: str) -> dict[str, Any]:
    """A batch entry's failure as SQS reports it (every local failure is the sender's)."""
    return {"Id": str(entry_id), "SenderFault": True, "Code": code, "Message": message}


def _message_json(
    message: ReceivedMessage, system: set[str], wanted_attributes: list[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt_handle,
        "MD5OfBody": message.md5_of_body,
        "Body": message.body,
    }
    if system:
        result["Attributes"] = {
            key: value
            for key, value in message.attributes.items()
            if "All" in system or key in system
        }
    attributes = {
        key: value
        for key, value in message.message_attributes.items()
        if _attribute_wanted(key, wanted_attributes)
    }
    if attributes:
        result["MessageAttributes"] = attributes
        result["MD5OfMessageAttributes"] = message.md5_of_attributes
    return result


def _attribute_wanted(name: str, wanted: list[str]) -> bool:
    for pattern in wanted:
        if pattern in ("All", ".*") or pattern == name:
            return True
        if pattern.endswith(".*") and name.startswith(pattern[:-1]):
            return True
    return False

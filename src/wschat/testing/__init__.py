"""One harness for everything that drives wschat from outside: the test suite, the benchmarks,
and other projects' tests of their own WebSocket apps under the local gateway.

- ``serve``: ``wschat serve`` as a process (``ServeProcess``: the URLs it printed, a graceful
  stop), ``free_port``, ``wschat_command``.
- ``gateway``: a ``Gateway`` in this process on a loop thread (``running_gateway``), with its
  log captured, a websockets client and a boto3 @connections client pointed at it.
- ``connections_endpoint``: a real HTTP server answering API Gateway's @connections API, for
  a handler run outside any gateway.
- ``lambda_context``: the context a handler called directly gets.

Everything here binds 127.0.0.1 and every wait has a deadline.
"""

from __future__ import annotations

import time
import uuid

from wschat.gateway.lambda_context import LambdaContext
from wschat.testing.serve import ServeFailed, ServeProcess, free_port, wschat_command

__all__ = [
    "LambdaContext",
    "ServeFailed",
    "ServeProcess",
    "free_port",
    "lambda_context",
    "wschat_command",
]


def lambda_context(
    function_name: str = "wschat-send-message", *, remaining_ms: int = 29_000, memory_mb: int = 256
) -> LambdaContext:
    """A fresh context with its own request id and ``remaining_ms`` left (default: API
    Gateway's integration timeout)."""
    deadline = int(time.time() * 1000) + remaining_ms
    return LambdaContext(str(uuid.uuid4()), function_name, memory_mb, deadline)

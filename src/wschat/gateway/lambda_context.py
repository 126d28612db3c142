"""The context object Lambda's Python runtime passes as a handler's second argument: what
handlers and powertools read of it. The function workers make one per invocation;
``wschat.testing.lambda_context`` makes one for a handler called directly."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


class LambdaContext:
    """The context object Lambda passes as the handler's second argument."""

    def __init__(
        self,
        request_id: str,
        function_name: str,
        memory_mb: int,
        deadline_ms: int,
        held_ms: Callable[[], float] | None = None,
    ) -> None:
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)  # a string on Lambda too
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms
        # Under a debugger the clock stops while it holds the worker, as the gateway's does.
        self._held_ms = held_ms or (lambda: 0.0)
        self._held_at_start = self._held_ms()

    def get_remaining_time_in_millis(self) -> int:
        held = self._held_ms() - self._held_at_start
        return max(0, self._deadline_ms + int(held) - int(time.time() * 1000))

"""A real moto server (a DynamoDB-compatible HTTP endpoint) in a subprocess.

Tests talk to it over real HTTP on 127.0.0.1, as the Lambda functions talk to DynamoDB, so
retries, timeouts and connection errors behave as they do against AWS. The server can be stopped
and started again on the same port to play an outage; its state lives in memory, so a restarted
server starts empty. Its output goes to a log file (``log_path``), not the terminal.

It is the ``moto_server`` command's application, answering one request at a time: DynamoDB
applies each request atomically, but moto's threaded server checks a ConditionExpression and
writes in separate steps, so two concurrent conditional writes could both pass it, and a
cancelled transaction's rollback could undo a concurrent one. Run this file to start one:
``python moto_server.py --host 127.0.0.1 --port 5000``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from wschat.testing import free_port

__all__ = ["MotoServer", "free_port"]


class MotoServer:
    """``moto_server`` on ``host`` and a fixed port (a free one unless given)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = free_port(host) if port is None else port
        self.startup_timeout = startup_timeout
        fd, log_name = tempfile.mkstemp(prefix="moto_server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> MotoServer:
        """Start the server and wait until it answers HTTP."""
        if self.running:
            return self
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, __file__, "--host", self.host, "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self._process.returncode} before answering "
                    f"on {self.url}:\n{self.log_tail()}"
                )
            try:
                # A moto-only path, so another server that took the port does not pass for ours.
                if self._get_status("/moto-api/data.json") == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"moto_server did not answer on {self.url} within "
                    f"{self.startup_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _get_status(self, path: str) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> MotoServer:
        """Stop and start again on the same port (with empty state)."""
        self.stop()
        return self.start()

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_one_request_at_a_time(host: str, port: int) -> None:
    """Serve moto's application (as ``moto_server`` does), one request at a time."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:  # the whole response, body included, before the next request starts
            return list(app(environ, start_response))

    # Threads still accept connections (keep-alive clients do not block one another).
    run_simple(host, port, atomic, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=serve_one_request_at_a_time.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    serve_one_request_at_a_time(arguments.host, arguments.port)

"""``wschat serve`` in a process of its own, read the way a user reads it: the URLs it prints.

stdout is read by a thread (the caller never blocks on a pipe); stderr goes to a file, shown
in the error when the process does not come up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_URL_LINE = re.compile(r"^\s+(WebSocket|@connections|Chat page|Health|CA bundle):\s+(\S+)")
READY_LINE = "Press Ctrl+C"


class ServeFailed(RuntimeError):
    """``wschat serve`` exited, or printed no ready line in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wschat_command() -> list[str]:
    """The ``wschat`` script beside this interpreter, or ``python -m wschat.cli``."""
    script = Path(sys.executable).with_name("wschat")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "wschat.cli"]


class ServeProcess:
    """``wschat serve --port 0 ARGS`` (a later ``--port`` in ARGS wins), run by ``command``
    (default ``wschat_command()``) in ``cwd``; ``urls`` holds what it printed, by label
    ("WebSocket", "@connections", "Chat page", "Health", "CA bundle")."""

    def __init__(
        self,
        args: list[str],
        directory: Path,
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.directory = directory
        self.stderr_path = directory / "serve.stderr"
        self.stdout_lines: list[str] = []
        self.urls: dict[str, str] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [*(command or wschat_command()), "serve", "--port", "0", *args],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            preexec_fn=preexec_fn,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        """Read what it prints until the ready line; ``ServeFailed`` if it exits first or
        ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise ServeFailed(
                    f"wschat serve printed no ready line in {timeout}s\n{self.stderr}"
                ) from None
            if line is None:
                raise ServeFailed(f"wschat serve exited ({self.process.poll()})\n{self.stderr}")
            self.stdout_lines.append(line)
            match = _URL_LINE.match(line)
            if match:
                self.urls[match.group(1)] = match.group(2)
            if line.startswith(READY_LINE):
                return self

    @property
    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def websocket_url(self) -> str:
        return self.urls["WebSocket"]

    @property
    def management_url(self) -> str:
        # Printed as ".../{stage}/@connections/{connectionId}"; boto3 wants ".../{stage}".
        return self.urls["@connections"].split("/@connections", 1)[0]

    @property
    def port(self) -> int:
        return int(self.websocket_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` and return the exit code; ``ServeFailed`` (after a kill) if it does
        not exit within ``timeout``."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise ServeFailed(
                f"wschat serve did not exit within {timeout}s of {signum}\n{self.stderr}"
            ) from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._stderr.close()


@contextlib.contextmanager
def wschat_serve(
    args: list[str],
    directory: Path,
    env: dict[str, str] | None = None,
    *,
    cwd: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[ServeProcess]:
    """A started ``ServeProcess``, killed on exit."""
    server = ServeProcess(args, directory, env, cwd=cwd)
    try:
        yield server.wait_ready(timeout)
    finally:
        server.close()

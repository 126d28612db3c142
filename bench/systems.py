"""The servers bench/run.py measures, each started fresh per workload and always stopped.

- ``wschat``: ``wschat serve`` (the project's template, a temporary ``--data-dir``, the embedded
  SQLite store, ``--log-level WARNING``) running wschat's handlers in its worker processes;
- ``ceiling``: bench/ceiling_server.py, a bare ``websockets`` broadcast server with rooms;
- ``floor``: bench/floor_server.py, the least a Python gateway does per message under wschat's
  semantics (an invocation in a worker process, stored in SQLite before it is delivered);
- ``bun``: bench/bun_ceiling/server.js on Bun (npm ``bun``, pinned in
  bench/bun_ceiling/package-lock.json): the same broadcast server, compiled (uWebSockets);
- ``peer``: serverless-offline (npm ``serverless@3`` + ``serverless-offline@13``) running the
  same Python handlers from bench/peer/serverless.yml.

bun and the peer are installed with npm on first use (into their directory's node_modules,
git-ignored); when that fails, ``unavailable`` says why and their table cells show it.

Every server runs in its own session (process group): stopping it signals the whole group, its
worker processes included, then kills what is left. Its output goes to a log file whose tail is
shown when it fails to start or dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from wschat.testing import free_port

__all__ = ["free_port"]  # the benchmarks take it from here

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEER_DIR = BENCH / "peer"
PEER_PACKAGES = ("serverless@3", "serverless-offline@13")
BUN_DIR = BENCH / "bun_ceiling"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# Same chat configuration for wschat and the peer (same handlers): see docs/benchmarks.md.
CHAT_ENV = {
    # One W3 sender steps up to 200 messages per second: above the default 10/s (burst 20).
    "WSCHAT_RATE_PER_SECOND": "100000",
    "WSCHAT_RATE_BURST": "100000",
    # Presence events (joined/left) announce every arrival to each of the room's members:
    # O(members^2) posts while a room fills. Off, so the workloads measure connections and
    # messages; W2 also measures wschat with them on (the default) in a row of its own.
    "WSCHAT_PRESENCE_EVENT_LIMIT": "0",
}
PRESENCE_DEFAULT = {"WSCHAT_PRESENCE_EVENT_LIMIT": "500"}


class ServerFailed(RuntimeError):
    pass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    seen = [pid]
    i = 0
    while i < len(seen):
        seen += [c for c in _children(seen[i]) if c not in seen]
        i += 1
    return seen


def rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def npm_install(args: list[str], timeout: float) -> tuple[str, float]:
    """Run ``npm ARGS`` (an install); returns (why it failed or "", seconds taken)."""
    npm = shutil.which("npm")
    if not shutil.which("node"):
        return "not run: node is not installed", 0.0
    if not npm:
        return "not run: npm is not installed", 0.0
    started = time.monotonic()
    try:
        done = subprocess.run(
            [npm, *args, "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"not run: npm {args[0]} did not finish in {timeout:.0f} s", timeout
    except OSError as exc:
        return f"not run: npm {args[0]} failed: {exc}", 0.0
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return f"not run: npm {args[0]} failed: {last[0][:120]}", time.monotonic() - started
    return "", time.monotonic() - started


class System:
    """One server under test."""

    name = ""
    label = ""
    fmt = "chat"  # the text frames its clients send: "chat" or "ceiling"
    start_timeout = 60.0
    stop_timeout = 15.0
    error_marks: tuple[str, ...] = ("Traceback", "ERROR", "Error:")

    def __init__(self, workdir: Path, server_cpus: set[int] | None) -> None:
        self.workdir = workdir
        self.server_cpus = server_cpus
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = workdir / f"{self.name}.log"
        self._log: IO[bytes] | None = None
        self.unavailable: str | None = None  # why it cannot run at all
        self.extra_env: dict[str, str] = {}
        self.extra_args: list[str] = []
        self.peak_processes = 0  # most handler processes seen (the peer), since start()
        self.log_offset = 0  # where this start's output begins in the log

    # -- to override ------------------------------------------------------------------------------

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def ready(self, log_text: str) -> bool:
        raise NotImplementedError

    def path(self, room: str | None, name: str) -> str:
        raise NotImplementedError

    def groups(self) -> dict[str, list[int]]:
        """The server's processes by role, e.g. {"gateway": [pid], "workers": [...]}."""
        assert self.proc is not None
        return {"server": process_tree(self.proc.pid)}

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, **extra_env: str) -> None:
        if self.unavailable:
            raise ServerFailed(self.unavailable)
        self.extra_env = dict(extra_env)
        self.peak_processes = 0
        data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.workdir))
        argv, env, cwd = self.command(data_dir)
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        self._log.write(f"\n--- start {time.strftime('%H:%M:%S')}: {' '.join(argv)}\n".encode())
        self._log.flush()
        offset = self.log_path.stat().st_size
        self.log_offset = offset
        cpus = self.server_cpus

        def preexec() -> None:
            if cpus:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.label} exited with {self.proc.returncode} while starting:\n"
                    + tail(self.log_path)
                )
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if self.ready(text) and self._accepts():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(
                    f"{self.label} not ready within {self.start_timeout:.0f} s:\n"
                    + tail(self.log_path)
                )
            time.sleep(0.1)

    def _accepts(self) -> bool:
        if not self.port:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float | None = None) -> None:
        """Stop the server: SIGTERM to it, ``grace`` seconds to exit (wschat then runs
        $disconnect for its connections and stops its workers), then SIGKILL to whatever is
        left of its process group and tree. ``grace=0`` kills at once."""
        proc, self.proc = self.proc, None
        if proc is not None:
            pids = process_tree(proc.pid)
            grace = self.stop_timeout if grace is None else grace
            if grace > 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in pids[1:]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_problems(self) -> tuple[int, str]:
        """Error lines this start's output has so far: (count, the first one)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return 0, ""
        lines = [
            line.strip()
            for line in text.splitlines()
            if any(mark in line for mark in self.error_marks)
        ]
        return len(lines), (lines[0][:200] if lines else "")

    # -- measurements -----------------------------------------------------------------------------

    def rss(self) -> dict[str, int]:
        return {g: sum(rss_kib(p) for p in pids) for g, pids in self.groups().items()}

    def cpu(self) -> dict[str, float]:
        return {g: sum(cpu_seconds(p) for p in pids) for g, pids in self.groups().items()}

    def process_counts(self) -> dict[str, int]:
        return {g: len(pids) for g, pids in self.groups().items()}


class Wschat(System):
    name = "wschat"
    label = "wschat serve"

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        env = dict(os.environ)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_DYNAMODB"):
            env.pop(name, None)
        env.update(CHAT_ENV)
        env.update(self.extra_env)
        argv = [
            sys.executable,
            "-m",
            "wschat.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--log-level",
            os.environ.get("BENCH_WSCHAT_LOG_LEVEL", "WARNING"),
            # The template's own parameters for the functions' environment (see CHAT_ENV).
            "--parameter",
            "LogLevel=WARNING",
            "--parameter",
            f"RatePerSecond={CHAT_ENV['WSCHAT_RATE_PER_SECOND']}",
            "--parameter",
            f"RateBurst={CHAT_ENV['WSCHAT_RATE_BURST']}",
            *self.extra_args,
        ]
        self.port = 0
        return argv, env, ROOT

    def ready(self, log_text: str) -> bool:
        for line in log_text.splitlines():
            line = line.strip()
            if line.startswith("WebSocket:"):
                url = line.split()[-1]  # ws://127.0.0.1:PORT/local
                self.port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                self.stage = url.rsplit("/", 1)[1]
                return True
        return False

    def path(self, room: str | None, name: str) -> str:
        query = f"?name={name}" + (f"&room={room}" if room else "")
        return f"/{self.stage}{query}"

    def groups(self) -> dict[str, list[int]]:
        assert self.proc is not None
        tree = process_tree(self.proc.pid)
        return {"gateway": tree[:1], "workers": tree[1:]}


class Ceiling(System):
    name = "ceiling"
    label = "ceiling (bare websockets broadcast)"
    fmt = "ceiling"

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        self.port = 0
        argv = [
            sys.executable,
            str(BENCH / "ceiling_server.py"),
            "--host",
            self.host,
            "--port",
            "0",
        ]
        return argv, dict(os.environ), ROOT

    def ready(self, log_text: str) -> bool:
        for line in log_text.splitlines():
            if line.startswith("listening on "):
                self.port = int(line.split()[-1])
                return True
        return False

    def path(self, room: str | None, name: str) -> str:
        return f"/?room={room}" if room else "/"


class Floor(Ceiling):
    name = "floor"
    label = "floor (invocation + SQLite, nothing else)"
    fmt = "chat"

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        argv, env, cwd = super().command(data_dir)
        argv[1] = str(BENCH / "floor_server.py")
        return [*argv, "--data-dir", str(data_dir)], env, cwd

    def path(self, room: str | None, name: str) -> str:
        return f"/?name={name}" + (f"&room={room}" if room else "")

    def groups(self) -> dict[str, list[int]]:
        assert self.proc is not None
        tree = process_tree(self.proc.pid)
        return {"gateway": tree[:1], "workers": tree[1:]}


class Bun(Ceiling):
    """The same broadcast as the ceiling (same ``?room=``, same frames, same ready line),
    compiled: Bun.serve on uWebSockets."""

    name = "bun"
    label = "Bun (Bun.serve, uWebSockets)"
    fmt = "ceiling"

    def __init__(self, workdir: Path, server_cpus: set[int] | None) -> None:
        super().__init__(workdir, server_cpus)
        self.version = ""
        self.install_seconds = 0.0
        self.binary = BUN_DIR / "node_modules" / ".bin" / "bun"

    def install(self, log: Callable[[str], None], timeout: float = 300.0) -> None:
        """``npm ci`` in bench/bun_ceiling (the bun package-lock.json pins; its postinstall
        puts the platform's binary in place) unless bun is there; on failure, ``unavailable``
        says why (the tables show it)."""
        if not self.binary.exists():
            log("installing Bun: npm ci in bench/bun_ceiling (bun, pinned) ...")
            failed, self.install_seconds = npm_install(["ci", "--prefix", str(BUN_DIR)], timeout)
            if failed:
                self.unavailable = failed
                return
        try:
            out = subprocess.run(
                [str(self.binary), "--version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.unavailable = f"not run: bun --version failed: {exc}"
            return
        if out.returncode != 0 or not out.stdout.strip():
            last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
            self.unavailable = f"not run: bun --version failed: {last[0][:120]}"
            return
        self.version = out.stdout.strip()

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        self.port = 0
        argv = [str(self.binary), str(BUN_DIR / "server.js"), "--host", self.host, "--port", "0"]
        return argv, dict(os.environ), BUN_DIR


class Peer(System):
    name = "peer"
    label = "serverless-offline"

    def __init__(self, workdir: Path, server_cpus: set[int] | None) -> None:
        super().__init__(workdir, server_cpus)
        self.versions: dict[str, str] = {}
        self.install_seconds = 0.0

    def install(self, log: Callable[[str], None], timeout: float = 300.0) -> None:
        """npm install the peer into bench/peer/node_modules unless it is there; on failure,
        ``unavailable`` says why (the tables show it)."""
        marker = PEER_DIR / "node_modules" / "serverless-offline" / "package.json"
        serverless = PEER_DIR / "node_modules" / "serverless" / "package.json"
        if not shutil.which("node"):
            self.unavailable = "not run: node is not installed"
            return
        if not (marker.exists() and serverless.exists()):
            log(f"installing the peer: npm install {' '.join(PEER_PACKAGES)} into bench/peer ...")
            failed, self.install_seconds = npm_install(
                ["install", "--prefix", str(PEER_DIR), *PEER_PACKAGES], timeout
            )
            if failed or not marker.exists():
                self.unavailable = failed or "not run: npm install did not install it"
                return
        import json

        for package in ("serverless", "serverless-offline"):
            meta = json.loads((PEER_DIR / "node_modules" / package / "package.json").read_text())
            self.versions[package] = str(meta.get("version", "?"))

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        self.port = free_port()
        env = dict(os.environ)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
        env.update(CHAT_ENV)
        env.update(self.extra_env)
        env.update(
            {
                "BENCH_PEER_SQLITE_PATH": str(data_dir / "wschat.sqlite3"),
                "BENCH_PEER_WS_PORT": str(self.port),
                "BENCH_PEER_HTTP_PORT": str(free_port()),
                "BENCH_PEER_LAMBDA_PORT": str(free_port()),
                "BENCH_LOG_LEVEL": "WARNING",
                # serverless-offline runs `python3` with this virtualenv's bin first on PATH:
                # the project's venv, where wschat and its dependencies are installed.
                "VIRTUAL_ENV": sys.prefix,
                "SLS_TELEMETRY_DISABLED": "1",
                "SLS_NOTIFICATIONS_MODE": "off",
                "SLS_DEPRECATION_DISABLE": "*",
            }
        )
        node = shutil.which("node") or "node"
        argv = [node, str(PEER_DIR / "node_modules" / "serverless" / "bin" / "serverless.js")]
        return [*argv, "offline", "start"], env, PEER_DIR

    def ready(self, log_text: str) -> bool:
        return "Offline [websocket] listening" in log_text

    def path(self, room: str | None, name: str) -> str:
        query = f"?name={name}" + (f"&room={room}" if room else "")
        return f"/{query}"

    def groups(self) -> dict[str, list[int]]:
        assert self.proc is not None
        tree = process_tree(self.proc.pid)
        return {
            "node": [p for p in tree if comm(p).startswith("node")],
            "handlers": [p for p in tree if comm(p).startswith("python")],
        }


def cpu_times() -> dict[int, tuple[float, float]]:
    """Per CPU: (busy, total) jiffies since boot, from /proc/stat."""
    out: dict[int, tuple[float, float]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *values = line.split()
                v = [float(x) for x in values[:8]]
                idle = v[3] + v[4]  # idle + iowait
                out[int(name[3:])] = (sum(v) - idle, sum(v))
    return out


def cpu_busy(before: dict[int, tuple[float, float]]) -> dict[int, float]:
    """Per CPU: the share of time it was busy since ``before`` (0-1)."""
    after = cpu_times()
    return {
        cpu: (after[cpu][0] - b[0]) / max(1e-9, after[cpu][1] - b[1])
        for cpu, b in before.items()
        if cpu in after
    }

"""Fan-out benchmark: wschat's sendMessage handler against the seed's sequential loop.

Both run as Lambda handlers in this process, read the same recipients from one SQLite store and
post over HTTP to an @connections endpoint (tests/support/connections_endpoint.py) that sleeps
``--delay`` seconds per call, like API Gateway's own latency, and verifies every call's SigV4
signature. The seed posts with a boto3 ``apigatewaymanagementapi`` client; wschat's
``ApiGatewaySender`` signs its posts itself and sends them over a urllib3 connection pool.
By default the endpoint runs in a child process: on AWS the Management API's work is not done
on the Lambda's CPU, and sharing one GIL with it would charge the server's request parsing and
signature checks to the sender. ``--endpoint thread`` runs it in-process instead.

Run from the repository root::

    .venv/bin/python bench/fanout.py                       # N = 10 100 500 1000, 3 repeats
    .venv/bin/python bench/fanout.py --n 100 1000 --repeats 5 --workers 32 64 128

Prints a table (medians over the repeats, after one untimed warm invocation per N) and saves
bench/results/fanout.png. The sequential baseline takes N x delay seconds, so from
``--sequential-once-from`` recipients on (default 500) it runs once per N instead of
``--repeats`` times; the table's note says so.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

# bench/ is not a package: put it (and the repository root) on sys.path so sibling modules
# import when this file is run as ``.venv/bin/python bench/fanout.py`` (and in the endpoint's
# spawned child).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from wschat.testing import lambda_context  # noqa: E402
from wschat.testing.connections_endpoint import (  # noqa: E402
    ConnectionsEndpoint,
    SigningCredentials,
)

DEFAULT_NS = (10, 100, 500, 1000)


def bench_context() -> Any:
    return lambda_context("bench-send-message", memory_mb=1769)  # one full vCPU on Lambda


STAGE = "prod"


# -- the endpoint, in this process or in a child ----------------------------------------------

# The throwaway credentials both senders find in the environment (set in run()); the endpoint
# refuses a call whose signature does not verify with them, so a miscounted recipient or a
# failed run shows it.
BENCH_CREDENTIALS = SigningCredentials("testing", "testing")
REGION = "ap-northeast-2"


def _endpoint(delay: float) -> ConnectionsEndpoint:
    return ConnectionsEndpoint(
        stage=STAGE, delay=delay, credentials=[BENCH_CREDENTIALS], region=REGION
    ).start()


class Endpoint(Protocol):
    url: str

    def add(self, connection_ids: list[str]) -> None: ...
    def reset(self) -> None: ...
    # (connections that received at least one post, most calls in flight at once)
    def stats(self) -> tuple[int, int]: ...
    def close(self) -> None: ...


class ThreadEndpoint:
    """The endpoint on a thread of this process: it shares the GIL with the senders."""

    def __init__(self, delay: float) -> None:
        self._endpoint = _endpoint(delay)
        self.url = self._endpoint.url

    def add(self, connection_ids: list[str]) -> None:
        self._endpoint.add(*connection_ids)

    def reset(self) -> None:
        self._endpoint.reset_records()

    def stats(self) -> tuple[int, int]:
        return _recipients(self._endpoint), self._endpoint.max_in_flight

    def close(self) -> None:
        self._endpoint.stop()


def _recipients(endpoint: ConnectionsEndpoint) -> int:
    # Distinct connections, not posts: wschat also acknowledges to the sender, who is a
    # recipient too, so it makes n + 1 posts where the seed makes n.
    return len({connection_id for connection_id, _ in endpoint.received()})


def _serve_endpoint(delay: float, commands: Connection) -> None:
    """The child process: run an endpoint and answer the parent's commands over a pipe."""
    endpoint = _endpoint(delay)
    commands.send(endpoint.url)
    while True:
        command, argument = commands.recv()
        if command == "add":
            endpoint.add(*argument)
            commands.send(None)
        elif command == "reset":
            endpoint.reset_records()
            commands.send(None)
        elif command == "stats":
            commands.send((_recipients(endpoint), endpoint.max_in_flight))
        else:
            endpoint.stop()
            commands.send(None)
            return


class ProcessEndpoint:
    """The endpoint in a child process, like a remote API Gateway: its CPU is not ours."""

    def __init__(self, delay: float) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._commands, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve_endpoint, args=(delay, child_end), name="connections-endpoint"
        )
        self._process.start()
        if not self._commands.poll(30):
            self._process.kill()
            raise RuntimeError("the @connections endpoint process did not start")
        self.url = str(self._commands.recv())

    def _ask(self, command: str, argument: Any = None) -> Any:
        self._commands.send((command, argument))
        return self._commands.recv()

    def add(self, connection_ids: list[str]) -> None:
        self._ask("add", connection_ids)

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> tuple[int, int]:
        received, max_in_flight = self._ask("stats")
        return int(received), int(max_in_flight)

    def close(self) -> None:
        self._ask("stop")
        self._process.join(timeout=10)


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    seed_runs: list[float] = field(default_factory=list)
    wschat_runs: dict[int, list[float]] = field(default_factory=dict)  # workers -> seconds
    wschat_cpu: dict[int, list[float]] = field(default_factory=dict)  # workers -> CPU seconds
    max_in_flight: dict[int, int] = field(default_factory=dict)

    @property
    def seed(self) -> float:
        return statistics.median(self.seed_runs)

    def wschat(self, workers: int) -> float:
        return statistics.median(self.wschat_runs[workers])


def connection_ids(n: int) -> list[str]:
    # Shaped like API Gateway's ids (base64 with "=" padding): percent-encoded in the path.
    return [f"B{i:010d}Cw=" for i in range(n)]


def send_event(sender_id: str, text: str) -> dict[str, Any]:
    """The sendMessage event API Gateway hands the Lambda (tests/events/send_message.json)."""
    now_ms = int(time.time() * 1000)
    return {
        "requestContext": {
            "routeKey": "sendMessage",
            "messageId": "Cq3xKfQ5oE0CIeQ=",
            "eventType": "MESSAGE",
            "extendedRequestId": "Cq3xKE2hoE0FrDg=",
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": now_ms - 60_000,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": "203.0.113.25"},
            "requestId": "Cq3xKE2hoE0FrDg=",
            "domainName": "k7x2m9q4ab.execute-api.ap-northeast-2.amazonaws.com",
            "connectionId": sender_id,
            "apiId": "k7x2m9q4ab",
        },
        "body": '{"action":"sendMessage","message":"' + text + '"}',
        "isBase64Encoded": False,
    }


def timed(
    endpoint: Endpoint,
    handler: Callable[[dict[str, Any], Any], Any],
    n: int,
    sender_id: str,
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one invocation that must reach all n."""
    endpoint.reset()
    event = send_event(sender_id, "bench")
    started, cpu_started = time.perf_counter(), time.process_time()
    handler(event, bench_context())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    received, _ = endpoint.stats()
    if received != n:
        raise RuntimeError(f"{handler.__module__}: {received} of {n} recipients got the message")
    return elapsed, cpu


def run(args: argparse.Namespace) -> list[Row]:
    # Local and throwaway: never sign with real credentials; no log line or EMF metrics line per
    # invocation on stdout, where the table goes.
    os.environ.update(
        AWS_ACCESS_KEY_ID=BENCH_CREDENTIALS.access_key,
        AWS_SECRET_ACCESS_KEY=BENCH_CREDENTIALS.secret_key,
        AWS_DEFAULT_REGION=REGION,
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
        WSCHAT_STORE="sqlite",
    )
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"):
        os.environ.pop(name, None)

    import seed_send_message
    import wschat.delivery
    from wschat.delivery.aws import ApiGatewaySender
    from wschat.handlers import _runtime, send_message
    from wschat.storage.base import LOBBY, Connection

    def close_senders() -> None:
        for sender in wschat.delivery._senders.values():
            getattr(sender, "close", lambda: None)()
        wschat.delivery._senders.clear()

    def cold_store() -> None:
        if _runtime.store.cache_info().currsize:
            _runtime.store().close()
        _runtime.store.cache_clear()
        seed_send_message.reset_store()

    endpoint: Endpoint = (
        ProcessEndpoint(args.delay) if args.endpoint == "process" else ThreadEndpoint(args.delay)
    )
    rows: list[Row] = []
    senders = itertools.count()
    with tempfile.TemporaryDirectory(prefix="wschat-bench-") as tmp:
        os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = endpoint.url
        try:
            endpoint.add(connection_ids(max(args.n)))
            for n in args.n:
                row = Row(n)
                rows.append(row)
                ids = connection_ids(n)
                # A fresh store per N, read by both handlers. Connections are stored as the
                # $connect handler stores them (named, in the lobby, where the seed's
                # sendMessage frame goes), without its join announcements: those would cost
                # O(N^2) posts just to set up.
                cold_store()
                os.environ["WSCHAT_SQLITE_PATH"] = str(Path(tmp) / f"n{n}.sqlite3")
                store = _runtime.store()
                now_ms = int(time.time() * 1000)
                for index, connection_id in enumerate(ids):
                    store.put_connection(
                        Connection.opened(
                            connection_id, now_ms, name=f"user{index}", rooms=frozenset({LOBBY})
                        )
                    )

                def next_sender(ids: list[str] = ids) -> str:
                    # Turns among the senders: each connection has its own rate-limit bucket.
                    return ids[next(senders) % len(ids)]

                for workers in args.workers:
                    # One warm sender per pool size, installed where the handler looks it up
                    # (wschat.delivery._senders, keyed by endpoint) as a cold start would.
                    close_senders()
                    wschat.delivery._senders[endpoint.url] = ApiGatewaySender.for_endpoint(
                        endpoint.url, max_workers=workers
                    )
                    # Warm: the pool's threads and sockets exist, as in a warm Lambda.
                    timed(endpoint, send_message.lambda_handler, n, next_sender())
                    runs = [
                        timed(endpoint, send_message.lambda_handler, n, next_sender())
                        for _ in range(args.repeats)
                    ]
                    row.wschat_runs[workers] = [wall for wall, _ in runs]
                    row.wschat_cpu[workers] = [cpu for _, cpu in runs]
                    row.max_in_flight[workers] = endpoint.stats()[1]

                if len(rows) == 1:  # warm the seed's client once: it keeps one connection
                    seed_send_message.lambda_handler(send_event(ids[0], "warm"), bench_context())
                seed_repeats = 1 if n >= args.sequential_once_from else args.repeats
                row.seed_runs = [
                    timed(endpoint, seed_send_message.lambda_handler, n, next_sender())[0]
                    for _ in range(seed_repeats)
                ]
                print_progress(row, args.workers)
        finally:
            seed_send_message.reset()
            close_senders()
            cold_store()
            endpoint.close()
    return rows


def print_progress(row: Row, workers: list[int]) -> None:
    done = ", ".join(f"wschat[{w}] {row.wschat(w):.3f}s" for w in workers)
    print(f"  N={row.n}: seed {row.seed:.3f}s, {done}", file=sys.stderr, flush=True)


def table(rows: list[Row], args: argparse.Namespace) -> str:
    header = [
        "N",
        "seed sequential (s)",
        "wschat (s)",
        "speed-up",
        "wschat CPU (s)",
        "pool",
        "max in flight",
    ]
    lines = [header]
    for row in rows:
        for w in args.workers:
            lines.append(
                [
                    str(row.n),
                    f"{row.seed:.3f}",
                    f"{row.wschat(w):.3f}",
                    f"{row.seed / row.wschat(w):.1f}x",
                    f"{statistics.median(row.wschat_cpu[w]):.3f}",
                    str(w),
                    str(row.max_in_flight[w]),
                ]
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(c.rjust(wd) for c, wd in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    once = [str(r.n) for r in rows if r.n >= args.sequential_once_from]
    out.append("")
    out.append(
        f"Medians of {args.repeats} warm runs, {args.delay * 1000:.0f} ms per @connections call, "
        f"endpoint in a {'child process' if args.endpoint == 'process' else 'thread'}."
    )
    if once:
        out.append(
            f"Seed sequential ran once (not {args.repeats} times) at N = {', '.join(once)}: "
            "it takes N x delay seconds."
        )
    out.append(
        "wschat CPU: CPU seconds this process spent in one wschat invocation"
        + (" (the endpoint's own work included)" if args.endpoint == "thread" else "")
        + "; close to the wall time means the senders are bound by CPU under the GIL, not by "
        "waiting on the endpoint."
    )
    out.append(
        "pool: fan-out threads (= HTTP connections kept); max in flight: most calls the "
        "endpoint was serving at once."
    )
    return "\n".join(out)


def plot(rows: list[Row], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row.n for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ns, [row.seed for row in rows], "o-", label="seed: sequential post_to_connection")
    for w in args.workers:
        ax.plot(ns, [row.wschat(w) for row in rows], "s-", label=f"wschat: {w}-thread fan-out")
    ax.plot(ns, [n * args.delay for n in ns], ":", color="grey", label="N x delay")
    ax.plot(ns, [row.seed / 30 for row in rows], "--", color="grey", label="goal: 30x the seed")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("recipients (N)")
    ax.set_ylabel("sendMessage time (s)")
    ax.set_title(f"Fan-out over HTTP @connections, {args.delay * 1000:.0f} ms per call")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from wschat.delivery.aws import DEFAULT_FANOUT_WORKERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=list(DEFAULT_NS),
        help="recipient counts (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs per N; the table shows the median (default: 3)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.02,
        help="seconds the endpoint sleeps per call (default: 0.02)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[DEFAULT_FANOUT_WORKERS],
        help="fan-out pool sizes to measure (default: wschat's, %(default)s)",
    )
    parser.add_argument(
        "--endpoint",
        choices=("process", "thread"),
        default="process",
        help="run the endpoint in a child process or a thread of this one",
    )
    parser.add_argument(
        "--sequential-once-from",
        type=int,
        default=500,
        metavar="N",
        help="run the seed's sequential loop once from this N on (default: 500)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=ROOT / "bench" / "results" / "fanout.png",
        help="where to save the plot (default: bench/results/fanout.png)",
    )
    args = parser.parse_args(argv)
    args.n = sorted(set(args.n))
    if args.repeats < 1 or min(args.n) < 1 or min(args.workers) < 1:
        parser.error("--n, --repeats and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    print(table(rows, args))
    plot(rows, args, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

"""Soak: many chat clients on one ``wschat serve``, loopback only, bounded in time.

The gateway runs the project's template with its embedded SQLite store, as ``make run`` does,
in a process of its own. Load generators (``--loadgens`` processes, asyncio, websockets'
client) connect ``--clients`` clients to ``--rooms`` rooms (every client is also in ``lobby``,
as every connection is) and each client sends a message to its room every ``--interval``
seconds, at a random offset. A room's clients all live in one load generator, so it knows
every message acknowledged in the room and every delivery to its members.

Once every client is connected, they send for ``--warmup`` seconds (deliveries counted, latency
not: the connect storm's presence events are still draining), then the measured
``--duration`` alternates two conditions:

* **A, no flood**: only the clients above.
* **B, flood**: one more client (in room 0, in a load generator of its own, niced so that its
  own CPU does not come out of the server's on one machine) sends ``sendMessage`` frames as
  fast as its socket takes them (the chat's rate limit answers most with ``rate_limited``;
  what it lets through is stored and delivered like any message). It connects at the start
  of each B segment and is cut off (TCP reset) at its end, so no backlog of its frames runs
  into the next A segment.

Then sending stops and the generators wait (``--drain``) for outstanding acks and deliveries.

Checks (exit status 1 when one fails):

* **no lost or duplicate deliveries**: for each member, every message acknowledged in its room
  (by any sender, the flooder included) was delivered to it, none twice; and no client was
  disconnected.
* **memory flat**: the gateway's RSS (and, separately, its function workers' summed RSS),
  sampled every ``--sample`` seconds during the measured duration: the median of the last
  quarter is at most ``--rss-bound`` (10%) above the median of the first quarter.
* **flooder isolation**: the others' p99 delivery latency (send to receipt, every member,
  messages sent by non-flooding clients) with the flooder is at most ``--p99-factor`` (2)
  times their p99 without it, or that plus ``--p99-slack-ms`` (25 ms) when larger (a p99 of a
  few milliseconds doubles on scheduler noise alone). The measured time alternates
  ``--segments`` (10) segments, A B A B ...; each segment's p99 is taken and the medians of the
  A and of the B segments are compared, so that one stall of the machine (another process)
  landing in one segment does not decide the comparison. The overall p99s are reported too.

Run from the repository root::

    .venv/bin/python bench/soak.py                       # 2,000 clients, 50 rooms, 60 s
    .venv/bin/python bench/soak.py --clients 200 --rooms 10 --duration 10

Prints a table and writes the figures as JSON (``--out``, default bench/results/soak.json),
which bench/reliability.py puts into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import heapq
import json
import multiprocessing
import os
import platform
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

from systems import process_tree, rss_kib
from wschat.testing import ServeFailed, ServeProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
RESULTS = ROOT / "bench" / "results"


# --- the gateway --------------------------------------------------------------------------------


def raise_nofile() -> None:
    """Open files up to the hard limit: a few thousand sockets per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Gateway:
    """``wschat serve`` with the project's template and SQLite, in a process of its own."""

    def __init__(self, data_dir: Path, extra: list[str], startup_timeout: float = 60) -> None:
        args = ["--template", str(TEMPLATE), "--store", "sqlite", "--data-dir", str(data_dir)]
        self.serve = ServeProcess(
            [*args, "--port", str(free_port()), *extra],
            data_dir,
            cwd=ROOT,
            preexec_fn=raise_nofile,
        )
        try:
            self.serve.wait_ready(startup_timeout)
        except ServeFailed:
            self.stop()
            raise
        self.process = self.serve.process
        self.url = self.serve.websocket_url

    def stderr_tail(self, chars: int = 4000) -> str:
        return self.serve.stderr[-chars:]

    def workers(self) -> list[int]:
        return process_tree(self.process.pid)[1:]

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (closes every connection, runs $disconnect), then SIGKILL what is left."""
        process = self.serve.process
        workers = set(process_tree(process.pid)[1:]) if process.poll() is None else set()
        if process.poll() is None:
            with contextlib.suppress(ServeFailed):  # killed after the timeout
                self.serve.signal(signal.SIGTERM, timeout)
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.serve.close()


def busy_jiffies() -> int:
    """CPU time the whole machine spent busy since boot, in clock ticks (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


def process_jiffies(pid: int) -> int:
    """utime + stime of one process, in clock ticks; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


class RssSampler:
    """Every ``interval`` seconds, on a thread: the gateway's RSS, its workers' summed RSS, and
    how much CPU the machine spent on processes other than this soak's (gateway, workers, load
    generators, this one): what else was running, which a latency tail may come from."""

    def __init__(self, gateway: Gateway, interval: float, loadgen_pids: list[int]) -> None:
        self.gateway = gateway
        self.interval = interval
        self.loadgen_pids = loadgen_pids
        self.samples: list[tuple[float, int, int, int]] = []  # (t, gateway, workers, count)
        self.cpu: list[tuple[float, int, int]] = []  # (monotonic, machine busy, ours), ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def _sample_cpu(self, workers: list[int]) -> None:
        ours = [self.gateway.process.pid, *workers, *self.loadgen_pids, os.getpid()]
        self.cpu.append((time.monotonic(), busy_jiffies(), sum(map(process_jiffies, ours))))

    def _run(self) -> None:
        started = time.monotonic()
        self._sample_cpu(self.gateway.workers())
        while not self._stop.wait(self.interval):
            workers = self.gateway.workers()
            self._sample_cpu(workers)
            self.samples.append(
                (
                    time.monotonic() - started,
                    rss_kib(self.gateway.process.pid),
                    sum(rss_kib(pid) for pid in workers),
                    len(workers),
                )
            )

    def other_cores(self, start: float, end: float) -> float:
        """Cores' worth of CPU other processes used between two monotonic times."""
        inside = [c for c in self.cpu if start <= c[0] <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, busy0, ours0), (t1, busy1, ours1) = inside[0], inside[-1]
        ticks = os.sysconf("SC_CLK_TCK")
        return max(0.0, (busy1 - busy0) - max(0, ours1 - ours0)) / ticks / max(1e-9, t1 - t0)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the load generators ------------------------------------------------------------------------


@dataclass
class LoadgenPlan:
    url: str
    rooms: list[str]
    clients_per_room: list[int]
    interval: float
    flooder_room: str | None  # this generator's room that gets the flooder, if any
    connect_concurrency: int = 64
    seed: int = 0


@dataclass
class LoadgenReport:
    clients: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    sent: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    expected_deliveries: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    unacked_but_delivered: int = 0
    latency_ms: dict[str, list[float]] = field(default_factory=dict)  # phase -> samples
    latency_sent_s: dict[str, list[float]] = field(default_factory=dict)  # their send times
    ack_ms: dict[str, list[float]] = field(default_factory=dict)
    flood_sent: int = 0
    flood_acked: int = 0
    flood_rate_limited: int = 0
    flood_other_errors: int = 0


class Client:
    def __init__(self, name: str, room: str, flooder: bool = False) -> None:
        self.name = name
        self.room = room
        self.flooder = flooder
        self.ws: Any = None
        self.seq = 0
        self.received: Counter[str] = Counter()  # message ids in its room
        self.pending: dict[str, tuple[str, int]] = {}  # clientId -> (phase, sent ns)
        self.closed = False


async def _loadgen(plan: LoadgenPlan, conn: Connection) -> None:
    from websockets.asyncio.client import connect

    random.seed(plan.seed)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    report = LoadgenReport()
    acked_ids: dict[str, set[str]] = {room: set() for room in plan.rooms}
    flood_acked_ids: list[str] = []
    phase = "-"
    clients = [
        Client(f"{room}-u{i}", room)
        for room, count in zip(plan.rooms, plan.clients_per_room, strict=True)
        for i in range(count)
    ]
    report.clients = len(clients)

    def on_frame(client: Client, raw: str | bytes) -> None:
        now = time.monotonic_ns()
        event = json.loads(raw)
        kind = event.get("type")
        if kind == "message" and event.get("room") == client.room:
            if client.flooder:
                return
            client.received[event["id"]] += 1
            sent_phase, _, rest = str(event.get("text", "")).partition("|")
            if sent_phase in ("A", "B") and rest:
                sent_ns = int(rest.split("|")[0])
                report.latency_ms.setdefault(sent_phase, []).append((now - sent_ns) / 1e6)
                report.latency_sent_s.setdefault(sent_phase, []).append(sent_ns / 1e9)
        elif kind == "ack":
            sent = client.pending.pop(str(event.get("clientId")), None)
            if client.flooder:
                report.flood_acked += 1
                flood_acked_ids.append(event["id"])
                return
            if event.get("room") == client.room:
                acked_ids[client.room].add(event["id"])
            report.acked += 1
            if sent is not None and sent[0] in ("A", "B"):
                report.ack_ms.setdefault(sent[0], []).append((now - sent[1]) / 1e6)
        elif kind == "error":
            code = str(event.get("code"))
            if client.flooder:
                if code == "rate_limited":
                    report.flood_rate_limited += 1
                else:
                    report.flood_other_errors += 1
            else:
                report.errors[code] = report.errors.get(code, 0) + 1

    async def reader(client: Client) -> None:
        try:
            async for raw in client.ws:
                on_frame(client, raw)
        except Exception:
            pass
        finally:
            client.closed = True

    gate = asyncio.Semaphore(plan.connect_concurrency)
    readers: list[asyncio.Task[None]] = []

    async def open_client(client: Client, attempts: int = 5) -> None:
        async with gate:
            for attempt in range(attempts):
                try:
                    client.ws = await connect(
                        f"{plan.url}?name={quote(client.name)}&room={quote(client.room)}",
                        open_timeout=30,
                        close_timeout=2,
                        ping_interval=None,
                        max_queue=None,
                        max_size=None,
                    )
                    client.closed = False
                    readers.append(asyncio.create_task(reader(client)))
                    return
                except Exception:
                    await asyncio.sleep(0.2 * (attempt + 1))
            report.connect_failures += 1
            client.closed = True

    await asyncio.gather(*(open_client(c) for c in clients))
    conn.send(("connected", sum(1 for c in clients if not c.closed), report.connect_failures))

    async def send(client: Client, tag: str) -> None:
        client.seq += 1
        client_id = f"{client.name}-{client.seq}"
        sent_ns = time.monotonic_ns()
        client.pending[client_id] = (tag, sent_ns)
        frame = {
            "action": "sendMessage",
            "room": client.room,
            "message": f"{tag}|{sent_ns}|{client_id}",
            "clientId": client_id,
        }
        await client.ws.send(json.dumps(frame))

    async def scheduler() -> None:
        start = time.monotonic()
        heap = [(start + random.uniform(0, plan.interval), i) for i in range(len(clients))]
        heapq.heapify(heap)
        while heap:
            due, index = heap[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.05))
                continue
            heapq.heapreplace(heap, (due + plan.interval, index))
            client = clients[index]
            if client.closed:
                continue
            try:
                await send(client, phase)
                report.sent += 1
            except Exception:
                client.closed = True

    async def flood(flooder: Client) -> None:
        """Connect, then send as fast as the socket takes frames, until cancelled."""
        await open_client(flooder, attempts=3)
        if flooder.closed:
            return
        while not flooder.closed:
            await send(flooder, "F")  # waits while the socket is full
            report.flood_sent += 1
            if report.flood_sent % 64 == 0:
                await asyncio.sleep(0)

    def stop_flood(task: asyncio.Task[None] | None, flooder: Client | None) -> None:
        # Abort (RST), not close: a close frame would queue behind the flood, and the gateway
        # drops a connection's unread frames when the connection goes.
        if task is not None:
            task.cancel()
        if flooder is not None and flooder.ws is not None:
            flooder.ws.transport.abort()

    sender: asyncio.Task[None] | None = None
    flood_task: asyncio.Task[None] | None = None
    flooder: Client | None = None
    floods = 0
    while True:
        command = await commands.get()
        if command[0] == "phase":
            phase = command[1]
            if clients and sender is None:
                sender = asyncio.create_task(scheduler())
            if plan.flooder_room is not None:
                stop_flood(flood_task, flooder)
                flood_task = None
                if phase == "B":
                    floods += 1
                    flooder = Client(f"flooder{floods}", plan.flooder_room, flooder=True)
                    flood_task = asyncio.create_task(flood(flooder))
            conn.send(("ok",))
        elif command[0] == "stop":
            stop_flood(flood_task, flooder)
            for task in (sender, flood_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            for room, ids in command[2].items():
                if room in acked_ids:
                    acked_ids[room].update(ids)
            drain_until = time.monotonic() + float(command[1])
            while time.monotonic() < drain_until:
                outstanding = any(c.pending for c in clients if not c.closed)
                missing = any(
                    not acked_ids[c.room] <= set(c.received) for c in clients if not c.closed
                )
                if not outstanding and not missing:
                    break
                await asyncio.sleep(0.1)
            break
    for client in clients:
        if client.closed and client.ws is not None:
            report.disconnects += 1
        wanted = acked_ids[client.room]
        got = set(client.received)
        if not client.closed:
            report.expected_deliveries += len(wanted)
            report.delivered += len(wanted & got)
            report.lost += len(wanted - got)
        report.duplicates += sum(n - 1 for n in client.received.values() if n > 1)
        report.unacked_but_delivered += len(got - wanted)
    conn.send(("report", asdict(report), flood_acked_ids))
    for reader_task in readers:
        reader_task.cancel()
    await asyncio.gather(
        *(c.ws.close() for c in clients if c.ws is not None and not c.closed),
        return_exceptions=True,
    )


def loadgen_main(plan: LoadgenPlan, conn: Connection) -> None:
    raise_nofile()
    if plan.flooder_room is not None:
        # The flooder's own CPU is not the server's: on one machine it would otherwise take a
        # core from the gateway while it fills its socket. Niced, it still sends as fast as
        # the socket takes frames whenever the CPU is free.
        os.nice(10)
    asyncio.run(_loadgen(plan, conn))


# --- the run ------------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    clients: int = 2000
    rooms: int = 50
    duration: float = 60.0
    warmup: float = 5.0
    segments: int = 10
    interval: float = 10.0
    loadgens: int = 4
    drain: float = 15.0
    sample: float = 1.0
    rss_bound: float = 0.10
    p99_factor: float = 2.0
    p99_slack_ms: float = 25.0
    concurrency: int = 2
    flood: bool = True


def small_config() -> SoakConfig:
    """The small soak that ``make test`` runs (tests/integration/test_soak_small.py): its p99
    bound has more slack, as a p99 of a few milliseconds moves with any other process."""
    return SoakConfig(
        clients=200,
        rooms=10,
        duration=10.0,
        warmup=2.0,
        segments=6,
        interval=2.0,
        loadgens=2,
        drain=15.0,
        sample=0.25,
        p99_slack_ms=100.0,
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def quarter_medians(samples: list[tuple[float, int, int, int]], column: int) -> tuple[int, int]:
    values = [s[column] for s in samples]
    quarter = max(1, len(values) // 4)
    return int(statistics.median(values[:quarter])), int(statistics.median(values[-quarter:]))


def _recv(conn: Connection, what: str, timeout: float) -> tuple[Any, ...]:
    if not conn.poll(timeout):
        raise RuntimeError(f"a load generator sent no {what!r} within {timeout} s")
    message: tuple[Any, ...] = conn.recv()
    if message[0] != what:
        raise RuntimeError(f"expected {what!r} from a load generator, got {message[0]!r}")
    return message


def run(config: SoakConfig, log: Any = print) -> dict[str, Any]:
    """One soak; returns its figures and checks (``result["ok"]``)."""
    raise_nofile()
    rooms = [f"room{i:02d}" for i in range(config.rooms)]
    per_room = [
        config.clients // config.rooms + (1 if i < config.clients % config.rooms else 0)
        for i in range(config.rooms)
    ]
    loadgens = max(1, min(config.loadgens, config.rooms))
    shards: list[list[int]] = [list(range(i, config.rooms, loadgens)) for i in range(loadgens)]
    plans = [
        LoadgenPlan(
            url="",
            rooms=[rooms[i] for i in shard],
            clients_per_room=[per_room[i] for i in shard],
            interval=config.interval,
            flooder_room=None,
            seed=index,
        )
        for index, shard in enumerate(shards)
    ]
    if config.flood:
        # The flooder has a process of its own, so its CPU does not delay the measuring
        # processes' clocks; it joins room 0, whose members are in the first generator.
        plans.append(LoadgenPlan("", [], [], config.interval, rooms[0], seed=len(plans)))
    # A, B, A, B, ...: the two conditions take turns, so a drift in the machine's own load
    # (other processes) weighs on both alike.
    segments = ["A" if i % 2 == 0 else "B" for i in range(max(2, config.segments))]
    segment_s = config.duration / len(segments)
    context = multiprocessing.get_context("spawn")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wschat-soak-") as tmp:
        gateway = Gateway(
            Path(tmp),
            [
                "--log-level",
                "WARNING",
                "--parameter",
                "LogLevel=WARNING",
                "--concurrency",
                str(config.concurrency),
            ],
        )
        processes: list[Any] = []
        pipes: list[Connection] = []

        def broadcast(command: tuple[Any, ...]) -> None:
            for pipe in pipes:
                pipe.send(command)
            for pipe in pipes:
                _recv(pipe, "ok", 30)

        try:
            for index, plan in enumerate(plans):
                plan.url = gateway.url
                parent, child = context.Pipe()
                process = context.Process(
                    target=loadgen_main, args=(plan, child), name=f"loadgen-{index}", daemon=True
                )
                process.start()
                child.close()
                processes.append(process)
                pipes.append(parent)
            connect_timeout = 30 + config.clients * 0.05
            connected = [_recv(p, "connected", connect_timeout) for p in pipes]
            ramp_s = time.monotonic() - started
            log(f"{sum(c[1] for c in connected)} clients connected in {ramp_s:.1f} s")
            # Warm-up: clients send (their messages count for deliveries, not for latency) while
            # the connect storm's presence events drain and the workers settle.
            broadcast(("phase", "W"))
            time.sleep(config.warmup)
            loadgen_pids = [p.pid for p in processes if p.pid is not None]
            with RssSampler(gateway, config.sample, loadgen_pids) as sampler:
                measured_from = time.monotonic()
                segment_starts = []
                for segment in segments:
                    segment_starts.append(time.monotonic())
                    broadcast(("phase", segment))
                    time.sleep(segment_s)
                # The flooder stops first; its acknowledged ids go to room 0's generator, which
                # then waits for their deliveries like its own.
                extra: dict[str, list[str]] = {}
                if config.flood:
                    pipes[-1].send(("stop", 0.0, {}))
                    flood_report = _recv(pipes[-1], "report", 60)
                    extra = {rooms[0]: flood_report[2]}
                for pipe in pipes[: len(shards)]:
                    pipe.send(("stop", config.drain, extra))
                measured_to = time.monotonic()
                bounds = [*segment_starts[1:], measured_to]
                other_cores = [
                    round(sampler.other_cores(start, end), 2)
                    for start, end in zip(segment_starts, bounds, strict=True)
                ]
            reports = [_recv(p, "report", config.drain + 60)[1] for p in pipes[: len(shards)]]
            if config.flood:
                reports.append(flood_report[1])
            gateway_alive = gateway.process.poll() is None
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join(5)
            gateway.stop()
    return summarize(
        config,
        reports,
        sampler.samples,
        ramp_s,
        gateway_alive,
        started,
        measured_from,
        list(zip(segments, segment_starts, strict=True)),
        other_cores,
    )


def summarize(
    config: SoakConfig,
    reports: list[dict[str, Any]],
    samples: list[tuple[float, int, int, int]],
    ramp_s: float,
    gateway_alive: bool,
    started: float,
    measured_from: float,
    segment_starts: list[tuple[str, float]],
    other_cores: list[float],
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r[key]) for r in reports)

    # Second by second (by send time): where a tail comes from, a stall or the flooder.
    buckets: dict[int, tuple[str, list[float]]] = {}
    for r in reports:
        for p in "AB":
            sent = r["latency_sent_s"].get(p, [])
            for sent_s, value in zip(sent, r["latency_ms"].get(p, []), strict=True):
                second = int(sent_s - measured_from)
                buckets.setdefault(second, (p, []))[1].append(value)
    # Segment by segment: p99 of each; the check compares the medians of A's and of B's, so a
    # stall of the machine (other processes) that lands in one segment cannot decide it.
    starts = [start for _, start in segment_starts]
    per_segment: list[list[float]] = [[] for _ in segment_starts]
    for r in reports:
        for p in "AB":
            sent = r["latency_sent_s"].get(p, [])
            for sent_s, value in zip(sent, r["latency_ms"].get(p, []), strict=True):
                index = max(0, bisect.bisect_right(starts, sent_s) - 1)
                per_segment[index].append(value)
    segment_p99: list[tuple[str, float]] = [
        (phase, round(percentile(values, 99), 1))
        for (phase, _), values in zip(segment_starts, per_segment, strict=True)
    ]
    by_second: list[list[Any]] = [
        [
            second,
            phase,
            len(v),
            round(percentile(v, 50), 1),
            round(percentile(v, 99), 1),
            round(max(v), 1),
        ]
        for second, (phase, v) in sorted(buckets.items())
    ]

    latency = {p: [v for r in reports for v in r["latency_ms"].get(p, [])] for p in "AB"}
    acks = {p: [v for r in reports for v in r["ack_ms"].get(p, [])] for p in "AB"}
    errors: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])
    gw_first, gw_last = quarter_medians(samples, 1) if samples else (0, 0)
    wk_first, wk_last = quarter_medians(samples, 2) if samples else (0, 0)
    p99_a = statistics.median([v for p, v in segment_p99 if p == "A"])
    p99_b = statistics.median([v for p, v in segment_p99 if p == "B"])
    p99_bound = max(config.p99_factor * p99_a, p99_a + config.p99_slack_ms)
    result: dict[str, Any] = {
        "config": asdict(config),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        "clients": total("clients"),
        "connect_failures": total("connect_failures"),
        "disconnects": total("disconnects"),
        "ramp_s": round(ramp_s, 1),
        "sent": total("sent"),
        "acked": total("acked"),
        "errors": dict(errors),
        "expected_deliveries": total("expected_deliveries"),
        "delivered": total("delivered"),
        "lost": total("lost"),
        "duplicates": total("duplicates"),
        "unacked_but_delivered": total("unacked_but_delivered"),
        "flood_sent": total("flood_sent"),
        "flood_acked": total("flood_acked"),
        "flood_rate_limited": total("flood_rate_limited"),
        "flood_other_errors": total("flood_other_errors"),
        "latency_samples": {p: len(v) for p, v in latency.items()},
        "latency_ms": {
            p: {q: round(percentile(v, float(q[1:])), 1) for q in ("p50", "p90", "p99")}
            for p, v in latency.items()
        },
        "ack_ms": {
            p: {q: round(percentile(v, float(q[1:])), 1) for q in ("p50", "p99")}
            for p, v in acks.items()
        },
        "segment_p99_ms": segment_p99,  # [phase, p99] in the order they ran
        "segment_p99_median_ms": {"A": round(p99_a, 1), "B": round(p99_b, 1)},
        # CPU other processes on the machine used in each segment, in cores.
        "segment_other_cpu_cores": other_cores,
        "worst_second": max(by_second, key=lambda row: row[4]) if by_second else None,
        "p99_bound_ms": round(p99_bound, 1),
        "latency_by_second": by_second,  # [second, phase, n, p50, p99, max]
        "rss_samples": len(samples),
        "gateway_rss_kib": {"first_quarter": gw_first, "last_quarter": gw_last},
        "workers_rss_kib": {"first_quarter": wk_first, "last_quarter": wk_last},
        "workers": sorted({s[3] for s in samples}),
        "gateway_alive": gateway_alive,
        "run_s": round(time.monotonic() - started, 1),
    }
    checks = {
        "no lost or duplicate deliveries": result["lost"] == 0
        and result["duplicates"] == 0
        and result["disconnects"] == 0
        and result["connect_failures"] == 0
        and result["expected_deliveries"] > 0,
        "gateway RSS flat": bool(samples) and gw_last <= gw_first * (1 + config.rss_bound),
        "workers RSS flat": bool(samples) and wk_last <= wk_first * (1 + config.rss_bound),
        "flooder does not raise p99": (not config.flood) or (p99_b <= p99_bound),
        "gateway up": gateway_alive,
    }
    result["checks"] = checks
    result["ok"] = all(checks.values())
    return result


def table(result: dict[str, Any]) -> str:
    c = result["config"]
    lat, acks = result["latency_ms"], result["ack_ms"]
    gw, wk = result["gateway_rss_kib"], result["workers_rss_kib"]
    rows = [
        ("clients / rooms / duration", f"{result['clients']} / {c['rooms']} / {c['duration']} s"),
        ("connected in", f"{result['ramp_s']} s ({result['connect_failures']} failed)"),
        ("messages sent / acked", f"{result['sent']} / {result['acked']}"),
        ("errors (non-flooder)", json.dumps(result["errors"]) if result["errors"] else "none"),
        (
            "deliveries expected / delivered / lost",
            f"{result['expected_deliveries']} / {result['delivered']} / {result['lost']}",
        ),
        ("deliveries received twice", str(result["duplicates"])),
        ("disconnects", str(result["disconnects"])),
        (
            "flooder sent / acked / rate_limited",
            f"{result['flood_sent']} / {result['flood_acked']} / {result['flood_rate_limited']}",
        ),
        (
            "delivery p50 / p99, A no flood (ms)",
            f"{lat['A']['p50']} / {lat['A']['p99']} ({result['latency_samples']['A']} samples)",
        ),
        (
            "delivery p50 / p99, B flood (ms)",
            f"{lat['B']['p50']} / {lat['B']['p99']} ({result['latency_samples']['B']} samples)",
        ),
        (
            "p99 per segment (ms), in order",
            " ".join(f"{phase}:{value}" for phase, value in result["segment_p99_ms"]),
        ),
        (
            "other processes' CPU per segment (cores)",
            " ".join(str(v) for v in result["segment_other_cpu_cores"]),
        ),
        (
            "median segment p99, A / B (ms)",
            f"{result['segment_p99_median_ms']['A']} / {result['segment_p99_median_ms']['B']} "
            f"(bound for B: {result['p99_bound_ms']})",
        ),
        ("ack p99 A / B (ms)", f"{acks['A']['p99']} / {acks['B']['p99']}"),
        (
            "gateway RSS, median first / last quarter",
            f"{gw['first_quarter'] / 1024:.1f} / {gw['last_quarter'] / 1024:.1f} MiB",
        ),
        (
            "workers RSS (sum), first / last quarter",
            f"{wk['first_quarter'] / 1024:.1f} / {wk['last_quarter'] / 1024:.1f} MiB "
            f"({'/'.join(map(str, result['workers']))} workers)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    lines.append("")
    lines += [f"{'PASS' if ok else 'FAIL'}: {name}" for name, ok in result["checks"].items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[SoakConfig, Path]:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--rooms", type=int, default=defaults.rooms)
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="seconds")
    parser.add_argument(
        "--segments", type=int, default=defaults.segments, help="A/B turns in the duration"
    )
    parser.add_argument(
        "--interval", type=float, default=defaults.interval, help="seconds between a client's"
    )
    parser.add_argument("--loadgens", type=int, default=defaults.loadgens)
    parser.add_argument("--drain", type=float, default=defaults.drain)
    parser.add_argument("--sample", type=float, default=defaults.sample)
    parser.add_argument("--rss-bound", type=float, default=defaults.rss_bound)
    parser.add_argument("--p99-factor", type=float, default=defaults.p99_factor)
    parser.add_argument("--p99-slack-ms", type=float, default=defaults.p99_slack_ms)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--no-flood", dest="flood", action="store_false")
    parser.add_argument(
        "--small", action="store_true", help="the small soak of make test (other options ignored)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    if args.pop("small"):
        return small_config(), out
    return SoakConfig(**args), out


def main(argv: list[str] | None = None) -> int:
    config, out = parse_args(argv)
    result = run(config)
    print(table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nfigures: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

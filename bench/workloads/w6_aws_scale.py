"""W6 a big room at AWS scale: the queued fan-out against a model of API Gateway's throttle.

The model (bench/model_endpoint.py, a process of its own) is an @connections endpoint with one
token bucket for every caller (429 LimitExceededException past it), 20 ms per post and 410 for
a fixed share of ids. Members are records in the gateway's store (no sockets); for each room
this enqueues one plan job (``FanoutJob.plan``, what sendMessage sends for a room over
FanoutInlineLimit) on the gateway's SQS queue, whose event source runs DeliveryFunction, and
times the room from the enqueue to the model's last 200 for it.

1. **Sustain**: the model unthrottled, the workers unpaced (PostBudget far above what they
   can do): posts/s this machine sustains through the whole pipeline (queue, poller, workers,
   endpoint on the same 2 cores).
2. **Model**: the throttle at 10,000/s (burst 5,000) if that sustained rate keeps up with it,
   else at ``--w6-model-share`` of it (rounded down to 100/s, burst half the rate), and
   PostBudget at ``--w6-budget-share`` of the modelled rate (AWS: leave headroom). The floor
   of a room of N is N / modelled rate.
3. **Queued**: rooms of 1,000, 10,000 and 100,000, one after the other; then three rooms of
   30,000 enqueued at once (the floor of the last of them: 90,000 / rate).
4. **Inline** (version 1): one invocation posting to all N from 64 threads, no pacing, a 429
   retried once and then dropped, killed at 29 s as Lambda kills it: a subprocess running
   ``ApiGatewaySender.post_many`` on the same model.
5. **Costs**: a plan job's read and SendMessageBatch calls for 50,000 ids, measured in this
   process on the same store and queue; CPU per post of the workers and of the model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from systems import BENCH, ROOT, Wschat, cpu_seconds, process_tree, tail
from workloads.common import Context, Goal, Section, first_line, ratio, table

STAGE = "prod"
AWS_RATE = 10_000  # API Gateway's account throttle, requests/s
AWS_BURST = 5_000
LAMBDA_TIMEOUT = 29.0  # v1's sendMessage: the integration timeout
INLINE_WORKERS = 64
GOAL_DUPLICATES = 0.001
GOAL_FLOOR_RATIO = 1.25
GOAL_SPREAD = 1.5
REGION = "us-east-1"


# -- the model endpoint -------------------------------------------------------------------------


class ModelEndpoint:
    """bench/model_endpoint.py in a process group of its own, driven over HTTP."""

    def __init__(self, workdir: Path, latency_ms: float, gone_share: float) -> None:
        self.log_path = workdir / "w6-model-endpoint.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "model_endpoint.py"),
                "--port",
                "0",
                "--rate",
                "0",
                "--latency-ms",
                str(latency_ms),
                "--gone-share",
                str(gone_share),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        self.url = ""
        deadline = time.monotonic() + 20
        while not self.url:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the model endpoint did not start:\n" + tail(self.log_path))
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
            time.sleep(0.05)
        self.stage_url = f"{self.url}/{STAGE}"

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def reset(self, **settings: float) -> dict[str, Any]:
        return self._call("/_reset", dict(settings))

    def stats(self) -> dict[str, Any]:
        return self._call("/_stats")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()


def is_gone(connection_id: str, share: float) -> bool:
    """The model's choice of gone ids (bench/model_endpoint.py), to check the counts."""
    return share > 0 and zlib.crc32(connection_id.encode()) % 100_000 < share * 100_000


# -- the gateway --------------------------------------------------------------------------------


class Gateway(Wschat):
    """``wschat serve`` with the project's template, its data dir known (members go in it)."""

    name = "wschat-w6"
    label = "wschat serve (W6)"

    def command(self, data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        self.data_dir = data_dir
        return super().command(data_dir)

    def worker_pids(self, function: str = "websocket-deliver") -> list[int]:
        assert self.proc is not None
        pids = []
        for pid in process_tree(self.proc.pid)[1:]:
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                if b"WSCHAT_WORKER_FUNCTION_NAME=" in environ and function.encode() in environ:
                    pids.append(pid)
        return pids


@dataclass
class Pipeline:
    """A running gateway and what this workload reaches it with."""

    gateway: Gateway
    sqs: Any
    queue_url: str
    dlq_url: str
    workers: int
    budget: float

    @classmethod
    def start(
        cls, ctx: Context, workdir: Path, *, budget: float, workers: int, cpus: set[int] | None
    ) -> Pipeline:
        import boto3

        gateway = Gateway(workdir, cpus)
        gateway.extra_args = [
            "--concurrency",
            str(workers),
            "--parameter",
            f"DeliveryConcurrency={workers}",
            "--parameter",
            f"PostBudget={budget:.0f}",
        ]
        ctx.log(f"W6: starting wschat serve, PostBudget={budget:.0f}, {workers} delivery workers")
        gateway.start()
        endpoint = f"http://{gateway.host}:{gateway.port}/_aws/sqs"
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        names = sqs.list_queues().get("QueueUrls", [])
        queue_url = next(u for u in names if u.endswith("-fanout"))
        dlq_url = next(u for u in names if u.endswith("-fanout-dlq"))
        return cls(gateway, sqs, queue_url, dlq_url, workers, budget)

    def depth(self, url: str) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (the gateway process, its function workers)."""
        assert self.gateway.proc is not None
        tree = process_tree(self.gateway.proc.pid)
        return cpu_seconds(tree[0]), sum(cpu_seconds(p) for p in tree[1:])

    def stop(self) -> None:
        self.gateway.stop(grace=0)


# -- members and rooms --------------------------------------------------------------------------


def member_ids(code: str, n: int) -> list[str]:
    # Shaped like API Gateway's ids (base64 with "=" padding, percent-encoded in the path).
    return [f"{code}{i:07d}Cw=" for i in range(n)]


def add_members(data_dir: Path, rooms: dict[str, list[str]]) -> None:
    """Member records straight into the store's tables (what $connect + join would write)."""
    path = data_dir / "wschat.sqlite3"
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        # Connected 10 minutes ago: a 410 is taken for a departure (service.CONNECT_GRACE_MS).
        connected_ms = int(time.time() * 1000) - 600_000
        expires = connected_ms // 1000 + 3 * 3600
        db.execute("BEGIN IMMEDIATE")
        for room, ids in rooms.items():
            db.executemany(
                'INSERT OR REPLACE INTO "websocket-connections"'
                " (connectionId, connectedAt, expiresAt, name) VALUES (?, ?, ?, ?)",
                ((cid, connected_ms, expires, f"u{cid[2:9]}") for cid in ids),
            )
            db.executemany(
                'INSERT OR REPLACE INTO "chat-members" (room, connectionId, name, expiresAt)'
                " VALUES (?, ?, ?, ?)",
                ((room, cid, f"u{cid[2:9]}", expires) for cid in ids),
            )
        db.execute("COMMIT")
    finally:
        db.close()


def frame(room: str) -> bytes:
    now = int(time.time() * 1000)
    event = {
        "type": "message",
        "id": f"01W6{now:012d}",
        "room": room,
        "from": "w6",
        "text": f"hello {room}",
        "ts": now,
    }
    return json.dumps(event, separators=(",", ":")).encode()


@dataclass
class RoomResult:
    room: str
    n: int
    expected_gone: int
    started: float  # time.time() of the enqueue (or the inline invocation's start)
    delivered: int = 0
    gone: int = 0
    duplicates: int = 0
    throttled: int = 0
    first: float = 0.0
    last: float = 0.0
    timeline: list[tuple[int, int]] = field(default_factory=list)
    dlq: int = 0
    left_in_queue: int = 0
    complete: bool = False
    dropped: int = 0  # inline: posts that failed (429 twice, errors)
    cut: bool = False  # inline: killed at the 29 s timeout
    cpu: float = math.nan  # inline: the invocation's CPU seconds

    @property
    def to_last(self) -> float:
        return self.last - self.started if self.last else math.nan

    @property
    def to_first(self) -> float:
        return self.first - self.started if self.first else math.nan

    @property
    def reached(self) -> int:
        return self.delivered + self.gone

    def absorb(self, summary: dict[str, Any] | None) -> None:
        if not summary:
            return
        self.delivered = summary["delivered"]
        self.gone = summary["gone"]
        self.duplicates = summary["duplicates"]
        self.throttled = summary["throttled"]
        self.first, self.last = summary["first"], summary["last"]
        self.timeline = [(int(q), int(c)) for q, c in summary["timeline"]]


def run_queued(
    ctx: Context,
    pipeline: Pipeline,
    model: ModelEndpoint,
    rooms: dict[str, list[str]],
    gone_share: float,
    timeout: float,
) -> list[RoomResult]:
    """Enqueue one plan job per room at once; wait until every member is delivered or gone
    and the queue is empty (or ``timeout``)."""
    from wschat.delivery.jobs import FanoutJob

    results = []
    for room, ids in rooms.items():
        expected = sum(is_gone(cid, gone_share) for cid in ids)
        results.append(RoomResult(room, len(ids), expected, 0.0))
    bodies = [FanoutJob.plan(r.room, model.stage_url, frame(r.room)).to_json() for r in results]
    started = time.time()
    pipeline.sqs.send_message_batch(
        QueueUrl=pipeline.queue_url,
        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)],
    )
    for result in results:
        result.started = started
    deadline = time.monotonic() + timeout
    while True:
        stats = model.stats()["rooms"]
        for result in results:
            result.absorb(stats.get(result.room))
        reached = all(r.reached >= r.n for r in results)
        if reached:
            visible, hidden = pipeline.depth(pipeline.queue_url)
            if visible + hidden == 0:
                break
        if time.monotonic() > deadline:
            ctx.log(f"W6: {', '.join(rooms)} not finished within {timeout:.0f} s")
            break
        time.sleep(0.2)
    visible, hidden = pipeline.depth(pipeline.queue_url)
    dlq = sum(pipeline.depth(pipeline.dlq_url))
    for result in results:
        result.left_in_queue = visible + hidden
        result.dlq = dlq
        result.complete = result.reached >= result.n and visible + hidden == 0
    return results


# -- the inline design (version 1) --------------------------------------------------------------

INLINE_SCRIPT = r"""
import json, os, resource, sys, time
from wschat.delivery.aws import ApiGatewaySender
url, room, code = sys.argv[1:4]
n, workers = int(sys.argv[4]), int(sys.argv[5])
ids = [f"{code}{i:07d}Cw=" for i in range(n)]
data = os.environ["W6_FRAME"].encode()
sender = ApiGatewaySender(url, max_workers=workers)
sender.post_many(["warm"] * workers, b'{"room":"w6-warm"}')  # threads and sockets, as warm
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print("start", time.time(), flush=True)
result = sender.post_many(ids, data)  # no deadline: a 429 is retried once, then dropped
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"delivered": result.delivered, "gone": len(result.gone),
                  "failed": len(result.failed), "end": time.time(),
                  "cpu": usage.ru_utime + usage.ru_stime - cpu}), flush=True)
"""


def run_inline(
    model: ModelEndpoint, room: str, code: str, n: int, gone_share: float, cpus: set[int] | None
) -> RoomResult:
    ids = member_ids(code, n)
    result = RoomResult(room, n, sum(is_gone(cid, gone_share) for cid in ids), 0.0)
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_REGION=REGION)
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    env["W6_FRAME"] = frame(room).decode()

    def preexec() -> None:
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)

    argv = [sys.executable, "-c", INLINE_SCRIPT, model.stage_url, room, code, str(n)]
    proc = subprocess.Popen(
        [*argv, str(INLINE_WORKERS)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        preexec_fn=preexec,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("start"):
        proc.kill()
        raise RuntimeError("the inline sender did not start")
    result.started = float(line.split()[1])
    try:
        out, _ = proc.communicate(timeout=LAMBDA_TIMEOUT - (time.time() - result.started))
        done = json.loads(out.decode().strip().splitlines()[-1])
        result.dropped = int(done["failed"])
        result.cpu = float(done["cpu"])
    except subprocess.TimeoutExpired:
        result.cut = True  # Lambda stops the invocation at its timeout
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    time.sleep(model_latency_s(model) + 0.05)  # posts in flight are answered
    result.absorb(model.stats()["rooms"].get(room))
    result.complete = result.reached >= n
    return result


def model_latency_s(model: ModelEndpoint) -> float:
    return float(model.stats()["latency_ms"]) / 1000


# -- costs --------------------------------------------------------------------------------------


@dataclass
class PlanCost:
    ids: int
    read_s: float  # room_member_ids for the stretch
    jobs: int
    build_s: float  # the jobs and their JSON
    send_s: float  # SendMessageBatch calls to the local queue
    calls: int


def plan_cost(pipeline: Pipeline, room: str, endpoint: str) -> PlanCost:
    """One plan job's work for a full stretch (page_size x plan_pages ids), measured in this
    process on the gateway's store and a scratch queue on its SQS."""
    from wschat.delivery.jobs import FanoutJob, FanoutSettings
    from wschat.delivery.sqs import SqsJobQueue, _batches
    from wschat.storage.sqlite import SqliteStore

    defaults = FanoutSettings()
    settings = FanoutSettings(
        page_size=int(os.environ.get("WSCHAT_FANOUT_PAGE_SIZE") or defaults.page_size),
        plan_pages=int(os.environ.get("WSCHAT_FANOUT_PLAN_PAGES") or defaults.plan_pages),
    )
    store = SqliteStore(pipeline.gateway.data_dir / "wschat.sqlite3")
    try:
        stretch = settings.page_size * settings.plan_pages
        t0 = time.perf_counter()
        ids = store.room_member_ids(room, limit=stretch)
        read = time.perf_counter() - t0
    finally:
        store.close()
    data = frame(room)
    t0 = time.perf_counter()
    jobs = [FanoutJob.plan(room, endpoint, data, after=ids[-1])]
    size = settings.page_size
    for start in range(0, len(ids), size):
        jobs.append(FanoutJob.deliver(room, endpoint, data, ids[start : start + size]))
    bodies = [job.to_json() for job in jobs]
    build = time.perf_counter() - t0
    scratch = pipeline.sqs.create_queue(QueueName="w6-scratch")["QueueUrl"]
    queue = SqsJobQueue(scratch, client=pipeline.sqs)
    t0 = time.perf_counter()
    queue.send(jobs)
    send = time.perf_counter() - t0
    pipeline.sqs.delete_queue(QueueUrl=scratch)
    return PlanCost(len(ids), read, len(jobs), build, send, len(_batches(bodies)))


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Sustained:
    n: int
    rate: float  # posts/s, first to last 200
    to_last: float
    complete: bool
    worker_cpu_per_post: float
    gateway_cpu_per_post: float
    endpoint_cpu_per_post: float
    busy: float  # share of the machine's cores busy


@dataclass
class W6:
    sustained: Sustained | None = None
    rate: float = math.nan
    burst: float = math.nan
    budget: float = math.nan
    modelled_aws: bool = False
    queued: list[RoomResult] = field(default_factory=list)
    together: list[RoomResult] = field(default_factory=list)
    inline: list[RoomResult] = field(default_factory=list)
    plan: PlanCost | None = None
    worker_cpu_per_post: float = math.nan
    gateway_cpu_per_job: float = math.nan
    jobs: int = 0
    errors: list[str] = field(default_factory=list)


def _machine_cpu() -> float:
    with open("/proc/stat") as f:
        values = [float(x) for x in f.readline().split()[1:8]]
    return sum(values) - values[3] - values[4]


def measure(ctx: Context, workdir: Path) -> W6:
    args = ctx.args
    out = W6()
    gone_share = args.w6_gone_share
    workers = args.w6_workers
    model = ModelEndpoint(workdir, args.w6_latency_ms, gone_share)
    pipeline: Pipeline | None = None
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        # 1. What the machine sustains: nothing throttled, nothing paced.
        pipeline = Pipeline.start(ctx, workdir, budget=1e7, workers=workers, cpus=None)
        n = args.w6_sustain
        add_members(pipeline.gateway.data_dir, {"w6-sustain": member_ids("SU", n)})
        model.reset(rate=0, burst=0)
        ctx.log(f"W6: sustain, {n:,} members, unthrottled")
        gw0, wk0 = pipeline.cpu()
        ep0, m0, t0 = model.cpu(), _machine_cpu(), time.monotonic()
        (room,) = run_queued(ctx, pipeline, model, {"w6-sustain": member_ids("SU", n)}, 0, 120)
        gw1, wk1 = pipeline.cpu()
        ep1, m1, t1 = model.cpu(), _machine_cpu(), time.monotonic()
        posts = max(1, room.delivered + room.gone)
        span = max(1e-9, room.last - room.first)
        out.sustained = Sustained(
            n,
            posts / span,
            room.to_last,
            room.complete,
            (wk1 - wk0) / posts,
            (gw1 - gw0) / posts,
            (ep1 - ep0) / posts,
            (m1 - m0) / ticks / (t1 - t0) / (os.cpu_count() or 1),
        )
        pipeline.stop()
        pipeline = None
        sustained = out.sustained.rate
        ctx.log(f"W6: sustained {sustained:,.0f} posts/s")

        # 2. The throttle modelled.
        if args.w6_rate:
            out.rate = float(args.w6_rate)
        elif sustained * args.w6_model_share >= AWS_RATE:
            out.rate = float(AWS_RATE)
        else:
            out.rate = max(100.0, math.floor(sustained * args.w6_model_share / 100) * 100)
        out.modelled_aws = out.rate == AWS_RATE
        out.burst = AWS_BURST if out.modelled_aws else out.rate / 2
        out.budget = math.floor(out.rate * args.w6_budget_share)
        model.reset(rate=out.rate, burst=out.burst)

        # 3. The queued design.
        pipeline = Pipeline.start(ctx, workdir, budget=out.budget, workers=workers, cpus=None)
        sizes = args.w6_n
        singles = {f"w6-{n}": member_ids(f"Q{i}", n) for i, n in enumerate(sizes)}
        together = {
            f"w6-{args.w6_together_n}-{chr(97 + i)}": member_ids(f"T{i}", args.w6_together_n)
            for i in range(args.w6_together_rooms)
        }
        add_members(pipeline.gateway.data_dir, {**singles, **together})
        gw0, wk0 = pipeline.cpu()
        for room_name, ids in singles.items():
            floor = len(ids) / out.rate
            ctx.log(f"W6: queued, {len(ids):,} members (floor {floor:.1f} s)")
            model.reset()
            out.queued += run_queued(
                ctx, pipeline, model, {room_name: ids}, gone_share, 3 * floor + 20
            )
        floor = sum(len(ids) for ids in together.values()) / out.rate
        ctx.log(f"W6: queued, {len(together)} rooms at once (floor {floor:.1f} s)")
        model.reset()
        out.together = run_queued(ctx, pipeline, model, together, gone_share, 3 * floor + 20)
        gw1, wk1 = pipeline.cpu()
        posts = sum(r.delivered + r.gone + r.throttled for r in out.queued + out.together)
        n_posts = sum(r.n for r in out.queued + out.together)
        page = int(os.environ.get("WSCHAT_FANOUT_PAGE_SIZE") or 500)
        out.jobs = sum(math.ceil(r.n / page) + 1 for r in out.queued + out.together)
        out.worker_cpu_per_post = (wk1 - wk0) / max(1, posts)
        out.gateway_cpu_per_job = (gw1 - gw0) / max(1, out.jobs)
        del n_posts

        # 5. A plan job's cost, on the 100,000 room's store.
        biggest = max(singles, key=lambda name: len(singles[name]))
        try:
            out.plan = plan_cost(pipeline, biggest, model.stage_url)
        except Exception as exc:
            out.errors.append(f"plan job cost not measured: {first_line(exc)}")
        pipeline.stop()
        pipeline = None

        # 4. The inline design on the same model.
        for i, n in enumerate(args.w6_inline_n):
            ctx.log(f"W6: inline (version 1), {n:,} recipients")
            model.reset()
            one = {min(os.sched_getaffinity(0))}  # one invocation: one vCPU
            out.inline.append(run_inline(model, f"w6-inline-{n}", f"I{i}", n, gone_share, one))
    except Exception as exc:
        out.errors.append(first_line(exc))
        ctx.log(f"W6 failed: {first_line(exc)}")
    finally:
        if pipeline is not None:
            pipeline.stop()
        model.stop()
    return out


# -- the report ---------------------------------------------------------------------------------


def seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.2f}"


def plot(result: W6, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    ns = [r.n for r in result.queued]
    if ns:
        left.plot(ns, [r.to_last for r in result.queued], "s-", color="tab:blue", label="queued")
        left.plot(ns, [n / result.rate for n in ns], ":", color="grey", label="floor N / rate")
        left.plot(
            ns,
            [GOAL_FLOOR_RATIO * n / result.rate for n in ns],
            "--",
            color="grey",
            label=f"goal: {GOAL_FLOOR_RATIO}x the floor",
        )
    inline = [r for r in result.inline if not math.isnan(r.to_last)]
    if inline:
        left.plot(
            [r.n for r in inline],
            [r.to_last for r in inline],
            "o-",
            color="tab:red",
            label="inline (v1), cut at 29 s",
        )
        for r in inline:
            if r.reached < r.n:
                left.annotate(
                    f"{r.reached / r.n:.0%} reached",
                    (r.n, r.to_last),
                    textcoords="offset points",
                    xytext=(-70, 8),
                    fontsize=8,
                    color="tab:red",
                )
        left.axhline(LAMBDA_TIMEOUT, color="tab:red", alpha=0.3, lw=1)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("room members (N)")
    left.set_ylabel("time to the last post (s)")
    left.set_title(f"W6: one message to N, throttle {result.rate:,.0f}/s")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    def series(r: RoomResult) -> tuple[list[float], list[float]]:
        xs = [q / 4 - r.started for q, _ in r.timeline]
        ys = [c * 4 for _, c in r.timeline]
        return xs, ys

    big = max(result.queued, key=lambda r: r.n, default=None)
    if big is not None and big.timeline:
        xs, ys = series(big)
        right.plot(xs, ys, color="tab:blue", lw=1, label=f"queued {big.n:,} room")
    for i, r in enumerate(result.together):
        if r.timeline:
            xs, ys = series(r)
            right.plot(xs, ys, lw=1, color=f"C{i + 2}", label=f"{r.room} (at once)")
    right.axhline(result.rate, color="grey", ls=":", label="modelled throttle")
    right.axhline(result.budget, color="grey", ls="--", lw=0.8, label="PostBudget")
    right.set_xlabel("s since the plan job was enqueued")
    right.set_ylabel("posts answered 200 per s (0.25 s bins)")
    right.set_title("delivery rate over time")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(r: RoomResult, floor: float, design: str) -> list[str]:
    if design == "inline":
        if r.cut:
            status = f"cut at {LAMBDA_TIMEOUT:.0f} s: {r.n - r.reached:,} not reached"
        elif r.reached < r.n:
            status = f"{r.n - r.reached:,} not reached"
        else:
            status = "done"
    else:
        status = "done" if r.complete else f"{r.n - r.reached:,} not reached"
        if r.left_in_queue:
            status += f", {r.left_in_queue} jobs left"
    return [
        design,
        r.room,
        f"{r.n:,}",
        seconds(r.to_last),
        seconds(floor),
        ratio(r.to_last, floor),
        f"{r.delivered:,}",
        f"{r.gone:,}" + ("" if r.gone == r.expected_gone else f" (of {r.expected_gone:,})"),
        f"{r.duplicates:,}",
        f"{r.throttled:,}",
        f"{r.dropped:,}" if design == "inline" else f"{r.dlq:,}",
        status,
    ]


def report(ctx: Context, result: W6) -> Section:
    args = ctx.args
    if result.sustained is None:
        text = "W6 could not run: " + ("; ".join(result.errors) or "?")
        goal = Goal("W6", "(issue 10) the big-room goals", text, None)
        return Section("W6", "W6 big room at AWS scale", text, [goal])
    s = result.sustained
    parts = []
    parts.append(
        table(
            ["", ""],
            [
                [
                    "sustained, unthrottled",
                    f"{s.rate:,.0f} posts/s ({s.n:,} members through queue, poller, "
                    f"{args.w6_workers} workers and the model; {s.busy:.0%} of the cores busy)",
                ],
                [
                    "modelled throttle",
                    (
                        f"{result.rate:,.0f}/s, burst {result.burst:,.0f}: "
                        + (
                            "API Gateway's account limit (the machine keeps up with it)"
                            if result.modelled_aws
                            else f"{args.w6_model_share:.0%} of the sustained rate, rounded "
                            f"down (the machine does not sustain {AWS_RATE:,}/s)"
                        )
                    ),
                ],
                [
                    "PostBudget",
                    f"{result.budget:,.0f}/s ({args.w6_budget_share:.0%} of the throttle), "
                    f"DeliveryConcurrency={args.w6_workers}, --concurrency {args.w6_workers}: "
                    f"{result.budget / args.w6_workers:,.0f} posts/s per worker",
                ],
                [
                    "model",
                    f"{args.w6_latency_ms:.0f} ms per post, {args.w6_gone_share:.1%} of ids "
                    "answered 410",
                ],
            ],
            right=set(),
        )
    )
    header = [
        "design",
        "room",
        "N",
        "to last post (s)",
        "floor (s)",
        "/ floor",
        "delivered",
        "gone",
        "duplicates",
        "429s",
        "DLQ / dropped",
        "",
    ]
    rows = [_row(r, r.n / result.rate, "queued") for r in result.queued]
    together_floor = sum(r.n for r in result.together) / result.rate
    rows += [_row(r, together_floor, "queued, at once") for r in result.together]
    rows += [_row(r, r.n / result.rate, "inline") for r in result.inline]
    parts.append(table(header, rows, right=set(range(2, 11))))
    notes = [
        "Time to the last post: from the enqueue of the plan job (queued) or the start of "
        "the invocation (inline) to the model's last 200 for the room. Floor: N / modelled "
        "rate (for the rooms sent at once, all their members / rate, the same for each). "
        'gone: ids the model answered 410 (the share it was set to; "of" when it differs). '
        "duplicates: second and later 200s to one id. 429s: throttled posts (retried). "
        "DLQ: jobs in the dead-letter queue after the room; dropped (inline): posts given up "
        "after one retried 429.",
        "Inline: version 1's sendMessage, one invocation posting to every member from "
        f"{INLINE_WORKERS} threads with no pacing, a 429 retried once and then dropped, "
        f"stopped at {LAMBDA_TIMEOUT:.0f} s as Lambda stops it.",
    ]
    if result.together:
        times = [r.to_last for r in result.together]
        notes.append(
            f"Rooms at once: the last finished {max(times) / min(times):.2f}x as late as the first."
        )
    cost_rows = [
        [
            "delivery workers, per post (queued, paced)",
            f"{result.worker_cpu_per_post * 1e6:,.0f} us CPU",
        ],
        [
            "delivery workers, per post (unpaced, sustain run)",
            f"{s.worker_cpu_per_post * 1e6:,.0f} us CPU",
        ],
        ["model endpoint, per post", f"{s.endpoint_cpu_per_post * 1e6:,.0f} us CPU"],
        [
            "gateway (local queue, poller, invocations), per job",
            f"{result.gateway_cpu_per_job * 1e3:,.1f} ms CPU ({result.jobs:,} jobs)",
        ],
    ]
    inline_cpu = [r for r in result.inline if not math.isnan(r.cpu) and r.reached]
    if inline_cpu:
        r = max(inline_cpu, key=lambda r: r.n)
        cost_rows.append(
            [
                f"inline sender, per post ({r.n:,}, one process)",
                f"{r.cpu / max(1, r.reached + r.dropped) * 1e6:,.0f} us CPU",
            ]
        )
    if result.plan is not None:
        p = result.plan
        cost_rows.append(
            [
                f"plan job, {p.ids:,} ids",
                f"{(p.read_s + p.build_s + p.send_s) * 1e3:,.0f} ms: read {p.read_s * 1e3:,.0f} "
                f"ms, {p.jobs} jobs built {p.build_s * 1e3:,.0f} ms, {p.calls} SendMessageBatch "
                f"calls {p.send_s * 1e3:,.0f} ms (local queue)",
            ]
        )
    parts.append("\n".join(notes))
    parts.append("Costs measured in this run:\n\n" + table(["", ""], cost_rows, right=set()))
    if result.errors:
        parts.append("Errors: " + "; ".join(result.errors))

    goals = _goals(result)
    path = ctx.plots_dir / "w6_aws_scale.png"
    try:
        plot(result, path)
    except Exception as exc:
        parts.append(f"plot failed: {first_line(exc)}")
    return Section(
        "W6",
        "W6 big room at AWS scale (queued fan-out, throttled endpoint)",
        "\n\n".join(parts),
        goals,
        [path],
    )


def _goals(result: W6) -> list[Goal]:
    queued = result.queued + result.together
    goals = []
    if not queued:
        return [Goal("W6", "(issue 10) big rooms through the queue", "not run", None)]
    total = sum(r.n for r in queued)
    reached = sum(min(r.n, r.reached) for r in queued)
    goals.append(
        Goal(
            "W6",
            "(issue 10) every recipient delivered or gone",
            f"{reached:,} of {total:,}",
            reached == total and all(r.complete for r in queued),
        )
    )
    dlq = max(r.dlq for r in queued)
    goals.append(Goal("W6", "(issue 10) 0 jobs in the DLQ", f"{dlq:,}", dlq == 0))
    duplicates = sum(r.duplicates for r in queued)
    goals.append(
        Goal(
            "W6",
            f"(issue 10) duplicates at most {GOAL_DUPLICATES:.1%}",
            f"{duplicates:,} ({duplicates / total:.3%})",
            duplicates <= GOAL_DUPLICATES * total,
        )
    )
    big = max(result.queued, key=lambda r: r.n, default=None)
    if big is not None:
        floor = big.n / result.rate
        goals.append(
            Goal(
                "W6",
                f"(issue 10) {big.n:,} members within {GOAL_FLOOR_RATIO}x the floor "
                f"(N / {result.rate:,.0f}/s)",
                f"{big.to_last:,.1f} s, {ratio(big.to_last, floor)} of {floor:,.1f} s",
                big.complete and big.to_last <= GOAL_FLOOR_RATIO * floor,
            )
        )
    if result.together:
        times = [r.to_last for r in result.together]
        spread = max(times) / min(times) if min(times) > 0 else math.inf
        goals.append(
            Goal(
                "W6",
                f"(issue 10) {len(times)} rooms at once each within {GOAL_SPREAD}x of the others",
                f"{', '.join(f'{t:.1f}' for t in times)} s: {spread:.2f}x",
                all(r.complete for r in result.together) and spread <= GOAL_SPREAD,
            )
        )
    return goals


def run(ctx: Context) -> Section:
    with tempfile.TemporaryDirectory(prefix="wschat-w6-") as tmp:
        workdir = Path(tmp)
        try:
            result = measure(ctx, workdir)
        finally:
            logs = BENCH / "results" / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                with contextlib.suppress(OSError):
                    (logs / log.name).write_bytes(log.read_bytes())
    return report(ctx, result)

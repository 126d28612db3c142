"""What the workloads share: the run context, connecting clients, statistics and tables."""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import Fleet, LoadGenError
from systems import ServerFailed, System

SYSTEM_ORDER = ("wschat", "ceiling", "bun", "peer")
# W2 and W4, whose issue-14 ratios to the ceiling are short, also run the floor
# (bench/floor_server.py): the least any Python gateway keeping wschat's semantics spends.
WITH_FLOOR = ("wschat", "ceiling", "floor", "bun", "peer")
# The ceilings every workload with servers compares with: "x ceiling", "x Bun".
CEILINGS = (("ceiling", "x ceiling"), ("bun", "x Bun"))
# Peer safety: serverless-offline starts one Python process per concurrent invocation, without a
# limit. Past these, a workload stops for the peer (the table says so) instead of swapping.
PEER_MAX_PROCESSES = 150
PEER_MAX_RSS_KIB = 8 * 1024 * 1024


class Aborted(Exception):
    """A server died or ran away during a workload; the message says how."""


@dataclass
class Goal:
    workload: str
    goal: str
    measured: str
    met: bool | None  # None: could not be judged

    @property
    def verdict(self) -> str:
        return {True: "met", False: "short", None: "not judged"}[self.met]


def share_goal(
    workload: str,
    goal: str,
    ours: float,
    theirs: float,
    share: float,
    unit: str,
    *,
    load_bound: bool = False,
) -> Goal:
    """A goal of the form "ours / theirs at least ``share``", judged only when both ran.

    ``load_bound``: both delivered everything offered at their peaks, so the offered load (the
    load generator's limit), not either server, set both figures; a ratio a hair under 1 is
    then noise, and the goal counts as met with that said."""
    judged = not (math.isnan(ours) or math.isnan(theirs) or theirs <= 0)
    measured = f"{num(ours)} vs {num(theirs)} {unit} = {ratio(ours, theirs)}"
    met = ours / theirs >= share if judged else None
    if judged and load_bound and not met:
        measured += " (both delivered every frame offered: the load generator's limit)"
        met = True
    return Goal(workload, goal, measured, met)


@dataclass
class Section:
    """One workload's output: markdown printed as it is and written to docs/benchmarks.md."""

    key: str
    title: str
    markdown: str
    goals: list[Goal] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


@dataclass
class Context:
    fleet: Fleet
    systems: dict[str, System]
    args: argparse.Namespace
    plots_dir: Path
    started: float = field(default_factory=time.monotonic)
    problems: list[str] = field(default_factory=list)  # servers' logged errors, per section
    current: str = ""  # the workload running ("w1" ...)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def time_left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    @property
    def processes(self) -> int:
        return len(self.fleet)


# -- running a server -----------------------------------------------------------------------


@contextlib.contextmanager
def running(ctx: Context, system: System, **env: str) -> Iterator[System]:
    """Start ``system`` fresh; afterwards drop every client and kill the server."""
    ctx.log(f"starting {system.label}" + (f" with {env}" if env else ""))
    started = time.monotonic()
    system.start(**env)
    ctx.log(f"{system.label} ready in {time.monotonic() - started:.1f} s on port {system.port}")
    profiler = None
    if ctx.args.profile and system.name == "wschat" and system.proc is not None:
        from profiling import Profiler

        suffix = "-" + "-".join(f"{k}={v}" for k, v in env.items()) if env else ""
        profiler = Profiler(system.proc.pid, f"{ctx.current}-{system.name}{suffix}")
    try:
        yield system
    finally:
        count, first = system.log_problems()
        if count:
            ctx.problems.append(
                f"{system.label}{' ' + str(env) if env else ''}: {count:,} error line(s) in "
                f"its log (bench/results/logs/{system.log_path.name}), the first: "
                f"`{cell_reason(first).replace('`', chr(39))}`"
            )
        # The data is thrown away: no graceful shutdown needed, and it would run $disconnect
        # for every connection first.
        system.stop(grace=0)
        with contextlib.suppress(LoadGenError):
            ctx.fleet.all("close", {"timeout": 0.5, "abort": True}, timeout=60)
        if profiler is not None:
            summary = profiler.finish()
            ctx.log(f"profile: {summary}" if summary else "profile: py-spy wrote nothing")


def watchdog(system: System) -> Callable[[], None]:
    """A check for Fleet.all: raises Aborted when the server died or (the peer) ran away."""

    def check() -> None:
        if not system.alive():
            code = system.proc.returncode if system.proc is not None else "?"
            raise Aborted(f"{system.label} died (exit code {code})")
        if system.name == "peer":
            counts = system.process_counts()
            handlers = counts.get("handlers", 0)
            system.peak_processes = max(system.peak_processes, handlers)
            rss = sum(system.rss().values())
            if handlers > PEER_MAX_PROCESSES or rss > PEER_MAX_RSS_KIB:
                raise Aborted(
                    f"stopped: serverless-offline had started {handlers} Python processes "
                    f"(one per concurrent invocation), {rss / 1024 / 1024:.1f} GiB RSS"
                )

    return check


# -- connecting -----------------------------------------------------------------------------


@dataclass
class ConnectResult:
    offered: int
    ok: int
    errors: collections.Counter[str]
    not_started: int
    handshakes: list[float]  # seconds, sorted
    start: float
    end: float
    by_process: list[list[int]]  # item ids each load-generator process was given
    connected: set[int]  # item ids whose handshake completed

    @property
    def wall(self) -> float:
        return max(1e-9, self.end - self.start)

    @property
    def rate(self) -> float:
        return self.ok / self.wall

    def error_summary(self) -> str:
        parts = [f"{n:,} {what}" for what, n in self.errors.most_common(3)]
        if self.not_started:
            parts.append(f"{self.not_started:,} not started (cap)")
        return "; ".join(parts) or "none"


def connect(
    ctx: Context,
    system: System,
    targets: Sequence[tuple[str | None, str]],
    *,
    concurrency: int,
    cap: float,
    timeout: float = 15.0,
) -> ConnectResult:
    """Open one client per (room, name) target, spread round robin over the load-generator
    processes, ``concurrency`` handshakes in flight in all, none started after ``cap`` s."""
    n = ctx.processes
    by_process = [list(range(i, len(targets), n)) for i in range(n)]
    per_process = max(1, concurrency // n)
    deadline = time.time() + cap
    args = [
        {
            "host": system.host,
            "port": system.port,
            "items": [(i, system.path(*targets[i])) for i in ids],
            "concurrency": per_process,
            "deadline": deadline,
            "timeout": timeout,
        }
        for ids in by_process
    ]
    replies = ctx.fleet.all("connect", args, timeout=cap + timeout + 60, check=watchdog(system))
    errors: collections.Counter[str] = collections.Counter()
    times = array("d")
    for reply in replies:
        errors.update(reply["errors"])
        times.frombytes(reply["handshake_s"])
    return ConnectResult(
        offered=len(targets),
        ok=sum(r["ok"] for r in replies),
        errors=errors,
        not_started=sum(r["not_started"] for r in replies),
        handshakes=sorted(times),
        start=min(r["start"] for r in replies),
        end=max(r["end"] for r in replies),
        by_process=by_process,
        connected={i for r in replies for i in r["ids"]},
    )


def snapshot(ctx: Context, tags: Sequence[str] | None, latencies: bool) -> list[dict[str, Any]]:
    return ctx.fleet.all("stats", {"tags": tags, "latencies": latencies}, timeout=60)


# -- statistics -----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, nearest rank; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


@dataclass
class Deliveries:
    count: int
    first: float
    last: float
    latencies: list[float]  # sorted seconds

    @classmethod
    def gather(cls, snapshots: Sequence[dict[str, Any]], tag: str) -> Deliveries:
        values = array("d")
        count, first, last = 0, math.inf, 0.0
        for snap in snapshots:
            st = snap["tags"].get(tag)
            if st is None:
                continue
            count += st["count"]
            first = min(first, st["first"])
            last = max(last, st["last"])
            values.frombytes(st["latencies"])
        return cls(count, first if count else 0.0, last, sorted(values))


def count_of(snapshots: Sequence[dict[str, Any]], tag: str) -> int:
    return sum(s["tags"].get(tag, {}).get("count", 0) for s in snapshots)


def loadgen_cpu(snapshots: Sequence[dict[str, Any]]) -> float:
    return sum(s["cpu"] for s in snapshots)


def lost_summary(snapshots: Sequence[dict[str, Any]]) -> str:
    lost: collections.Counter[str] = collections.Counter()
    closes: collections.Counter[int] = collections.Counter()
    for s in snapshots:
        lost.update(s["lost"])
        closes.update(s["server_closes"])
    parts = [f"{n:,} {what}" for what, n in lost.most_common(3)]
    parts += [f"{n:,} closed by the server ({code})" for code, n in closes.most_common(2)]
    return "; ".join(parts)


# -- formatting -----------------------------------------------------------------------------


def num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def ms(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def ratio(value: float | None, base: float | None) -> str:
    """value / base as "1.23x"; "-" when either is missing."""
    if value is None or base is None or math.isnan(value) or math.isnan(base) or base <= 0:
        return "-"
    r = value / base
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None
) -> str:
    """A markdown table, columns padded so it reads as well in a terminal as rendered."""
    right = set(range(1, len(header))) if right is None else right
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)
    )
    return "\n".join([line(header), rule + "|", *(line(r) for r in rows)])


def cell_reason(reason: str) -> str:
    """A reason fit for a table cell: one line, no pipes."""
    return " ".join(reason.replace("|", "/").split())[:160]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def start_failure(system: System, exc: BaseException) -> str:
    if isinstance(exc, ServerFailed) and system.unavailable:
        return system.unavailable
    return f"failed: {first_line(exc)}"

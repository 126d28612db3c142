"""Stepped broadcast load, shared by W3 (one big room, one sender), W4 (many small rooms,
everyone sending) and W7 (one big room, many senders): each is a parameterisation of
``measure`` (who joins which room, who sends, the steps) and of the tables below.

A step sends at a fixed rate for a fixed time, every message tagged with the step, then waits
for its deliveries to arrive (until all have, or none has for ``STALL`` seconds, or the drain
cap). Per step: deliveries/s = deliveries received / (last receipt - first send), end-to-end
latency percentiles over every delivery, how many expected deliveries never came within the
drain cap, and the CPU the server and the load generator used. A step that does not deliver
everything within its drain cap is the server's saturation point: the steps above it are not
run, since each would only queue behind the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from systems import System, cpu_busy, cpu_times
from workloads.common import (
    CEILINGS,
    Aborted,
    ConnectResult,
    Context,
    Deliveries,
    Goal,
    cell_reason,
    connect,
    count_of,
    first_line,
    loadgen_cpu,
    lost_summary,
    ms,
    num,
    percentile,
    ratio,
    running,
    share_goal,
    snapshot,
    start_failure,
    table,
    watchdog,
)

STALL = 2.0
WARM_MESSAGES = 3  # per sending process
WARM_RATE = 3.0  # messages per second, per sending process
WARM_CAP = 20.0
SETTLE_CAP = 12.0
SETTLE_STALL = 3.0


@dataclass
class Step:
    label: str
    rate: float  # messages per second offered, in all
    offered: float  # deliveries per second offered
    sent: int = 0
    skipped: int = 0
    expected: int = 0
    delivered: int = 0
    throughput: float = math.nan
    p50: float = math.nan
    p99: float = math.nan
    p_max: float = math.nan
    wall: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)  # group -> cores used
    loadgen_cpu: float = math.nan  # cores used
    busy: dict[int, float] = field(default_factory=dict)  # per CPU, share of the step busy
    send_rate: float = math.nan  # achieved
    drained: bool = False

    @property
    def complete(self) -> bool:
        return self.expected > 0 and self.delivered >= self.expected

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.delivered)


@dataclass
class Plan:
    """Who sends where: per load-generator process, its sender ids and each one's room."""

    senders: list[list[int]]
    rooms: list[list[str]]
    room_sizes: dict[str, int]  # connected members per room


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""  # why later steps did not run
    lost: str = ""
    warm_up: str = ""  # what went wrong warming up, if anything
    settle: str = ""  # what became of the last step's missing deliveries


def warm_up(ctx: Context, system: System, plan: Plan, *, tag: str) -> str:
    """A few messages first, every one waited for: warm function environments (the peer
    starts a Python process on first use), warm caches. Returns a problem, or ""."""
    args: list[dict[str, Any] | None] = []
    for ids, rooms in zip(plan.senders, plan.rooms, strict=True):
        if not ids:
            args.append(None)
            continue
        args.append(
            {
                "senders": ids[:WARM_MESSAGES],
                "rooms": rooms[:WARM_MESSAGES],
                "rate": WARM_RATE,
                "duration": WARM_MESSAGES / WARM_RATE,
                "tag": tag,
                "fmt": system.fmt,
            }
        )
    try:
        replies = ctx.fleet.all("send", args, timeout=60, check=watchdog(system))
    except Aborted as exc:
        return str(exc)
    expected = sum(
        n * plan.room_sizes[room]
        for reply in replies
        if reply is not None
        for room, n in reply["sent"].items()
    )
    deadline = time.monotonic() + WARM_CAP
    count = 0
    while time.monotonic() < deadline:
        count = count_of(snapshot(ctx, [tag], latencies=False), tag)
        if count >= expected:
            return ""
        time.sleep(0.2)
    return f"warm-up: {count:,} of {expected:,} deliveries arrived within {WARM_CAP:.0f} s"


def run_steps(
    ctx: Context,
    system: System,
    plan: Plan,
    steps: Sequence[tuple[str, float]],  # (label, messages per second in all)
    *,
    tag_prefix: str,
    duration: float,
    drain_cap: float,
) -> Outcome:
    outcome = Outcome()
    check = watchdog(system)
    weights = [len(s) for s in plan.senders]
    total_senders = sum(weights)
    mean_room = sum(plan.room_sizes[r] for rs in plan.rooms for r in rs) / max(1, total_senders)
    warm = warm_up(ctx, system, plan, tag=f"{tag_prefix}warm")
    if warm:
        outcome.warm_up = warm
    for index, (label, rate) in enumerate(steps):
        tag = f"{tag_prefix}{index}"
        step = Step(label, rate, rate * mean_room)
        outcome.steps.append(step)
        cpu_before = system.cpu()
        cores_before = cpu_times()
        lg_before = loadgen_cpu(snapshot(ctx, [tag], latencies=False))
        started = time.monotonic()
        args: list[dict[str, Any] | None] = []
        for ids, rooms, weight in zip(plan.senders, plan.rooms, weights, strict=True):
            if not ids:
                args.append(None)
                continue
            args.append(
                {
                    "senders": ids,
                    "rooms": rooms,
                    "rate": rate * weight / total_senders,
                    "duration": duration,
                    "tag": tag,
                    "fmt": system.fmt,
                }
            )
        try:
            replies = ctx.fleet.all("send", args, timeout=duration + 60, check=check)
        except Aborted as exc:
            outcome.stopped = str(exc)
            outcome.steps.pop()
            break
        sent_by_room: dict[str, int] = {}
        for reply in replies:
            if reply is None:
                continue
            step.skipped += reply["skipped"]
            for room, n in reply["sent"].items():
                sent_by_room[room] = sent_by_room.get(room, 0) + n
        step.sent = sum(sent_by_room.values())
        step.expected = sum(n * plan.room_sizes[room] for room, n in sent_by_room.items())
        first_send = min(r["start"] for r in replies if r is not None)
        last_send = max(r["end"] for r in replies if r is not None)
        step.send_rate = step.sent / max(1e-9, last_send - first_send)
        # Drain.
        deadline = time.monotonic() + drain_cap
        last_count, last_progress = -1, time.monotonic()
        while True:
            try:
                check()
            except Aborted as exc:
                outcome.stopped = str(exc)
                break
            count = count_of(snapshot(ctx, [tag], latencies=False), tag)
            now = time.monotonic()
            if count >= step.expected:
                step.drained = True
                break
            if count != last_count:
                last_count, last_progress = count, now
            # Stalled: deliveries had begun and stopped coming. (A server may take a while to
            # deliver the first one: that waits for the drain cap.)
            if (count and now - last_progress > STALL) or now > deadline:
                break
            time.sleep(0.2)
        step.wall = time.monotonic() - started
        step.busy = cpu_busy(cores_before)
        snaps = snapshot(ctx, [tag], latencies=True)
        cpu_after = system.cpu() if system.alive() else cpu_before
        step.server_cpu = {
            group: (cpu_after.get(group, 0.0) - before) / step.wall
            for group, before in cpu_before.items()
        }
        step.loadgen_cpu = (loadgen_cpu(snaps) - lg_before) / step.wall
        got = Deliveries.gather(snaps, tag)
        step.delivered = got.count
        if got.count:
            step.throughput = got.count / max(1e-9, got.last - first_send)
            step.p50 = percentile(got.latencies, 50)
            step.p99 = percentile(got.latencies, 99)
            step.p_max = got.latencies[-1]
        ctx.log(
            f"  {system.name} {label}: sent {step.sent:,} ({step.send_rate:,.0f}/s), "
            f"delivered {step.delivered:,} of {step.expected:,} at {step.throughput:,.0f}/s, "
            f"p50 {step.p50 * 1000:,.1f} ms p99 {step.p99 * 1000:,.1f} ms, "
            f"server CPU {sum(step.server_cpu.values()):.2f}, loadgen CPU {step.loadgen_cpu:.2f}"
        )
        outcome.lost = lost_summary(snaps)
        if outcome.stopped:
            break
        if not step.complete:
            if index + 1 < len(steps):
                outcome.stopped = (
                    f"saturated at {label}: {step.missing:,} of {step.expected:,} deliveries "
                    f"not received {drain_cap:.0f} s after the step; higher steps not run"
                )
            break
    last = outcome.steps[-1] if outcome.steps else None
    if last is not None and not last.complete and system.alive():
        outcome.settle = settle(ctx, last, f"{tag_prefix}{len(outcome.steps) - 1}")
    return outcome


def settle(ctx: Context, step: Step, tag: str) -> str:
    """After the last step: do its missing deliveries come late, or never?"""
    started = time.monotonic()
    count, last_count, last_progress = step.delivered, step.delivered, started
    while time.monotonic() - started < SETTLE_CAP:
        time.sleep(0.25)
        count = count_of(snapshot(ctx, [tag], latencies=False), tag)
        now = time.monotonic()
        if count >= step.expected:
            break
        if count != last_count:
            last_count, last_progress = count, now
        elif now - last_progress > SETTLE_STALL:
            break
    waited = time.monotonic() - started
    late = count - step.delivered
    missing = step.expected - count
    text = f"of the {step.label} step's {step.missing:,} missing deliveries, {late:,} arrived "
    text += f"in the next {waited:.0f} s"
    if missing <= 0:
        return text + ": late, none lost"
    if time.monotonic() - last_progress > SETTLE_STALL:
        return text + (
            f"; the other {missing:,} had not arrived when deliveries stopped for "
            f"{SETTLE_STALL:.0f} s (lost, or stuck in the server)"
        )
    return text + f"; {missing:,} were still to come when the run moved on"


def peak(outcome: Outcome | None) -> Step | None:
    """The step with the most deliveries per second."""
    if outcome is None:
        return None
    measured = [s for s in outcome.steps if s.delivered]
    return max(measured, key=lambda s: s.throughput) if measured else None


# -- the workloads' shared reporting ------------------------------------------------------------


@dataclass
class Run:
    """One server's run of a broadcast workload."""

    system: str
    label: str
    members: int = 0
    offered_members: int = 0
    connect_note: str = ""
    processes_note: str = ""
    outcome: Outcome | None = None
    failed: str = ""

    def step(self, label: str) -> Step | None:
        if self.outcome is None:
            return None
        return next((s for s in self.outcome.steps if s.label == label), None)


def step_cells(run: Run, label: str, reached: bool) -> list[str]:
    """deliveries/s, p50, p99 of one step, or why there is none."""
    step = run.step(label)
    if step is None:
        if run.failed:
            return [run.failed, "", ""]
        if run.outcome is not None and run.outcome.stopped and reached:
            return ["not run (saturated below)", "", ""]
        return ["-", "", ""]
    rate = num(step.throughput)
    if not step.complete:
        share = step.delivered / step.expected * 100 if step.expected else 0
        rate += f" ({share:.0f}% delivered)"
    return [rate, ms(step.p50), ms(step.p99)]


def plot_latency(
    runs: Sequence[Run],
    path: Any,
    title: str,
    goal: tuple[float, float] | None = None,
) -> None:
    """p50 (dashed) and p99 (solid) latency against offered deliveries per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "wschat": "tab:blue",
        "ceiling": "tab:green",
        "floor": "tab:orange",
        "bun": "tab:purple",
        "peer": "tab:red",
    }
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for run in runs:
        if run.outcome is None or not run.outcome.steps:
            continue
        steps = [s for s in run.outcome.steps if s.delivered]
        x = [s.offered for s in steps]
        color = colors.get(run.system)
        ax.plot(x, [s.p99 * 1000 for s in steps], "o-", color=color, label=f"{run.label} p99")
        ax.plot(
            x,
            [s.p50 * 1000 for s in steps],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{run.label} p50",
        )
        for s in steps:
            if not s.complete:
                ax.annotate(
                    "saturated",
                    (s.offered, s.p99 * 1000),
                    fontsize=7,
                    color=color,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    if goal is not None:
        ax.plot([goal[0]], [goal[1]], "k*", markersize=12, label="goal: p99 limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries per second")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_notes(r: Run) -> list[str]:
    """The notes one server's run adds under a W3/W4 table: how connecting went, what stopped
    or settled late, connections lost, and why it failed."""
    notes = []
    for note in (r.connect_note, r.processes_note):
        if note:
            notes.append(f"{r.label}: {note}.")
    if r.outcome is not None:
        for note in (r.outcome.warm_up, r.outcome.stopped, r.outcome.settle):
            if note:
                notes.append(f"{r.label}: {note}.")
        if r.outcome.lost:
            notes.append(f"{r.label}: connections lost during the run: {r.outcome.lost}.")
    if r.failed and r.members:
        notes.append(f"{r.label}: {r.failed}.")
    return notes


def measure(
    ctx: Context,
    name: str,
    *,
    key: str,
    targets: Sequence[tuple[str, str]],
    where: str,
    plan_of: Callable[[ConnectResult], Plan],
    steps: Callable[[Run], Sequence[tuple[str, float]]],
    tag_prefix: str,
    duration: float,
) -> Run:
    """One server's run of a broadcast workload: start it fresh, connect ``targets`` (room,
    name), plan who sends where from those connected, warm up and run ``steps(run)`` (label,
    messages per second in all)."""
    system = ctx.systems[name]
    args = ctx.args
    run = Run(name, name, offered_members=len(targets))
    try:
        with running(ctx, system):
            cap = args.peer_connect_cap if name == "peer" else args.connect_cap
            ctx.log(f"{key} {name}: connecting {len(targets):,} members to {where}")
            c = connect(ctx, system, targets, concurrency=args.connect_concurrency, cap=cap)
            run.members = len(c.connected)
            if c.ok < c.offered:
                run.connect_note = f"{c.ok:,} of {c.offered:,} connected ({c.error_summary()})"
            if not c.connected:
                run.failed = "no member connected"
                return run
            plan = plan_of(c)
            time.sleep(1.0)
            run.outcome = run_steps(
                ctx,
                system,
                plan,
                steps(run),
                tag_prefix=tag_prefix,
                duration=duration,
                drain_cap=args.drain_cap,
            )
    except Exception as exc:
        reason = start_failure(system, exc) if not run.members else first_line(exc)
        run.failed = cell_reason(reason)
        ctx.log(f"{key} {name}: {reason}")
    if system.peak_processes:
        run.processes_note = (
            f"serverless-offline ran up to {system.peak_processes} Python handler processes "
            "at once (one per concurrent invocation)"
        )
    return run


def cpu_per_message(step: Step | None) -> str:
    """The server's CPU time over a step per message sent in it, by process group: at a rate
    every server keeps up with, what each message costs, steadier than a peak on a noisy
    machine (the time the server waited for the step's last deliveries is in it too)."""
    if step is None or not step.sent or not step.server_cpu:
        return "-"
    cost = {g: cores * step.wall / step.sent * 1e6 for g, cores in step.server_cpu.items()}
    return " + ".join(f"{g} {us:,.0f}" for g, us in cost.items())


def deliveries_and_p99(step: Step) -> str:
    """A summary's headline cell: the step's deliveries/s and its p99."""
    return num(step.throughput) + " / " + ms(step.p99)


def report(runs: dict[str, Run], steps: str, summary: str, offered: str) -> str:
    """A broadcast workload's markdown: its steps and summary tables, then what was offered
    and each run's own notes."""
    notes = [offered]
    for r in runs.values():
        notes.extend(run_notes(r))
    return "\n\n".join([steps, summary, "\n".join(notes)])


def ceiling_goal(workload: str, runs: dict[str, Run], share: float) -> Goal:
    """Issue 14's goal for a broadcast workload: wschat's peak at least ``share`` of the
    ceiling's."""
    rates = peak_rates(runs)
    goal = share_goal(
        workload,
        f"(issue 14) at least {share}x the ceiling's deliveries per second",
        rates["wschat"],
        rates["ceiling"],
        share,
        "deliveries/s",
        load_bound=load_bound(runs, "wschat", "ceiling"),
    )
    if "floor" in runs:
        goal.measured += f"; the floor: {ratio(rates['floor'], rates['ceiling'])}"
    return goal


def load_bound(runs: dict[str, Run], *names: str) -> bool:
    """Whether each of these servers delivered every frame offered at its peak step, the
    same step for all: the load, not a server, was the limit."""
    peaks = [peak(runs[name].outcome) for name in names]
    if any(p is None or not p.complete for p in peaks):
        return False
    return len({p.label for p in peaks if p is not None}) == 1


def peak_rates(runs: dict[str, Run]) -> dict[str, float]:
    """Each server's peak deliveries per second (NaN when it has none)."""
    out = {}
    for name, r in runs.items():
        p = peak(r.outcome)
        out[name] = p.throughput if p is not None else math.nan
    return out


def steps_table(runs: dict[str, Run], first: str, steps: Sequence[tuple[str, float]]) -> str:
    """Per step (label, offered deliveries/s): every server's deliveries/s, p50 and p99."""
    header = [first, "offered deliveries/s"]
    for name in runs:
        header += [f"{name} deliveries/s", f"{name} p50 (ms)", f"{name} p99 (ms)"]
    rows = []
    for label, offered in steps:
        row = [label, num(offered)]
        for name in runs:
            row += step_cells(runs[name], label, reached=True)
        rows.append(row)
    return table(header, rows)


def summary_table(
    runs: dict[str, Run], headline: str, header_of: str, headline_cell: Callable[[Step], str]
) -> str:
    """Per server: members, peak deliveries/s and its ratio to the ceilings' and the peer's,
    the ``headline`` step's figure (column ``header_of``, cell ``headline_cell``), and the CPU
    used at the peak."""
    peaks = {name: peak(r.outcome) for name, r in runs.items()}
    rates = peak_rates(runs)
    bases = [*CEILINGS, *([("floor", "x floor")] if "floor" in runs else []), ("peer", "x peer")]
    header = [
        "server",
        "members",
        "peak deliveries/s",
        *[column for _, column in bases],
        header_of,
        "server CPU per message sent at that rate (us)",
        "server CPU at peak (cores)",
        "load-generator CPU at peak (cores)",
        "CPU 0 / CPU 1 busy at peak",
    ]
    rows = []
    for name, r in runs.items():
        p = peaks[name]
        if r.failed and not r.members:
            rows.append([r.label, r.failed, *[""] * (len(header) - 2)])
            continue
        step = r.step(headline)
        rows.append(
            [
                r.label,
                f"{r.members:,} of {r.offered_members:,}",
                num(rates[name]) + (f" at {p.label}" if p else ""),
                *[ratio(rates[name], rates[base]) for base, _ in bases],
                headline_cell(step) if step else "-",
                cpu_per_message(step),
                " + ".join(f"{g} {v:.2f}" for g, v in p.server_cpu.items()) if p else "-",
                f"{p.loadgen_cpu:.2f}" if p else "-",
                " / ".join(f"{p.busy[c] * 100:.0f}%" for c in sorted(p.busy)) if p else "-",
            ]
        )
    return table(header, rows)

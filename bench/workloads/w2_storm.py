"""W2 connect storm: connects per second, $connect and its store write included.

Each server starts fresh and gets the same storm: N clients, many handshakes in flight at
once, spread over the load-generator processes, none started after the cap. Connections stay
open until the storm ends. connects/s = handshakes completed / (last completion - first
start); handshake time runs from the TCP connect to the 101 response, so it includes waiting
for $connect when a server queues them.

wschat runs twice: with presence events off like every workload here, and with its default
(joined events to every member of lobby while it has at most 500 members). The floor
(bench/floor_server.py) stores each connect in SQLite from a worker, as wschat's $connect does,
and sends no presence events.
"""

from __future__ import annotations

from dataclasses import dataclass

from systems import PRESENCE_DEFAULT
from workloads.common import (
    ConnectResult,
    Context,
    Goal,
    Section,
    cell_reason,
    connect,
    first_line,
    lost_summary,
    ms,
    num,
    percentile,
    ratio,
    running,
    share_goal,
    snapshot,
    start_failure,
)
from workloads.common import table as md_table

GOAL_RATE = 1000.0
GOAL_SHARE = 0.5  # issue 14: with presence events on, of the ceiling's connects/s


@dataclass
class Result:
    label: str
    connect: ConnectResult | None = None
    failed: str = ""
    note: str = ""
    cpu: dict[str, float] | None = None  # server CPU seconds over the storm, by process group


def measure(ctx: Context, name: str, label: str, **env: str) -> Result:
    system = ctx.systems[name]
    args = ctx.args
    result = Result(label)
    try:
        with running(ctx, system, **env):
            targets = [(None, f"storm{i}") for i in range(args.w2_connections)]
            ctx.log(
                f"W2 {label}: {args.w2_connections:,} connects, {args.w2_concurrency} in flight, "
                f"cap {args.w2_cap:.0f} s"
            )
            cpu_before = system.cpu()
            result.connect = connect(
                ctx,
                system,
                targets,
                concurrency=args.w2_concurrency,
                cap=args.w2_cap,
                timeout=args.w2_timeout,
            )
            cpu_after = system.cpu()
            result.cpu = {g: cpu_after.get(g, 0.0) - v for g, v in cpu_before.items()}
            c = result.connect
            ctx.log(f"W2 {label}: {c.ok:,} in {c.wall:.1f} s = {c.rate:,.0f}/s")
            lost = lost_summary(snapshot(ctx, None, latencies=False))
            if lost:
                result.note = f"dropped after connecting: {lost}"
            if not system.alive():
                result.note += f" {system.label} died during the storm"
    except Exception as exc:
        reason = start_failure(system, exc) if result.connect is None else first_line(exc)
        result.failed = cell_reason(reason)
        ctx.log(f"W2 {label}: {reason}")
    if system.peak_processes:
        result.note += (
            f" serverless-offline ran up to {system.peak_processes} Python handler processes "
            "at once (one per concurrent invocation)"
        )
    return result


def cpu_per_connect(result: Result) -> str:
    """Server CPU time over the storm per handshake completed, by process group."""
    c = result.connect
    if c is None or not c.ok or not result.cpu:
        return "-"
    return " + ".join(f"{g} {seconds / c.ok * 1e6:,.0f}" for g, seconds in result.cpu.items())


def run(ctx: Context) -> Section:
    results = {
        "wschat": measure(ctx, "wschat", "wschat"),
        "wschat-presence": measure(
            ctx, "wschat", "wschat, presence events on (default)", **PRESENCE_DEFAULT
        ),
        "ceiling": measure(ctx, "ceiling", "ceiling"),
        "floor": measure(ctx, "floor", "floor (no presence events)"),
        "bun": measure(ctx, "bun", "bun"),
        "peer": measure(ctx, "peer", "peer (serverless-offline)"),
    }

    def rate(key: str) -> float:
        c = results[key].connect
        return c.rate if c is not None and c.ok else float("nan")

    rows = []
    for r in results.values():
        c = r.connect
        if c is None:
            rows.append([r.label, r.failed or "-", "", "", "", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                r.label,
                f"{c.ok:,} of {c.offered:,}",
                c.error_summary(),
                num(c.wall, 1),
                num(c.rate),
                ms(percentile(c.handshakes, 50)),
                ms(percentile(c.handshakes, 99)),
                ratio(c.rate, rate("ceiling")),
                ratio(c.rate, rate("bun")),
                ratio(c.rate, rate("peer")),
                cpu_per_connect(r),
            ]
        )
    header = [
        "server",
        "connected",
        "errors",
        "wall (s)",
        "connects/s",
        "handshake p50 (ms)",
        "p99 (ms)",
        "x ceiling",
        "x Bun",
        "x peer",
        "server CPU per connect (us)",
    ]
    args = ctx.args
    notes = [
        f"Offered: {args.w2_connections:,} connects to a fresh server, {args.w2_concurrency} "
        f"handshakes in flight, none started after {args.w2_cap:.0f} s, each given "
        f"{args.w2_timeout:.0f} s. x ceiling / x Bun / x peer: connects/s over theirs (higher is "
        "faster). Server CPU per connect: the server's CPU time over the storm per handshake "
        "completed, by process group (an environment that started during the storm brings "
        "its cold start with it)."
    ]
    for r in results.values():
        if r.note:
            notes.append(f"{r.label}: {r.note.strip()}.")
        if r.failed and r.connect is not None:
            notes.append(f"{r.label}: {r.failed}.")
    markdown = md_table(header, rows) + "\n\n" + "\n".join(notes)

    ours = results["wschat"].connect
    goals = [
        Goal(
            "W2",
            f"at least {GOAL_RATE:,.0f} connects per second",
            f"{num(rate('wschat'))} connects/s"
            + (f" ({ours.ok:,} of {ours.offered:,} within the cap)" if ours else ""),
            None if ours is None or not ours.ok else rate("wschat") >= GOAL_RATE,
        ),
        Goal(
            "W2",
            f"(issue 14) with presence events on: at least {GOAL_RATE:,.0f} connects per second",
            f"{num(rate('wschat-presence'))} connects/s",
            None
            if rate("wschat-presence") != rate("wschat-presence")
            else rate("wschat-presence") >= GOAL_RATE,
        ),
        share_goal(
            "W2",
            f"(issue 14) with presence events on: at least {GOAL_SHARE}x the ceiling's connects "
            "per second",
            rate("wschat-presence"),
            rate("ceiling"),
            GOAL_SHARE,
            "connects/s",
        ),
    ]
    floor = ratio(rate("floor"), rate("ceiling"))
    goals[-1].measured += f"; the floor, with no presence events: {floor}"
    return Section("W2", "W2 connect storm", markdown, goals)

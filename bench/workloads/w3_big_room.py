"""W3 big room: one room of 1,000 members, one sender stepping up its rate.

Every member joins the room with ``?room=`` when it connects (spread over the load-generator
processes); member 0 sends: for wschat and the peer the chat protocol's ``sendMessage`` to the
room, for the ceiling its own ``{"room", "text"}`` frame. Every member receives every message
(the sender too), and measures its latency from the send time the text carries.
"""

from __future__ import annotations

import time

from workloads.broadcast import (
    Plan,
    Run,
    peak,
    plot_latency,
    run_notes,
    run_steps,
    step_cells,
)
from workloads.common import (
    SYSTEM_ORDER,
    Context,
    Goal,
    Section,
    cell_reason,
    connect,
    first_line,
    ms,
    num,
    ratio,
    running,
    start_failure,
    table,
)

ROOM = "big"
LABELS = {"wschat": "wschat", "ceiling": "ceiling", "peer": "peer"}
GOAL_SHARE = 0.8
GOAL_P99 = 0.050
GOAL_AT = 10_000.0
GOAL_PEER = 10.0


def label_of(rate: float) -> str:
    return f"{rate:g} msg/s"


def measure(ctx: Context, name: str) -> Run:
    system = ctx.systems[name]
    args = ctx.args
    run = Run(name, LABELS[name], offered_members=args.w3_members)
    try:
        with running(ctx, system):
            targets = [(ROOM, f"m{i}") for i in range(args.w3_members)]
            cap = args.peer_connect_cap if name == "peer" else args.connect_cap
            ctx.log(f"W3 {name}: connecting {len(targets):,} members to {ROOM!r}")
            c = connect(ctx, system, targets, concurrency=args.connect_concurrency, cap=cap)
            run.members = len(c.connected)
            if c.ok < c.offered:
                run.connect_note = f"{c.ok:,} of {c.offered:,} connected ({c.error_summary()})"
            if not c.connected:
                run.failed = "no member connected"
                return run
            sender = min(c.connected)
            plan = Plan(
                senders=[[sender] if sender in ids else [] for ids in c.by_process],
                rooms=[[ROOM] if sender in ids else [] for ids in c.by_process],
                room_sizes={ROOM: run.members},
            )
            time.sleep(1.0)
            run.outcome = run_steps(
                ctx,
                system,
                plan,
                [(label_of(r), r) for r in args.w3_rates],
                tag_prefix="w3s",
                duration=args.step_seconds,
                drain_cap=args.drain_cap,
            )
    except Exception as exc:
        reason = start_failure(system, exc) if not run.members else first_line(exc)
        run.failed = cell_reason(reason)
        ctx.log(f"W3 {name}: {reason}")
    if system.peak_processes:
        run.processes_note = (
            f"serverless-offline ran up to {system.peak_processes} Python handler processes "
            "at once (one per concurrent invocation)"
        )
    return run


def run(ctx: Context) -> Section:
    runs = {name: measure(ctx, name) for name in SYSTEM_ORDER}
    args = ctx.args
    header = ["sender rate", "offered deliveries/s"]
    for name in SYSTEM_ORDER:
        header += [f"{name} deliveries/s", f"{name} p50 (ms)", f"{name} p99 (ms)"]
    rows = []
    for rate in args.w3_rates:
        label = label_of(rate)
        row = [label, num(rate * args.w3_members)]
        for name in SYSTEM_ORDER:
            row += step_cells(runs[name], label, reached=True)
        rows.append(row)

    peaks = {name: peak(r.outcome) for name, r in runs.items()}

    def peak_rate(name: str) -> float:
        p = peaks[name]
        return p.throughput if p is not None else float("nan")

    at_goal = label_of(GOAL_AT / args.w3_members)
    summary = []
    for name in SYSTEM_ORDER:
        r = runs[name]
        p = peaks[name]
        if r.failed and not r.members:
            summary.append([r.label, r.failed, *[""] * 7])
            continue
        step = r.step(at_goal)
        summary.append(
            [
                r.label,
                f"{r.members:,} of {r.offered_members:,}",
                num(peak_rate(name)) + (f" at {p.label}" if p else ""),
                ratio(peak_rate(name), peak_rate("ceiling")),
                ratio(peak_rate(name), peak_rate("peer")),
                ms(step.p99) if step else "-",
                " + ".join(f"{g} {v:.2f}" for g, v in p.server_cpu.items()) if p else "-",
                f"{p.loadgen_cpu:.2f}" if p else "-",
                " / ".join(f"{p.busy[c] * 100:.0f}%" for c in sorted(p.busy)) if p else "-",
            ]
        )
    summary_header = [
        "server",
        "members",
        "peak deliveries/s",
        "x ceiling",
        "x peer",
        f"p99 at {at_goal} (ms)",
        "server CPU at peak (cores)",
        "load-generator CPU at peak (cores)",
        "CPU 0 / CPU 1 busy at peak",
    ]
    notes = [
        f"Offered: {args.w3_members:,} members in one room (connected {args.connect_concurrency} "
        f"at a time), one sender at {', '.join(f'{r:g}' for r in args.w3_rates)} messages/s, "
        f"{args.step_seconds:g} s per step, then up to {args.drain_cap:g} s for the step's "
        "deliveries to arrive. deliveries/s = deliveries received / (last receipt - first send); "
        "p50/p99: end-to-end latency of every delivery, send to receive. x ceiling / x peer: "
        "peak deliveries/s over theirs. Server and load-generator CPU in cores (1.00 = one core "
        "busy the whole step, waiting for deliveries included); the servers are pinned to CPU 0, "
        "the load generator to CPU 1; CPU 0 / CPU 1 busy: how busy each core was, whoever used "
        "it (the kernel's loopback work and other processes on the machine included).",
    ]
    for r in runs.values():
        notes.extend(run_notes(r))
    markdown = "\n\n".join([table(header, rows), table(summary_header, summary), "\n".join(notes)])

    plot = ctx.plots_dir / "w3_latency.png"
    plot_latency(
        list(runs.values()),
        plot,
        f"W3: one room of {args.w3_members:,}, one sender stepping up",
        goal=(GOAL_AT, GOAL_P99 * 1000),
    )

    ours = runs["wschat"]
    goal_step = ours.step(at_goal)
    share = peak_rate("wschat") / peak_rate("ceiling") if peaks["ceiling"] else float("nan")
    over_peer = peak_rate("wschat") / peak_rate("peer") if peaks["peer"] else float("nan")
    goals = [
        Goal(
            "W3",
            f"at least {GOAL_SHARE}x the ceiling's deliveries per second",
            f"{num(peak_rate('wschat'))} vs {num(peak_rate('ceiling'))} deliveries/s "
            f"= {ratio(peak_rate('wschat'), peak_rate('ceiling'))}",
            None if share != share else share >= GOAL_SHARE,
        ),
        Goal(
            "W3",
            f"p99 at most {GOAL_P99 * 1000:.0f} ms at {GOAL_AT:,.0f} deliveries per second",
            (
                f"p99 {ms(goal_step.p99)} ms at {num(goal_step.throughput)} deliveries/s"
                + ("" if goal_step.complete else " (not all delivered)")
            )
            if goal_step
            else "not measured",
            None if goal_step is None else goal_step.p99 <= GOAL_P99 and goal_step.complete,
        ),
        Goal(
            "W3",
            f"at least {GOAL_PEER:.0f}x the peer's throughput",
            f"{ratio(peak_rate('wschat'), peak_rate('peer'))} the peer's peak deliveries/s",
            None if over_peer != over_peer else over_peer >= GOAL_PEER,
        ),
    ]
    return Section("W3", "W3 big room: one sender, 1,000 members", markdown, goals, [plot])

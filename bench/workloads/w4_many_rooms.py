"""W4 many rooms: 100 rooms of 10 members, every member sending.

Client i joins room ``r{i // 10}``; a room's members are spread over the load-generator
processes. Every member sends to its room at the same rate, stepping up from a modest rate;
each message reaches the room's 10 members (the sender too).
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

LABELS = {"wschat": "wschat", "ceiling": "ceiling", "peer": "peer"}
GOAL_SHARE = 0.5
GOAL_PEER = 10.0
HEADLINE_RATE = 1.0  # messages per second per member: "a fixed modest rate"


def label_of(rate: float) -> str:
    return f"{rate:g} msg/s each"


def room_of(i: int, size: int) -> str:
    return f"r{i // size:03d}"


def measure(ctx: Context, name: str) -> Run:
    system = ctx.systems[name]
    args = ctx.args
    total = args.w4_rooms * args.w4_room_size
    run = Run(name, LABELS[name], offered_members=total)
    try:
        with running(ctx, system):
            targets = [(room_of(i, args.w4_room_size), f"c{i}") for i in range(total)]
            cap = args.peer_connect_cap if name == "peer" else args.connect_cap
            ctx.log(f"W4 {name}: connecting {total:,} members to {args.w4_rooms} rooms")
            c = connect(ctx, system, targets, concurrency=args.connect_concurrency, cap=cap)
            run.members = len(c.connected)
            if c.ok < c.offered:
                run.connect_note = f"{c.ok:,} of {c.offered:,} connected ({c.error_summary()})"
            if not c.connected:
                run.failed = "no member connected"
                return run
            sizes: dict[str, int] = {}
            for i in c.connected:
                room = room_of(i, args.w4_room_size)
                sizes[room] = sizes.get(room, 0) + 1
            senders = [sorted(set(ids) & c.connected) for ids in c.by_process]
            plan = Plan(
                senders=senders,
                rooms=[[room_of(i, args.w4_room_size) for i in ids] for ids in senders],
                room_sizes=sizes,
            )
            time.sleep(1.0)
            run.outcome = run_steps(
                ctx,
                system,
                plan,
                [(label_of(r), r * run.members) for r in args.w4_rates],
                tag_prefix="w4s",
                duration=args.step_seconds,
                drain_cap=args.drain_cap,
            )
    except Exception as exc:
        reason = start_failure(system, exc) if not run.members else first_line(exc)
        run.failed = cell_reason(reason)
        ctx.log(f"W4 {name}: {reason}")
    if system.peak_processes:
        run.processes_note = (
            f"serverless-offline ran up to {system.peak_processes} Python handler processes "
            "at once (one per concurrent invocation)"
        )
    return run


def run(ctx: Context) -> Section:
    runs = {name: measure(ctx, name) for name in SYSTEM_ORDER}
    args = ctx.args
    total = args.w4_rooms * args.w4_room_size
    header = ["rate per member", "offered deliveries/s"]
    for name in SYSTEM_ORDER:
        header += [f"{name} deliveries/s", f"{name} p50 (ms)", f"{name} p99 (ms)"]
    rows = []
    for rate in args.w4_rates:
        label = label_of(rate)
        row = [label, num(rate * total * args.w4_room_size)]
        for name in SYSTEM_ORDER:
            row += step_cells(runs[name], label, reached=True)
        rows.append(row)

    peaks = {name: peak(r.outcome) for name, r in runs.items()}

    def peak_rate(name: str) -> float:
        p = peaks[name]
        return p.throughput if p is not None else float("nan")

    headline = label_of(HEADLINE_RATE)
    summary = []
    for name in SYSTEM_ORDER:
        r = runs[name]
        p = peaks[name]
        if r.failed and not r.members:
            summary.append([r.label, r.failed, *[""] * 7])
            continue
        step = r.step(headline)
        summary.append(
            [
                r.label,
                f"{r.members:,} of {r.offered_members:,}",
                num(peak_rate(name)) + (f" at {p.label}" if p else ""),
                ratio(peak_rate(name), peak_rate("ceiling")),
                ratio(peak_rate(name), peak_rate("peer")),
                (num(step.throughput) + " / " + ms(step.p99)) if step else "-",
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
        f"at {headline}: deliveries/s / p99 (ms)",
        "server CPU at peak (cores)",
        "load-generator CPU at peak (cores)",
        "CPU 0 / CPU 1 busy at peak",
    ]
    notes = [
        f"Offered: {args.w4_rooms} rooms of {args.w4_room_size} "
        f"(connected {args.connect_concurrency} at a time), every member sending to its room "
        f"at {', '.join(f'{r:g}' for r in args.w4_rates)} messages/s, {args.step_seconds:g} s "
        f"per step, then up to {args.drain_cap:g} s for the step's deliveries to arrive. "
        "Columns as in W3.",
    ]
    for r in runs.values():
        notes.extend(run_notes(r))
    markdown = "\n\n".join([table(header, rows), table(summary_header, summary), "\n".join(notes)])

    plot = ctx.plots_dir / "w4_latency.png"
    plot_latency(
        list(runs.values()),
        plot,
        f"W4: {args.w4_rooms} rooms of {args.w4_room_size}, everyone sending",
    )

    share = peak_rate("wschat") / peak_rate("ceiling") if peaks["ceiling"] else float("nan")
    over_peer = peak_rate("wschat") / peak_rate("peer") if peaks["peer"] else float("nan")
    goals = [
        Goal(
            "W4",
            f"at least {GOAL_SHARE}x the ceiling's deliveries per second",
            f"{num(peak_rate('wschat'))} vs {num(peak_rate('ceiling'))} deliveries/s "
            f"= {ratio(peak_rate('wschat'), peak_rate('ceiling'))}",
            None if share != share else share >= GOAL_SHARE,
        ),
        Goal(
            "W4",
            f"at least {GOAL_PEER:.0f}x the peer's throughput",
            f"{ratio(peak_rate('wschat'), peak_rate('peer'))} the peer's peak deliveries/s",
            None if over_peer != over_peer else over_peer >= GOAL_PEER,
        ),
    ]
    return Section(
        "W4", "W4 many rooms: 100 rooms of 10, everyone sending", markdown, goals, [plot]
    )

"""W4 many rooms: 100 rooms of 10 members, every member sending.

Client i joins room ``r{i // 10}``; a room's members are spread over the load-generator
processes. Every member sends to its room at the same rate, stepping up from a modest rate;
each message reaches the room's 10 members (the sender too).
"""

from __future__ import annotations

from workloads.broadcast import (
    Plan,
    Run,
    ceiling_goal,
    deliveries_and_p99,
    measure,
    peak_rates,
    plot_latency,
    report,
    steps_table,
    summary_table,
)
from workloads.common import (
    WITH_FLOOR,
    ConnectResult,
    Context,
    Goal,
    Section,
    ratio,
)

GOAL_SHARE = 0.5
GOAL_PEER = 10.0
HEADLINE_RATE = 1.0  # messages per second per member: "a fixed modest rate"


def label_of(rate: float) -> str:
    return f"{rate:g} msg/s each"


def room_of(i: int, size: int) -> str:
    return f"r{i // size:03d}"


def measure_one(ctx: Context, name: str) -> Run:
    args = ctx.args
    total = args.w4_rooms * args.w4_room_size

    def plan_of(c: ConnectResult) -> Plan:
        sizes: dict[str, int] = {}
        for i in c.connected:
            room = room_of(i, args.w4_room_size)
            sizes[room] = sizes.get(room, 0) + 1
        senders = [sorted(set(ids) & c.connected) for ids in c.by_process]
        return Plan(
            senders=senders,
            rooms=[[room_of(i, args.w4_room_size) for i in ids] for ids in senders],
            room_sizes=sizes,
        )

    return measure(
        ctx,
        name,
        key="W4",
        targets=[(room_of(i, args.w4_room_size), f"c{i}") for i in range(total)],
        where=f"{args.w4_rooms} rooms",
        plan_of=plan_of,
        steps=lambda run: [(label_of(r), r * run.members) for r in args.w4_rates],
        tag_prefix="w4s",
        duration=args.step_seconds,
    )


def run(ctx: Context) -> Section:
    runs = {name: measure_one(ctx, name) for name in WITH_FLOOR}
    args = ctx.args
    total = args.w4_rooms * args.w4_room_size
    rates = peak_rates(runs)

    def peak_rate(name: str) -> float:
        return rates[name]

    headline = label_of(HEADLINE_RATE)
    steps = steps_table(
        runs,
        "rate per member",
        [(label_of(r), r * total * args.w4_room_size) for r in args.w4_rates],
    )
    summary = summary_table(
        runs, headline, f"at {headline}: deliveries/s / p99 (ms)", deliveries_and_p99
    )
    offered = (
        f"Offered: {args.w4_rooms} rooms of {args.w4_room_size} "
        f"(connected {args.connect_concurrency} at a time), every member sending to its room "
        f"at {', '.join(f'{r:g}' for r in args.w4_rates)} messages/s, {args.step_seconds:g} s "
        f"per step, then up to {args.drain_cap:g} s for the step's deliveries to arrive. "
        "Columns as in W3."
    )
    markdown = report(runs, steps, summary, offered)

    plot = ctx.plots_dir / "w4_latency.png"
    plot_latency(
        list(runs.values()),
        plot,
        f"W4: {args.w4_rooms} rooms of {args.w4_room_size}, everyone sending",
    )

    over_peer = peak_rate("wschat") / peak_rate("peer")
    goals = [
        ceiling_goal("W4", runs, GOAL_SHARE),
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

"""W7 many senders: one room of 520 members, 20 of them sending, stepping up their rate.

W3's room with W4's senders: every member joins ``?room=crowd`` when it connects (spread over
the load-generator processes); the first 20 connected (spread over the processes too) send to
the room, each at the step's rate, so the server handles 20 messages' fan-outs at once instead
of one after the other. Every message reaches every member (the sender too): a step of r
messages/s per sender offers 20 x r x 520 deliveries per second. Measured as W3 and W4 are
(workloads/broadcast.py).
"""

from __future__ import annotations

from workloads.broadcast import (
    Plan,
    Run,
    ceiling_goal,
    deliveries_and_p99,
    measure,
    plot_latency,
    report,
    steps_table,
    summary_table,
)
from workloads.common import SYSTEM_ORDER, ConnectResult, Context, Section

ROOM = "crowd"
GOAL_SHARE = 0.8


def label_of(rate: float) -> str:
    return f"{rate:g} msg/s each"


def measure_one(ctx: Context, name: str) -> Run:
    args = ctx.args

    def plan_of(c: ConnectResult) -> Plan:
        chosen = set(sorted(c.connected)[: args.w7_senders])
        senders = [sorted(set(ids) & chosen) for ids in c.by_process]
        return Plan(
            senders=senders,
            rooms=[[ROOM] * len(ids) for ids in senders],
            room_sizes={ROOM: len(c.connected)},
        )

    def steps(run: Run) -> list[tuple[str, float]]:
        senders = min(args.w7_senders, run.members)
        return [(label_of(r), r * senders) for r in args.w7_rates]

    return measure(
        ctx,
        name,
        key="W7",
        targets=[(ROOM, f"s{i}") for i in range(args.w7_members)],
        where=repr(ROOM),
        plan_of=plan_of,
        steps=steps,
        tag_prefix="w7s",
        duration=args.w7_step_seconds,
    )


def run(ctx: Context) -> Section:
    runs = {name: measure_one(ctx, name) for name in SYSTEM_ORDER}
    args = ctx.args
    per_step = args.w7_senders * args.w7_members
    # The summary quotes the first step: by default 20 x 1 x 520 = 10,400 deliveries/s
    # offered, near W3's goal point (10,000), before any server saturates.
    headline = label_of(args.w7_rates[0])
    steps = steps_table(
        runs, "rate per sender", [(label_of(r), r * per_step) for r in args.w7_rates]
    )
    summary = summary_table(
        runs, headline, f"at {headline}: deliveries/s / p99 (ms)", deliveries_and_p99
    )
    offered = (
        f"Offered: {args.w7_members:,} members in one room (connected "
        f"{args.connect_concurrency} at a time), {args.w7_senders} of them sending to it at "
        f"{', '.join(f'{r:g}' for r in args.w7_rates)} messages/s each "
        f"({', '.join(f'{r * args.w7_senders:g}' for r in args.w7_rates)} messages/s in all), "
        f"{args.w7_step_seconds:g} s per step, then up to {args.drain_cap:g} s for the step's "
        "deliveries to arrive. Columns as in W3."
    )
    markdown = report(runs, steps, summary, offered)

    plot = ctx.plots_dir / "w7_latency.png"
    plot_latency(
        list(runs.values()),
        plot,
        f"W7: one room of {args.w7_members:,}, {args.w7_senders} senders stepping up",
    )
    goals = [ceiling_goal("W7", runs, GOAL_SHARE)]
    return Section(
        "W7",
        f"W7 many senders: {args.w7_senders} senders in one room of {args.w7_members:,}",
        markdown,
        goals,
        [plot],
    )

"""W3 big room: one room of 1,000 members, one sender stepping up its rate.

Every member joins the room with ``?room=`` when it connects (spread over the load-generator
processes); member 0 sends: for wschat and the peer the chat protocol's ``sendMessage`` to the
room, for the ceiling its own ``{"room", "text"}`` frame. Every member receives every message
(the sender too), and measures its latency from the send time the text carries.
"""

from __future__ import annotations

from workloads.broadcast import (
    Plan,
    Run,
    ceiling_goal,
    measure,
    peak_rates,
    plot_latency,
    report,
    steps_table,
    summary_table,
)
from workloads.common import (
    SYSTEM_ORDER,
    ConnectResult,
    Context,
    Goal,
    Section,
    ms,
    num,
    ratio,
    share_goal,
)

ROOM = "big"
GOAL_SHARE = 1.0  # issue 14: kept at the ceiling (issue 6 asked 0.8)
GOAL_BUN = 0.25
GOAL_P99 = 0.050
GOAL_AT = 10_000.0
GOAL_PEER = 10.0


def label_of(rate: float) -> str:
    return f"{rate:g} msg/s"


def measure_one(ctx: Context, name: str) -> Run:
    args = ctx.args

    def plan_of(c: ConnectResult) -> Plan:
        sender = min(c.connected)
        return Plan(
            senders=[[sender] if sender in ids else [] for ids in c.by_process],
            rooms=[[ROOM] if sender in ids else [] for ids in c.by_process],
            room_sizes={ROOM: len(c.connected)},
        )

    return measure(
        ctx,
        name,
        key="W3",
        targets=[(ROOM, f"m{i}") for i in range(args.w3_members)],
        where=repr(ROOM),
        plan_of=plan_of,
        steps=lambda run: [(label_of(r), r) for r in args.w3_rates],
        tag_prefix="w3s",
        duration=args.step_seconds,
    )


def run(ctx: Context) -> Section:
    runs = {name: measure_one(ctx, name) for name in SYSTEM_ORDER}
    args = ctx.args
    rates = peak_rates(runs)

    def peak_rate(name: str) -> float:
        return rates[name]

    at_goal = label_of(GOAL_AT / args.w3_members)
    steps = steps_table(
        runs, "sender rate", [(label_of(r), r * args.w3_members) for r in args.w3_rates]
    )
    summary = summary_table(runs, at_goal, f"p99 at {at_goal} (ms)", lambda s: ms(s.p99))
    offered = (
        f"Offered: {args.w3_members:,} members in one room (connected {args.connect_concurrency} "
        f"at a time), one sender at {', '.join(f'{r:g}' for r in args.w3_rates)} messages/s, "
        f"{args.step_seconds:g} s per step, then up to {args.drain_cap:g} s for the step's "
        "deliveries to arrive. deliveries/s = deliveries received / (last receipt - first send); "
        "p50/p99: end-to-end latency of every delivery, send to receive. x ceiling / x Bun / "
        "x peer: peak deliveries/s over theirs. Server and load-generator CPU in cores (1.00 = "
        "one core busy the whole step, waiting for deliveries included); the servers are pinned "
        "to CPU 0, the load generator to CPU 1; CPU 0 / CPU 1 busy: how busy each core was, "
        "whoever used it (the kernel's loopback work and other processes on the machine "
        "included)."
    )
    markdown = report(runs, steps, summary, offered)

    plot = ctx.plots_dir / "w3_latency.png"
    plot_latency(
        list(runs.values()),
        plot,
        f"W3: one room of {args.w3_members:,}, one sender stepping up",
        goal=(GOAL_AT, GOAL_P99 * 1000),
    )

    ours = runs["wschat"]
    goal_step = ours.step(at_goal)
    over_peer = peak_rate("wschat") / peak_rate("peer")
    goals = [
        ceiling_goal("W3", runs, GOAL_SHARE),
        share_goal(
            "W3",
            f"(issue 14) at least {GOAL_BUN}x Bun's deliveries per second",
            peak_rate("wschat"),
            peak_rate("bun"),
            GOAL_BUN,
            "deliveries/s",
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

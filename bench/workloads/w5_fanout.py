"""W5 Lambda fan-out: wschat's sendMessage handler beside the seed's sequential loop.

This calls bench/fanout.py (its ``run``; see bench/README.md): both handlers post through HTTP
to an @connections endpoint in a child process that adds 20 ms per call. The seed's loop costs
N x 20 ms by construction, so it runs only up to ``--w5-sequential-max`` recipients; above
that its time is shown as that lower bound and the speed-up as a lower bound too.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workloads.common import Context, Goal, Section, first_line, num, table

GOAL_N = 1000
GOAL_SPEEDUP = 30.0


def _measure(ctx: Context) -> tuple[list[Any], Any, list[int]]:
    import fanout

    args = ctx.args
    skipped: list[int] = []
    with tempfile.TemporaryDirectory(prefix="wschat-fanout-") as tmp:
        fargs = fanout.parse_args(
            [
                "--n",
                *(str(n) for n in args.w5_n),
                "--repeats",
                str(args.w5_repeats),
                "--plot",
                str(Path(tmp) / "unused.png"),
            ]
        )
        original: Callable[..., tuple[float, float]] = fanout.timed

        def timed(endpoint: Any, handler: Any, n: int, sender_id: str) -> tuple[float, float]:
            # The sequential baseline is bounded: above the limit, do not run it.
            if getattr(handler, "__module__", "") == "seed_send_message" and (
                n > args.w5_sequential_max
            ):
                if n not in skipped:
                    skipped.append(n)
                return math.nan, math.nan
            return original(endpoint, handler, n, sender_id)

        saved_env = dict(os.environ)
        fanout.timed = timed
        try:
            rows = fanout.run(fargs)
        finally:
            fanout.timed = original
            os.environ.clear()
            os.environ.update(saved_env)
    return rows, fargs, skipped


def plot(rows: list[Any], fargs: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = fargs.workers[0]
    ns = [r.n for r in rows]
    measured = [(r.n, r.seed) for r in rows if not math.isnan(r.seed)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(
        [n for n, _ in measured],
        [s for _, s in measured],
        "o-",
        color="tab:red",
        label="seed: Scan + sequential post_to_connection",
    )
    ax.plot(ns, [r.wschat(workers) for r in rows], "s-", color="tab:blue", label="wschat")
    ax.plot(ns, [n * fargs.delay for n in ns], ":", color="grey", label="N x delay")
    ax.plot(
        ns,
        [n * fargs.delay / GOAL_SPEEDUP for n in ns],
        "--",
        color="grey",
        label=f"goal: {GOAL_SPEEDUP:.0f}x the sequential loop",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("recipients (N)")
    ax.set_ylabel("sendMessage time (s)")
    ax.set_title(f"W5: fan-out over HTTP @connections, {fargs.delay * 1000:.0f} ms per call")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(ctx: Context) -> Section:
    ctx.log(f"W5: bench/fanout.py for N = {', '.join(map(str, ctx.args.w5_n))}")
    try:
        rows, fargs, skipped = _measure(ctx)
    except Exception as exc:
        reason = first_line(exc)
        ctx.log(f"W5 failed: {reason}")
        text = f"W5 could not run: {reason}"
        return Section(
            "W5",
            "W5 Lambda fan-out",
            text,
            [Goal("W5", "at N = 1,000, at least 30x faster than the sequential loop", text, None)],
        )
    workers = fargs.workers[0]
    out = []
    for row in rows:
        wschat = row.wschat(workers)
        if math.isnan(row.seed):
            bound = row.n * fargs.delay
            seed_cell = f"not run (at least {bound:,.1f}: N x {fargs.delay * 1000:.0f} ms)"
            speedup = f"at least {bound / wschat:,.1f}x"
        else:
            seed_cell = num(row.seed, 3)
            speedup = f"{row.seed / wschat:,.1f}x"
        out.append(
            [
                f"{row.n:,}",
                seed_cell,
                num(wschat, 3),
                speedup,
                num(sorted(row.wschat_cpu[workers])[len(row.wschat_cpu[workers]) // 2], 3),
                str(row.max_in_flight[workers]),
            ]
        )
    header = [
        "N",
        "seed sequential (s)",
        "wschat (s)",
        "speed-up",
        "wschat CPU (s)",
        "max in flight",
    ]
    notes = [
        f"bench/fanout.py: medians of {fargs.repeats} warm invocations (one untimed first), "
        f"{fargs.delay * 1000:.0f} ms per @connections call, endpoint in a child process, "
        f"wschat's fan-out pool {workers} threads. The seed's loop ran once per N from "
        f"N = {fargs.sequential_once_from:,}"
        + (
            f" and not at all above N = {ctx.args.w5_sequential_max:,} (it would take N x "
            f"{fargs.delay * 1000:.0f} ms or more)"
            if skipped
            else ""
        )
        + ". wschat CPU: CPU seconds of the benchmark process during one wschat invocation. "
        "W5 runs handlers, not servers: the ceiling, Bun and the peer have no part in it.",
    ]
    markdown = table(header, out) + "\n\n" + "\n".join(notes)
    path = ctx.plots_dir / "w5_fanout.png"
    plot(rows, fargs, path)
    at = next((r for r in rows if r.n == GOAL_N), None)
    if at is None or math.isnan(at.seed):
        goal = Goal("W5", "at N = 1,000, at least 30x faster than the sequential loop", "-", None)
    else:
        speedup = at.seed / at.wschat(workers)
        goal = Goal(
            "W5",
            f"at N = {GOAL_N:,}, at least {GOAL_SPEEDUP:.0f}x faster than the sequential loop",
            f"{speedup:.1f}x ({at.seed:.2f} s vs {at.wschat(workers):.3f} s)",
            speedup >= GOAL_SPEEDUP,
        )
    return Section(
        "W5", "W5 Lambda fan-out (sendMessage to N recipients)", markdown, [goal], [path]
    )

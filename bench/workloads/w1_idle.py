"""W1 idle: hold many connections; server memory (RSS) per connection.

Each server starts fresh; its RSS is read once it is ready and idle, then the clients connect
(lobby only, a few handshakes in flight so the connect rate does not matter here), are held a
few seconds, and the RSS is read again: (after - before) / connections held. wschat's gateway
process and its function workers are counted apart (the goal is about the gateway), as are
serverless-offline's node process and its Python handler processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from workloads.common import (
    SYSTEM_ORDER,
    Aborted,
    ConnectResult,
    Context,
    Goal,
    Section,
    cell_reason,
    connect,
    first_line,
    lost_summary,
    num,
    ratio,
    running,
    snapshot,
    start_failure,
    table,
)

GOAL_KIB = 20.0
HOLD_SECONDS = 3.0


@dataclass
class Result:
    system: str
    offered: int = 0
    cap: float = 0.0
    connect: ConnectResult | None = None
    held: int = 0
    before: dict[str, int] = field(default_factory=dict)  # group -> KiB
    after: dict[str, int] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)
    note: str = ""
    failed: str = ""

    def per_connection(self, group: str) -> float:
        if not self.held or group not in self.after:
            return float("nan")
        return (self.after[group] - self.before.get(group, 0)) / self.held


def measure(ctx: Context, name: str) -> Result:
    system = ctx.systems[name]
    args = ctx.args
    offered = args.w1_peer_connections if name == "peer" else args.w1_connections
    cap = args.w1_peer_cap if name == "peer" else args.w1_cap
    result = Result(name, offered=offered, cap=cap)
    try:
        with running(ctx, system):
            time.sleep(1.0)  # settle after start-up
            result.before = system.rss()
            targets = [(None, f"idle{i}") for i in range(offered)]
            ctx.log(f"W1 {name}: connecting {offered:,} clients (cap {cap:.0f} s)")
            result.connect = connect(ctx, system, targets, concurrency=args.w1_concurrency, cap=cap)
            ctx.log(
                f"W1 {name}: {result.connect.ok:,} connected in {result.connect.wall:.1f} s; "
                f"holding {HOLD_SECONDS:.0f} s"
            )
            time.sleep(HOLD_SECONDS)
            snaps = snapshot(ctx, None, latencies=False)
            result.held = sum(s["open"] for s in snaps)
            if not system.alive():
                raise Aborted(f"{system.label} died while holding the connections")
            result.after = system.rss()
            result.processes = system.process_counts()
            lost = lost_summary(snaps)
            if lost:
                result.note = f"lost while held: {lost}"
    except Exception as exc:
        reason = start_failure(system, exc) if result.connect is None else first_line(exc)
        result.failed = cell_reason(reason)
        ctx.log(f"W1 {name}: {reason}")
    return result


def run(ctx: Context) -> Section:
    results = {name: measure(ctx, name) for name in SYSTEM_ORDER}
    ceiling = results["ceiling"].per_connection("server")
    bun = results["bun"].per_connection("server")
    peer = results["peer"]
    peer_total = peer.per_connection("node") + peer.per_connection("handlers")
    rows = []

    def row(label: str, r: Result, group: str, processes: bool = True) -> None:
        if r.failed and not r.held:
            rows.append([label, r.failed, "", "", "", "", "", "", ""])
            return
        c = r.connect
        held = f"{r.held:,} of {r.offered:,}"
        if c is not None and c.ok < r.offered:
            held += f" ({c.error_summary()})"
        per = r.per_connection(group)
        count = r.processes.get(group, 0)
        rows.append(
            [
                label + (f" ({count} processes)" if processes and count > 1 else ""),
                held,
                num(c.wall, 1) if c else "-",
                num(r.before.get(group, 0) / 1024, 1),
                num(r.after.get(group, 0) / 1024, 1),
                num(per, 1),
                ratio(per, ceiling),
                ratio(per, bun),
                ratio(per, peer.per_connection("node")) if group != "handlers" else "-",
            ]
        )

    row("wschat: gateway process", results["wschat"], "gateway")
    row("wschat: function workers", results["wschat"], "workers")
    row("ceiling: websockets server", results["ceiling"], "server")
    row("bun: Bun.serve (uWebSockets)", results["bun"], "server")
    row("peer: serverless-offline (node)", peer, "node")
    row("peer: Python handler processes", peer, "handlers")

    header = [
        "server",
        "connections held",
        "connect time (s)",
        "RSS before (MiB)",
        "RSS after (MiB)",
        "KiB per connection",
        "x ceiling",
        "x Bun",
        "x peer (node)",
    ]
    notes = [
        f"Offered: {ctx.args.w1_connections:,} connections to wschat, the ceiling and Bun, "
        f"{ctx.args.w1_peer_connections:,} to the peer; {ctx.args.w1_concurrency} handshakes "
        f"in flight, connecting capped at {ctx.args.w1_cap:.0f} s "
        f"({ctx.args.w1_peer_cap:.0f} s for the peer), then held {HOLD_SECONDS:.0f} s. "
        "KiB per connection = (RSS after - RSS before) / connections held; "
        "x ceiling / x Bun / x peer: that figure over the ceiling's / Bun's / "
        "serverless-offline's node process's (lower is leaner).",
    ]
    for r in results.values():
        if r.note:
            notes.append(f"{r.system}: {r.note}.")
        if r.failed and r.held:
            notes.append(f"{r.system}: {r.failed}.")
    if peer.held:
        notes.append(
            f"peer, node and handler processes together: {num(peer_total, 1)} KiB per connection."
        )
    markdown = table(header, rows) + "\n\n" + "\n".join(notes)

    wschat = results["wschat"]
    gateway = wschat.per_connection("gateway")
    goals = [
        Goal(
            "W1",
            f"at most {GOAL_KIB:.0f} KiB of server memory per idle connection (gateway)",
            f"{num(gateway, 1)} KiB per connection (gateway) with {wschat.held:,} held"
            + (f" of {wschat.offered:,} offered" if wschat.held < wschat.offered else ""),
            None if not wschat.held else gateway <= GOAL_KIB,
        )
    ]
    return Section("W1", "W1 idle: server memory per held connection", markdown, goals)

"""What one message and one connect cost wschat serve in CPU time: the figures of the second
round in bench/what_made_it_faster.md.

A peak moves by a few percent from run to run on a shared 2-core machine; CPU time per unit
of work at a rate the server keeps up with moves far less. This starts ``wschat serve`` (the
same command and settings as bench/run.py, pinned to CPU 0, the load generator to CPU 1) and

- ``w4``: connects W4's 100 rooms of 10, then (after one round that warms the environments)
  three times sends 1 msg/s from every member
  for 4 s and prints the gateway's and the workers' CPU time per message sent;
- ``w2``: one storm of 5,000 connects (64 in flight) and the CPU time per connect.

Only the processes running before a measurement are counted, so an environment started
during a storm (its cold start) is left out; bench/run.py's "per connect" column counts it.

    .venv/bin/python bench/cpu_cost.py w4
    .venv/bin/python bench/cpu_cost.py w2 [--presence]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from loadgen import Fleet, raise_nofile_limit  # noqa: E402
from systems import PRESENCE_DEFAULT, Ceiling, Floor, System, Wschat, cpu_seconds  # noqa: E402

PROCESSES = 4
SYSTEMS: dict[str, type[System]] = {"wschat": Wschat, "floor": Floor, "ceiling": Ceiling}


def cpu_by_group(system: System, pids: dict[str, list[int]]) -> dict[str, float]:
    return {group: sum(cpu_seconds(p) for p in ps) for group, ps in pids.items()}


def connect_args(system: System, targets: list[tuple[str | None, str]], in_flight: int) -> list:
    return [
        {
            "host": system.host,
            "port": system.port,
            "items": [(i, system.path(*targets[i])) for i in range(k, len(targets), PROCESSES)],
            "concurrency": max(1, in_flight // PROCESSES),
            "deadline": time.time() + 60,
            "timeout": 15,
        }
        for k in range(PROCESSES)
    ]


def w4(system: System, fleet: Fleet, seconds: float = 4.0) -> None:
    def room(i: int) -> str:
        return f"r{i // 10:03d}"

    fleet.all("connect", connect_args(system, [(room(i), f"c{i}") for i in range(1000)], 16), 120)
    time.sleep(1)
    for rep in range(4):  # the first, unreported, starts every environment the load needs
        pids = system.groups()
        before = cpu_by_group(system, pids)
        sends = [
            {
                "senders": ids,
                "rooms": [room(i) for i in ids],
                "rate": 1.0 * len(ids),  # 1 msg/s from each member
                "duration": seconds,
                "tag": f"cost{rep}",
                "fmt": system.fmt,
            }
            for ids in (list(range(k, 1000, PROCESSES)) for k in range(PROCESSES))
        ]
        sent = sum(sum(r["sent"].values()) for r in fleet.all("send", sends, seconds + 60))
        time.sleep(1.0)  # the last deliveries
        after = cpu_by_group(system, pids)
        cost = {g: (after[g] - before[g]) / sent * 1e6 for g in pids}
        if rep:
            print(f"W4 {sent:,} messages: " + describe(cost) + " us per message", flush=True)


def w2(system: System, fleet: Fleet, connects: int = 5000) -> None:
    pids = system.groups()
    before = cpu_by_group(system, pids)
    replies = fleet.all(
        "connect", connect_args(system, [(None, f"storm{i}") for i in range(connects)], 64), 120
    )
    after = cpu_by_group(system, pids)
    ok = sum(r["ok"] for r in replies)
    wall = max(r["end"] for r in replies) - min(r["start"] for r in replies)
    cost = {g: (after[g] - before[g]) / max(1, ok) * 1e6 for g in pids}
    print(f"W2 {ok:,} connects, {ok / wall:,.0f}/s: " + describe(cost) + " us per connect")


def describe(cost: dict[str, float]) -> str:
    return " + ".join(f"{g} {us:,.0f}" for g, us in cost.items()) + f" = {sum(cost.values()):,.0f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=["w4", "w2"])
    p.add_argument("--presence", action="store_true", help="presence events on (the default)")
    p.add_argument(
        "--system",
        choices=list(SYSTEMS),
        default="wschat",
        help="the server measured: wschat serve (default), the floor or the ceiling",
    )
    args = p.parse_args()
    raise_nofile_limit()
    with tempfile.TemporaryDirectory(prefix="wschat-cost-") as work:
        system = SYSTEMS[args.system](Path(work), {0})
        fleet = Fleet(PROCESSES, {1})
        try:
            system.start(**(PRESENCE_DEFAULT if args.presence else {}))
            (w4 if args.workload == "w4" else w2)(system, fleet)
        finally:
            fleet.close()
            system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

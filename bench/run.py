"""wschat's benchmarks side by side with a ceiling and a peer: what ``make bench`` runs.

For each workload (bench/workloads/), the same load from the load generator (bench/loadgen.py,
separate processes) goes to:

- wschat: ``wschat serve`` running wschat's handlers on the embedded SQLite store;
- the ceiling: bench/ceiling_server.py, a bare ``websockets`` broadcast server with rooms;
- Bun, the compiled ceiling: bench/bun_ceiling/server.js, the same server on Bun (uWebSockets);
- the peer: serverless-offline running the same Python handlers (bench/peer/serverless.yml);
- for W5 only, the seed's algorithm (bench/seed_send_message.py, through bench/fanout.py).

Everything runs on 127.0.0.1, with counts and durations capped so a run fits in the time
budget. The report (markdown: machine, tables, goals) goes to stdout as each workload ends,
and the same text to docs/benchmarks.md; plots go to docs/bench/. Progress goes to stderr.

    .venv/bin/python bench/run.py                 # everything (what `make bench` runs)
    .venv/bin/python bench/run.py --only w3 w4    # some workloads; docs/ is left alone
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from loadgen import Fleet, raise_nofile_limit  # noqa: E402
from systems import (  # noqa: E402
    CHAT_ENV,
    Bun,
    Ceiling,
    Floor,
    Peer,
    System,
    Wschat,
    cpu_busy,
    cpu_times,
)
from workloads.common import Context, Section, table  # noqa: E402

WORKLOADS = {
    "w1": "workloads.w1_idle",
    "w2": "workloads.w2_storm",
    "w3": "workloads.w3_big_room",
    "w4": "workloads.w4_many_rooms",
    # Run with the other broadcast workloads, before the long W5 and W6.
    "w7": "workloads.w7_many_senders",
    "w5": "workloads.w5_fanout",
    "w6": "workloads.w6_aws_scale",
}
SYSTEMS = ("wschat", "ceiling", "floor", "bun", "peer")
SERVER_WORKLOADS = ("w1", "w2", "w3", "w4", "w7")  # those that start the servers
DOC = ROOT / "docs" / "benchmarks.md"
FASTER = BENCH / "what_made_it_faster.md"
PLOTS = ROOT / "docs" / "bench"
LOGS = BENCH / "results" / "logs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), help="run only these")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--processes", type=int, default=4, help="load-generator processes")
    p.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        default=list(SYSTEMS),
        help="servers to measure (the others' cells say 'not run')",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and load apart")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy wschat's processes during each workload: bench/results/profiles/",
    )
    a = p.add_argument
    a("--connect-concurrency", type=int, default=16, help="handshakes in flight (W1, W3, W4)")
    a("--connect-cap", type=float, default=30.0, help="s to connect W3/W4 members")
    a("--peer-connect-cap", type=float, default=30.0, help="the same for the peer")
    a("--w1-connections", type=int, default=10_000)
    a("--w1-peer-connections", type=int, default=2_000)
    a("--w1-concurrency", type=int, default=16)
    a("--w1-cap", type=float, default=75.0, help="s to connect W1's clients")
    a("--w1-peer-cap", type=float, default=30.0)
    a("--w2-connections", type=int, default=5_000)
    a("--w2-concurrency", type=int, default=64)
    a("--w2-cap", type=float, default=12.0, help="no connect starts after this many s")
    a("--w2-timeout", type=float, default=15.0, help="s one handshake may take")
    a("--w3-members", type=int, default=1_000)
    a("--w3-rates", type=float, nargs="+", default=[10, 20, 50, 100, 200])
    a("--w4-rooms", type=int, default=100)
    a("--w4-room-size", type=int, default=10)
    a("--w4-rates", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 5, 10])
    a("--w7-members", type=int, default=520, help="members of W7's one room")
    a("--w7-senders", type=int, default=20, help="of them, how many send")
    a("--w7-rates", type=float, nargs="+", default=[1, 5, 10, 20], help="msg/s per sender")
    a("--w7-step-seconds", type=float, default=2.0, help="s of sending per W7 step")
    a("--step-seconds", type=float, default=2.5, help="s of sending per W3/W4 step")
    a("--drain-cap", type=float, default=5.0, help="s to wait for a step's deliveries")
    a("--w5-n", type=int, nargs="+", default=[10, 100, 1000, 5000])
    a("--w5-repeats", type=int, default=3)
    a("--w5-sequential-max", type=int, default=1000, help="largest N for the seed's loop")
    a("--w6-n", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="queued rooms")
    a("--w6-together-n", type=int, default=30_000, help="members of each room sent at once")
    a("--w6-together-rooms", type=int, default=3)
    a("--w6-inline-n", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    a("--w6-sustain", type=int, default=20_000, help="members of the unthrottled room")
    a("--w6-workers", type=int, default=2, help="delivery workers (DeliveryConcurrency)")
    a("--w6-latency-ms", type=float, default=20.0, help="the model's time per post")
    a("--w6-gone-share", type=float, default=0.01, help="share of ids the model answers 410")
    a("--w6-rate", type=float, default=0, help="modelled throttle/s (0: from the sustain run)")
    a("--w6-model-share", type=float, default=0.85, help="throttle / sustained rate")
    a("--w6-budget-share", type=float, default=0.9, help="PostBudget / modelled throttle")
    args = p.parse_args(argv)
    args.only = args.only or list(WORKLOADS)
    return args


# -- the machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _ram() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def _command(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def machine(peer: Peer, bun: Bun, pinned: bool, background: str) -> str:
    import websockets

    commit = _command("git", "rev-parse", "--short", "HEAD")
    dirty = _command("git", "status", "--porcelain", "--untracked-files=no")
    rows = [
        ["date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")],
        ["CPU", f"{_cpu_model()}, {os.cpu_count()} cores"],
        ["RAM", _ram()],
        ["OS", f"{platform.system()} {platform.release()}"],
        ["Python", platform.python_version()],
        ["websockets", websockets.__version__],
        ["node", _command("node", "--version") if shutil.which("node") else "not installed"],
        ["serverless", peer.versions.get("serverless", "not installed")],
        ["serverless-offline", peer.versions.get("serverless-offline", "not installed")],
        ["bun", bun.version or bun.unavailable or "not installed"],
        [
            "wschat commit",
            commit + (" (with uncommitted changes)" if dirty not in ("", "?") else ""),
        ],
        [
            "placement",
            "servers pinned to CPU 0 (wschat's gateway and its workers, node and its Python "
            "processes share it; so does Bun's one process), load generator and this script "
            "to CPU 1"
            if pinned
            else "not pinned",
        ],
        ["other load before the run", background],
    ]
    env = ", ".join(f"{k}={v}" for k, v in CHAT_ENV.items())
    return (
        table(["", ""], rows, right=set())
        + "\n\nwschat and the peer run the same handlers with the same settings: "
        + env
        + ". wschat: `wschat serve --data-dir <tmp> --log-level WARNING --parameter "
        "LogLevel=WARNING` (the project's template.yaml, the embedded SQLite store, default "
        "--concurrency); the peer: `serverless offline start` with bench/peer/serverless.yml "
        "(LOG_LEVEL=WARNING). The ceiling and Bun run no handlers: bench/ceiling_server.py "
        'and bench/bun_ceiling/server.js broadcast `{"room", "text"}` frames as they come. '
        "Every server starts fresh for each workload."
    )


def background_load(seconds: float = 2.0) -> str:
    """How busy the machine is with nothing of ours running: other sessions' work shows."""
    before = cpu_times()
    time.sleep(seconds)
    busy = cpu_busy(before)
    cores = ", ".join(f"CPU {c} {b * 100:.0f}%" for c, b in sorted(busy.items()))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cores} busy over {seconds:.0f} s; load average {load}"


def goals_table(sections: list[Section]) -> str:
    rows = [[g.workload, g.goal, g.measured, g.verdict] for s in sections for g in s.goals]
    return table(
        ["workload", "goal (issue 6 unless named)", "measured", "verdict"], rows, right=set()
    )


# -- the run ------------------------------------------------------------------------------------


class Report:
    """Everything printed to stdout, kept to be written to docs/benchmarks.md verbatim."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def emit(self, text: str) -> None:
        self.parts.append(text)
        print(text + "\n", flush=True)

    def text(self) -> str:
        return "\n\n".join(self.parts) + "\n"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)
    raise_nofile_limit()
    pinned = not args.no_pin and (os.cpu_count() or 1) >= 2
    server_cpus, load_cpus = ({0}, {1}) if pinned else (None, None)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="wschat-bench-"))
    wschat, ceiling, floor, bun, peer = (
        Wschat(workdir, server_cpus),
        Ceiling(workdir, server_cpus),
        Floor(workdir, server_cpus),
        Bun(workdir, server_cpus),
        Peer(workdir, server_cpus),
    )
    systems: dict[str, System] = {
        "wschat": wschat,
        "ceiling": ceiling,
        "floor": floor,
        "bun": bun,
        "peer": peer,
    }
    fleet: Fleet | None = None
    report = Report()
    sections: list[Section] = []
    # Only a full run rewrites docs/.
    full = not args.no_docs and args.only == list(WORKLOADS) and set(args.systems) == set(SYSTEMS)

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        for name, system in systems.items():
            if name not in args.systems:
                system.unavailable = "not run (--systems)"
        servers = any(w in args.only for w in SERVER_WORKLOADS)
        for installable in (bun, peer):
            if installable.name in args.systems and servers:
                installable.install(progress)
                if installable.unavailable:
                    progress(f"{installable.name}: {installable.unavailable}")
        report.emit("# wschat benchmarks")
        report.emit(
            "Generated by `make bench` (bench/run.py); the tables below are what it printed. "
            "Plots: docs/bench/. How each workload is measured: bench/README.md."
        )
        report.emit("## Machine\n\n" + machine(peer, bun, pinned, background_load()))
        fleet = Fleet(args.processes, load_cpus)
        ctx = Context(fleet, systems, args, PLOTS if full else BENCH / "results")
        ctx.started = started
        for key in args.only:
            if ctx.time_left() < 20:
                progress(f"{key}: skipped, the time budget ({args.budget:.0f} s) is spent")
                report.emit(f"## {key.upper()}\n\nnot run: the time budget was spent")
                continue
            if key in ("w5", "w6") and pinned:
                # The fan-out benchmarks' processes are not ours to place (W6 places its own).
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            module = importlib.import_module(WORKLOADS[key])
            ctx.current = key
            t0 = time.monotonic()
            section = module.run(ctx)
            if ctx.problems:
                section.markdown += "\n\nErrors the servers logged during this workload:\n" + (
                    "\n".join(f"- {p}" for p in ctx.problems)
                )
                ctx.problems.clear()
            sections.append(section)
            progress(f"{section.key} done in {time.monotonic() - t0:.0f} s")
            report.emit(f"## {section.title}\n\n{section.markdown}")
        report.emit("## Goals\n\n" + goals_table(sections))
        total = time.monotonic() - started
        after = background_load()
        report.emit(f"Total run time: {total:.0f} s. Other load after the run: {after}.")
        # How the figures got where they are: measured once per step, kept beside the tables.
        report.emit(FASTER.read_text(encoding="utf-8").strip())
    finally:
        if fleet is not None:
            fleet.close()
        for system in systems.values():
            system.stop(grace=0)
        LOGS.mkdir(parents=True, exist_ok=True)
        for path in workdir.glob("*.log"):
            shutil.copy(path, LOGS / path.name)
        shutil.rmtree(workdir, ignore_errors=True)
    if full:
        DOC.write_text(report.text())
        progress(f"wrote {DOC.relative_to(ROOT)} and {PLOTS.relative_to(ROOT)}/*.png")
    progress(f"server logs: {LOGS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

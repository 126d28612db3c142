"""``bench/run.py --profile``: py-spy on wschat's processes while a workload runs.

py-spy samples the gateway and its function workers (``--subprocesses``), idle threads left
out, and writes collapsed stacks; ``summarize`` turns them into the top functions per process
(by handler for workers), by own time and by inclusive time, in
bench/results/profiles/<workload>-wschat.txt.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, name: str, rate: int = 100) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
        PROFILES.mkdir(parents=True, exist_ok=True)
        self.raw = PROFILES / f"{name}.raw"
        self.summary = PROFILES / f"{name}.txt"
        self.raw.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--output",
                str(self.raw),
                "--nonblocking",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self, timeout: float = 20.0) -> Path | None:
        """After the profiled process ended: wait for py-spy to write, then summarize."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(2)  # SIGINT: py-spy writes what it has
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while not self.raw.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.raw.exists():
            return None
        self.summary.write_text(summarize(self.raw))
        return self.summary


def _role(frames: list[str], process: str) -> str:
    if "worker_main" not in process:
        return "gateway"
    for frame in frames:
        if "wschat/handlers/" in frame and "lambda_handler" in frame:
            return "worker " + frame.split("(", 1)[1].split(":", 1)[0]
    return "worker (between invocations)"


def summarize(raw: Path, top: int = 18) -> str:
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        starts = [i for i, f in enumerate(frames) if f.startswith("process ")]
        process = frames[starts[-1]] if starts else "?"
        rest = frames[starts[-1] + 1 :] if starts else frames
        role = _role(rest, process)
        totals[role] += n
        if rest:
            own[role][rest[-1]] += n
        for frame in set(rest):
            incl[role][frame] += n
    out = [f"py-spy samples (idle threads left out) from {raw.name}", ""]
    grand = sum(totals.values()) or 1
    for role, total in totals.most_common():
        out.append(f"== {role}: {total:,} samples ({total / grand * 100:.0f}% of all)")
        out.append("  own time:")
        for frame, n in own[role].most_common(top):
            out.append(f"    {n / total * 100:5.1f}%  {frame}")
        out.append("  inclusive:")
        for frame, n in incl[role].most_common(top):
            out.append(f"    {n / total * 100:5.1f}%  {frame}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]), top=int(os.environ.get("TOP", "25"))))

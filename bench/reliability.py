"""Regenerate docs/reliability.md: what was tried against wschat, how many times, what held.

It runs, from the repository root, with this venv's Python:

1. the fault tests (tests/integration/test_faults.py) ``--fault-runs`` times, each a pytest run
   of its own whose JUnit XML carries each test's figures (``record_property``);
2. one pytest run of the bad-input, security and small-soak modules (``GROUPS``), with
   ``--junitxml`` for pass counts and ``--hypothesis-show-statistics`` for how many generated
   cases each property test passed;
3. the full soak (bench/soak.py: 2,000 clients, 50 rooms, 60 s), unless ``--soak small`` or
   ``--soak skip``;

and writes the tables with the date and the machine. Every figure in the document comes from
that run. Exit status 1 when anything failed (the document is written all the same, saying so).

    .venv/bin/python bench/reliability.py                 # about 6 minutes
    .venv/bin/python bench/reliability.py --fault-runs 1 --soak small
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import soak  # noqa: E402

FAULTS = "tests/integration/test_faults.py"


@dataclass(frozen=True)
class Group:
    title: str
    module: str  # a test module; its JUnit classname is the dotted path
    what: str

    @property
    def classname(self) -> str:
        return self.module.removesuffix(".py").replace("/", ".")


GROUPS = [
    Group(
        "Bad input: protocol parser",
        "tests/unit/test_fuzz_protocol.py",
        "hypothesis: invalid JSON, wrong types, huge and empty strings, deep nesting, odd "
        "Unicode, binary frames: parsed or refused with exactly one error",
    ),
    Group(
        "Bad input: handlers",
        "tests/unit/test_fuzz_handlers.py",
        "hypothesis: any frame to any function answers its sender (replies or one error), "
        "no unhandled exception",
    ),
    Group(
        "Bad input: gateway over a socket",
        "tests/integration/test_fuzz_gateway.py",
        "malformed and oversized frames, garbage handshakes, slow heads on a real socket while "
        "other clients chat",
    ),
    Group(
        "Security: end to end",
        "tests/integration/test_security.py",
        "room isolation, direct messages, forged/expired/missing tokens, @connections SigV4, "
        "names that impersonate system events, checkov",
    ),
    Group(
        "Security: room isolation property",
        "tests/unit/test_room_isolation_property.py",
        "hypothesis: random joins, leaves and sends; nobody receives a room it is not in",
    ),
    Group(
        "Security: SigV4 verification",
        "tests/unit/test_sigv4.py",
        "the @connections signature check against botocore's signer",
    ),
    Group("Security: tokens", "tests/unit/test_auth.py", "HS256 tokens: issued, checked"),
    Group(
        "Load: small soak (make test)",
        "tests/integration/test_soak_small.py",
        "200 clients, 10 rooms, 10 s, with a flooder (bench/soak.py)",
    ),
]


# --- running ------------------------------------------------------------------------------------


@dataclass
class Case:
    classname: str
    name: str
    outcome: str  # passed, failed, skipped
    seconds: float
    properties: dict[str, str] = field(default_factory=dict)
    message: str = ""


def parse_junit(path: Path) -> list[Case]:
    cases = []
    for element in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        message = ""
        for child in element:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = (child.get("message") or "")[:300]
            elif child.tag == "skipped":
                outcome = "skipped"
                message = (child.get("message") or "")[:300]
        properties = {
            p.get("name", ""): p.get("value", "") for p in element.iter("property") if p.get("name")
        }
        cases.append(
            Case(
                element.get("classname", ""),
                element.get("name", ""),
                outcome,
                float(element.get("time", "0") or 0),
                properties,
                message,
            )
        )
    return cases


_STATS_HEADER = re.compile(r"^(\S+\.py)::(\S+):$")
_STATS_COUNTS = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid")


def hypothesis_cases(output: str) -> dict[str, int]:
    """Passing generated cases per test module, from ``--hypothesis-show-statistics``."""
    counts: dict[str, int] = defaultdict(int)
    module = None
    for line in output.splitlines():
        header = _STATS_HEADER.match(line.strip())
        if header:
            module = header.group(1)
            continue
        found = _STATS_COUNTS.search(line)
        if found and module is not None:
            counts[module] += int(found.group(1))
    return dict(counts)


def pytest(args: list[str], junit: Path, log: Path) -> tuple[int, str, float]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_family=xunit1",
        f"--junitxml={junit}",
        *args,
    ]
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return code, log.read_text(errors="replace"), time.monotonic() - started


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}){memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}{load} "
        "at the start"
    )


# --- figures ------------------------------------------------------------------------------------


def _ints(cases: list[Case], key: str) -> list[int]:
    values = []
    for case in cases:
        if key in case.properties:
            with contextlib.suppress(ValueError):
                values.append(int(float(case.properties[key])))
    return values


def _floats(cases: list[Case], key: str) -> list[float]:
    values = []
    for case in cases:
        if key in case.properties:
            with contextlib.suppress(ValueError):
                values.append(float(case.properties[key]))
    return values


def _range(values: list[float], unit: str = "") -> str:
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    text = f"{low:g}" if low == high else f"{low:g} to {high:g}"
    return f"{text}{unit}"


def _held(cases: list[Case]) -> str:
    passed = sum(c.outcome == "passed" for c in cases)
    failures = [c.message for c in cases if c.outcome != "passed"]
    return f"passed {passed} of {len(cases)}" + (
        "; FAILED: " + "; ".join(failures) if failures else ""
    )


def _runs(cases: list[Case], runs: int) -> str:
    return f"{len(cases)} run{'s' if len(cases) != 1 else ''}" + (
        "" if len(cases) == runs else f" (of {runs} asked)"
    )


def fault_rows(cases: list[Case], runs: int) -> list[tuple[str, str, str, str]]:
    def named(prefix: str) -> list[Case]:
        return [c for c in cases if c.name.startswith(prefix)]

    rows = []
    dynamo = named("test_dynamodb_stopped")
    rows.append(
        (
            "Fault: DynamoDB-compatible server (moto) stopped mid-conversation, restarted on "
            "the same port; the gateway process is never restarted",
            f"{_runs(dynamo, runs)}; 3 clients, "
            f"{_range(_floats(dynamo, 'acked_before_stop'))} acked messages before each stop",
            _held(dynamo),
            f"acked before the stop: {sum(_ints(dynamo, 'acked_before_stop'))}, acked in all: "
            f"{sum(_ints(dynamo, 'acked_total'))}, in history after: "
            f"{sum(_ints(dynamo, 'in_history_after'))}; frames answered `unavailable` "
            f"during the outage: {sum(_ints(dynamo, 'unavailable_answers'))} (slowest answer "
            f"{_range(_floats(dynamo, 'unavailable_answer_max_s'), ' s')}); refused messages "
            f"later found stored: {sum(_ints(dynamo, 'refused_sends_stored'))} of "
            f"{sum(_ints(dynamo, 'refused_sends'))}; a new connection "
            f"refused with 503; moto state rebuilt by replaying its own request log "
            f"({_range(_floats(dynamo, 'requests_replayed'))} requests); first ack after "
            f"the restart in {_range(_floats(dynamo, 'first_ack_after_restart_s'), ' s')}",
        )
    )
    kill = named("test_sigkill")
    acked = _ints(kill, "acked")
    rows.append(
        (
            "Fault: SIGKILL of `wschat serve` (template, SQLite) mid-conversation, restarted "
            "on the same port and data directory",
            f"{_runs(kill, runs)}; 5 members sending ~40 messages/s each, plus a member "
            "that never comes back",
            _held(kill),
            f"acked: {sum(acked)} ({_range([float(a) for a in acked])} a run; "
            f"{sum(_ints(kill, 'acked_before_kill'))} before the kill); recovered by every "
            f"member: min {_range(_floats(kill, 'recovered_min'))} a run; acked but not "
            f"recovered: {sum(_ints(kill, 'missing'))}; catch-up pages repeating a message "
            f"the member had: {sum(_ints(kill, 'repeated_in_catch_up'))}; live deliveries "
            f"repeated: {sum(_ints(kill, 'live_twice'))}; stored but never "
            f"acked (in flight at the kill): {sum(_ints(kill, 'stored_unacked'))}; orphaned "
            f"workers gone {_range(_floats(kill, 'orphan_workers_exit_s'), ' s')} after the "
            f"kill; every member back and caught up "
            f"{_range(_floats(kill, 'all_reconnected_s'), ' s')} after the kill; live "
            f"messages received out of id order: {sum(_ints(kill, 'out_of_order_live'))}, "
            f"longest an older one came after a newer: "
            f"{_range(_floats(kill, 'reorder_lag_max_ms'), ' ms')}; "
            f"messages the page's catch-up (after the newest id) would have missed: "
            f"{sum(_ints(kill, 'missed_by_page_catch_up'))} (acknowledged ones among them: "
            f"{sum(_ints(kill, 'missed_by_page_catch_up_acked'))})",
        )
    )
    killed = [c for c in named("test_a_client_that_vanishes") if "killed" in c.name]
    frozen = [c for c in named("test_a_client_that_vanishes") if "frozen" in c.name]
    rows.append(
        (
            "Fault: a client vanishes without a close frame: its process SIGKILLed (the kernel "
            "closes the TCP connection)",
            _runs(killed, runs),
            _held(killed),
            f"`left` reached the room and `who` dropped it "
            f"{_range(_floats(killed, 'cleaned_up_s'), ' s')} after the kill",
        )
    )
    rows.append(
        (
            "Fault: a client vanishes silently: its process frozen (SIGSTOP), nothing more "
            "arrives; gateway idle timeout 2 s",
            _runs(frozen, runs),
            _held(frozen),
            f"`left` reached the room and `who` dropped it "
            f"{_range(_floats(frozen, 'cleaned_up_s'), ' s')} after the freeze (idle timeout "
            "+ the 2 s close handshake)",
        )
    )
    record = named("test_a_record_whose_connection_is_gone")
    rows.append(
        (
            "Fault: a connection record with no connection behind it (its `$disconnect` never "
            "ran), found by the next message to its room (410)",
            _runs(record, runs),
            _held(record),
            f"`left` reached the room, `who` and the store dropped it "
            f"{_range(_floats(record, 'cleaned_up_s'), ' s')} after the message was sent",
        )
    )
    return rows


def group_rows(cases: list[Case], examples: dict[str, int]) -> list[tuple[str, str, str, str]]:
    rows = []
    for group in GROUPS:
        mine = [c for c in cases if c.classname == group.classname]
        if not mine:
            present = (ROOT / group.module).exists()
            rows.append(
                (
                    f"{group.title} (`{group.module}`)",
                    "not collected" if present else "module not in the tree",
                    "n/a",
                    group.what,
                )
            )
            continue
        passed = sum(c.outcome == "passed" for c in mine)
        failed = sum(c.outcome == "failed" for c in mine)
        skipped = sum(c.outcome == "skipped" for c in mine)
        generated = examples.get(group.module, 0)
        tried = f"{len(mine)} test{'s' if len(mine) != 1 else ''}" + (
            f", {generated:,} generated cases passed" if generated else ""
        )
        held = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
        detail = group.what
        if group.module.endswith("test_soak_small.py"):
            p = mine[0].properties
            detail += (
                f": deliveries expected {p.get('expected_deliveries')}, delivered "
                f"{p.get('delivered')}, lost {p.get('lost')}; gateway RSS "
                f"{_mib(p.get('gateway_rss_first_kib'))} → {_mib(p.get('gateway_rss_last_kib'))}"
                f", workers {_mib(p.get('workers_rss_first_kib'))} → "
                f"{_mib(p.get('workers_rss_last_kib'))}; p99 {p.get('p99_A_ms')} ms without "
                f"the flooder, {p.get('p99_B_ms')} ms with it; median segment p99 "
                f"{p.get('segment_p99_A_ms')} / {p.get('segment_p99_B_ms')} ms (bound "
                f"{p.get('p99_bound_ms')} ms)"
            )
        failures = [f"{c.name}: {c.message}" for c in mine if c.outcome == "failed"]
        if failures:
            detail += "; FAILED: " + "; ".join(failures)
        rows.append((f"{group.title} (`{group.module}`)", tried, held, detail))
    return rows


def _mib(kib: str | None) -> str:
    try:
        return f"{int(kib or 0) / 1024:.1f} MiB"
    except ValueError:
        return "n/a"


def soak_row(result: dict[str, Any] | None) -> tuple[str, str, str, str] | None:
    if result is None:
        return None
    c = result["config"]
    lat = result["latency_ms"]
    gw, wk = result["gateway_rss_kib"], result["workers_rss_kib"]
    seg = result["segment_p99_median_ms"]
    worst = result.get("worst_second")
    failed = [name for name, ok in result["checks"].items() if not ok]
    return (
        f"Load: soak, {result['clients']:,} clients in {c['rooms']} rooms for "
        f"{c['duration']:g} s (+{c['warmup']:g} s warm-up), one message per client every "
        f"{c['interval']:g} s; a flooder in every other segment; loopback only",
        f"1 run; {result['sent']:,} messages, {result['expected_deliveries']:,} deliveries "
        f"checked; flooder: {result['flood_sent']:,} frames sent, "
        f"{result['flood_rate_limited']:,} answered `rate_limited`, "
        f"{result['flood_acked']} accepted",
        "all checks passed" if not failed else "FAILED: " + ", ".join(failed),
        f"lost deliveries: {result['lost']} (delivered {result['delivered']:,} of "
        f"{result['expected_deliveries']:,}); delivered twice: {result['duplicates']}; "
        f"disconnects: {result['disconnects']}; "
        f"gateway RSS median first/last quarter {gw['first_quarter'] / 1024:.1f} / "
        f"{gw['last_quarter'] / 1024:.1f} MiB, workers (sum) {wk['first_quarter'] / 1024:.1f} / "
        f"{wk['last_quarter'] / 1024:.1f} MiB (bound +{c['rss_bound']:.0%}); delivery "
        f"latency p50/p99 {lat['A']['p50']}/{lat['A']['p99']} ms without the flooder, "
        f"{lat['B']['p50']}/{lat['B']['p99']} ms with it; median of the {c['segments']} "
        f"segments' p99s {seg['A']} ms without, {seg['B']} ms with (bound "
        f"{result['p99_bound_ms']} ms: {c['p99_factor']:g}x, or +{c['p99_slack_ms']:g} ms "
        f"when larger); segment p99s in order: "
        + " ".join(f"{phase} {value}" for phase, value in result["segment_p99_ms"])
        + "; CPU other processes on the machine took in each segment (cores): "
        + " ".join(f"{v:g}" for v in result["segment_other_cpu_cores"])
        + (
            f"; worst second: p50 {worst[3]} ms, p99 {worst[4]} ms ({worst[1]}, second {worst[0]})"
            if worst
            else ""
        ),
    )


# --- the document -------------------------------------------------------------------------------


def table(rows: list[tuple[str, str, str, str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| what was tried | how many | what held | figures |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell(part) for part in row)} |" for row in rows]
    return "\n".join(lines)


def render(
    *,
    started: dt.datetime,
    seconds: float,
    host: str,
    command: str,
    fault_runs: int,
    fault_cases: list[Case],
    group_cases: list[Case],
    examples: dict[str, int],
    soak_result: dict[str, Any] | None,
    ok: bool,
) -> str:
    rows = fault_rows(fault_cases, fault_runs)
    row = soak_row(soak_result)
    if row is not None:
        rows.append(row)
    rows += group_rows(group_cases, examples)
    kill = [c for c in fault_cases if c.name.startswith("test_sigkill")]
    out_of_order = sum(_ints(kill, "out_of_order_live"))
    missed = sum(_ints(kill, "missed_by_page_catch_up"))
    missed_acked = sum(_ints(kill, "missed_by_page_catch_up_acked"))
    missed_text = (
        f"{missed} in these runs, {missed_acked} of them acknowledged to their sender (a message "
        "stored when the gateway died, before its `ack` went out, is in the room's history for "
        "anyone who joins later, but the page never shows it to those who were there)"
        if missed
        else "none in these runs"
    )
    lag = _range([max(_floats(kill, "reorder_lag_max_ms") or [0.0])], " ms")
    flood = ""
    if soak_result is not None:
        lat = soak_result["latency_ms"]
        flood_seconds = max(1.0, soak_result["config"]["duration"] / 2)
        seg = soak_result["segment_p99_median_ms"]
        flood = (
            f"In the soak, the flooder's frames were refused at about "
            f"{soak_result['flood_rate_limited'] / flood_seconds:,.0f} a second, each one a "
            f"function invocation and a store write (the rate limit lives in the handler, as "
            f"on Lambda); the others' p50/p99 went from {lat['A']['p50']}/{lat['A']['p99']} ms "
            f"to {lat['B']['p50']}/{lat['B']['p99']} ms (median segment p99 {seg['A']} to "
            f"{seg['B']} ms). "
        )
    verdict = "Everything passed." if ok else "**Something failed: see the rows marked FAILED.**"
    return f"""# Reliability: what was tried, and what held

- Generated by: `make reliability` (`{command}`); run it again to regenerate this file.
- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds / 60:.1f} minutes.
- Machine: {host}.

Every figure below is what that run measured. {verdict}

What wschat promises (docs/protocol.md): an `ack` means the message is stored; `history` after
the last id a client saw returns what it missed; a bad input gets its sender an `error` and
hurts no one else; no one reads a room they are not in.

{table(rows)}

## How each was tried

- **DynamoDB stopped**: `wschat serve --store dynamodb` against a moto server of the test's own
  (`AWS_ENDPOINT_URL_DYNAMODB`, test credentials, the seed's region; the tables created with
  `ensure_tables` under the names template.yaml gives). Three clients chat, moto is stopped,
  each client sends again: every frame is answered `unavailable` (and nothing of it is stored),
  `/healthz` still answers, a new connection is refused with 503. moto keeps its state in
  memory only, so it is started again on the same port with its request recorder's log
  replayed (`MOTO_ENABLE_RECORDING`: the recorder writes each request before moto handles it,
  and the test server handles one at a time, so the replay rebuilds exactly the state the
  stopped server had). The same gateway process then acknowledges and delivers again, and the
  room's history holds every message acknowledged before and after.
- **Gateway SIGKILL**: five members modelled on the chat page (reconnect with capped
  exponential backoff and jitter; after reconnecting, `history` after the newest id held, page
  by page, then `who`) and one that never comes back. The crashed connections' records (no
  `$disconnect` ran) must go: `wschat serve` forgets a previous run's records when it starts
  (and failing that, its fan-outs' 410s would). Checked: every acknowledged message reached
  every member,
  no catch-up page repeated a message its member had before the kill, every stored message
  once (ids and clientIds), the vanished member gone from presence and from the store, and the
  killed gateway's function workers exit by themselves.
- **Vanished client**: a separate process holds one chat connection; SIGKILL (its kernel closes
  the socket: no WebSocket close frame) or SIGSTOP (nothing at all arrives; only the idle
  timeout can tell). An observer in the room must get `left` and `who` must drop the name. And
  a record with no connection behind it, written into the running gateway's store: the next
  message to its room gets a 410 for it, which must drop it the same way.
- **Soak** (bench/soak.py): load generators in separate processes (asyncio); a room's members
  all in one generator, so it can check every acknowledged message against every member's
  deliveries. The measured time alternates segments without and with a flooding client (a
  process of its own, niced so that its own CPU does not come out of the server's on one
  machine; it sends `sendMessage` as fast as its socket takes them and is cut off at the end of
  each flood segment), so a drift in the machine's load weighs on both conditions alike; the
  flooder check compares the median of the flood segments' p99s with the median of the
  others'.
  Latency is from send to receipt at each member (both clocks in one process); RSS from
  /proc every second (every 0.25 s in the small soak), and with it the CPU the rest of the
  machine used (/proc/stat less this soak's own processes), since a tail on a shared machine
  may come from elsewhere.
- **Bad input and security**: the modules listed, run once with `--junitxml` (pass counts) and
  `--hypothesis-show-statistics` (generated cases that passed).

## Findings

- **Fixed: a killed gateway's workers lingered up to 30 s.** A function worker waiting for a
  fast-path reply from the gateway when the gateway died waited out its 30 s timeout, holding
  the SQLite store, before it noticed. The worker now fails its waiting calls as soon as its pipe
  from the gateway closes (src/wschat/gateway/worker_main.py), and the SIGKILL test checks the
  workers are gone within 5 s.
- **Live messages can arrive out of id order** ({out_of_order} times in the SIGKILL runs
  above): two `sendMessage` invocations that run at once post in whichever order they finish,
  locally and on AWS alike. So "history after the newest id I have" is not always everything
  missed: a message older than the newest one received may still have been on its way when the
  connection dropped. The page (src/wschat/web/connection.js) and the terminal client catch up
  exactly that way. The test's members ask a second time, from the newest id they had 30 s
  before the drop (a `sendMessage` invocation stores and posts within its 29 s timeout), and
  count what only that second ask found: {missed_text}. An older message came at most {lag}
  after a newer one here, so the window is narrow and such a miss rare: it takes the crash to
  fall between storing a message and posting it, while a newer one is posted. **Not fixed**
  (the page and the terminal client are outside these tests): a client that must never miss a
  message should catch up from a point that much earlier and drop the ids it already has, and
  docs/protocol.md's "exactly the messages it missed" holds only when live messages arrive in
  id order.
- **A 410 drops a record only once it is 30 s old** (a younger one may belong to a connection
  still in its `$connect`, which API Gateway answers 410 for): a client that vanishes, with no
  `$disconnect` run, within 30 s of connecting stays in `who` until then. `wschat serve` with
  SQLite forgets a previous run's records when it starts, so a crash of the local gateway
  leaves none behind; a shared DynamoDB store relies on the 410s and the records' TTL.
- **A flooder costs CPU, not correctness.** {flood}It starved no one here (the gateway runs
  one frame at a time per connection and stops reading a socket with 32 frames waiting), but
  every frame it sends is one invocation, locally and on AWS (where it also counts against the
  stage's throttling, which every client shares).
"""


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault-runs", type=int, default=5)
    parser.add_argument("--soak", choices=("full", "small", "skip"), default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "reliability.json"
    )
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    host = machine()
    ok = True
    with tempfile.TemporaryDirectory(prefix="wschat-reliability-") as tmp:
        work = Path(tmp)
        fault_cases: list[Case] = []
        for run in range(1, args.fault_runs + 1):
            junit = work / f"faults-{run}.xml"
            code, _, seconds = pytest([FAULTS], junit, work / f"faults-{run}.log")
            cases = parse_junit(junit) if junit.exists() else []
            fault_cases += cases
            ok &= code == 0
            print(f"faults run {run}: exit {code}, {len(cases)} tests, {seconds:.0f} s")
        modules = [g.module for g in GROUPS if (ROOT / g.module).exists()]
        junit = work / "groups.xml"
        code, output, seconds = pytest(
            ["--hypothesis-show-statistics", *modules], junit, work / "groups.log"
        )
        group_cases = parse_junit(junit) if junit.exists() else []
        examples = hypothesis_cases(output)
        ok &= code == 0
        print(
            f"bad input, security, small soak: exit {code}, {len(group_cases)} tests, "
            f"{seconds:.0f} s"
        )
    soak_result = None
    if args.soak != "skip":
        config = soak.SoakConfig()
        if args.soak == "small":
            config = soak.small_config()
        soak_result = soak.run(config)
        print(soak.table(soak_result))
        ok &= bool(soak_result["ok"])
    command = " ".join(["bench/reliability.py", *(sys.argv[1:] if argv is None else argv)])
    document = render(
        started=started,
        seconds=time.monotonic() - clock,
        host=host,
        command=command,
        fault_runs=args.fault_runs,
        fault_cases=fault_cases,
        group_cases=group_cases,
        examples=examples,
        soak_result=soak_result,
        ok=ok,
    )
    args.out.write_text(document)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": host,
                "faults": [c.__dict__ for c in fault_cases],
                "groups": [c.__dict__ for c in group_cases],
                "hypothesis_cases": examples,
                "soak": soak_result,
                "ok": ok,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}" + ("" if ok else " (with failures)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

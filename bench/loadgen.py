"""The load generator of bench/run.py: WebSocket clients in child processes, driven over pipes.

Each ``LoadGenerator`` process runs an asyncio loop with many light clients. A client is an
``asyncio.Protocol`` that speaks RFC 6455 itself: an HTTP/1.1 upgrade (``Sec-WebSocket-Accept``
checked), masked frames out, unmasked frames in, pings answered with pongs, closes echoed. It
parses frames by hand instead of through a full WebSocket library so that the load generator,
which shares the machine with the server under test, stays cheap per delivered message: what
it costs is reported with every measurement (``cpu``) so a saturated load generator shows.

Messages carry their send time: the text of every chat message is ``TAG|SEND_TIME|PAD``, where
SEND_TIME is ``time.time()`` in the sending process (the same clock in every process of one
machine), so receivers measure end-to-end latency (send to receive) themselves. TAG names the
step of a workload, so late deliveries of one step never count for the next.

The parent (``Fleet``) sends commands and gets one reply per command, in order:
``connect``, ``send``, ``stats``, ``close``, ``exit``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import multiprocessing
import os
import resource
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from websockets.utils import apply_mask  # the C speed-up when websockets has it

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT_MARK = b'"text":"'
MAX_HEAD = 16 * 1024

# Text frames the two protocols send: wschat's chat protocol (also the peer's: same handlers)
# and the ceiling's own.
FORMATS = {
    "chat": '{{"action":"sendMessage","room":"{room}","message":"{tag}|{t:.6f}|{pad}"}}',
    "ceiling": '{{"room":"{room}","text":"{tag}|{t:.6f}|{pad}"}}',
}


class HandshakeFailed(Exception):
    pass


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


@dataclass
class TagStats:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]


class Client(asyncio.Protocol):
    __slots__ = (
        "accept",
        "buf",
        "closed",
        "fragments",
        "gen",
        "open",
        "ready",
        "request",
        "transport",
    )

    def __init__(self, gen: LoadGenerator, request: bytes, accept: bytes) -> None:
        self.gen = gen
        self.request = request
        self.accept = accept
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.closed = False
        self.fragments: list[bytes] | None = None
        self.ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.open
        self.open = False
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(
                ConnectionError(f"closed during the handshake: {exc or 'EOF'}")
            )
        elif was_open:
            self.gen.on_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.open:
            if self.buf:
                self.buf += data
            else:
                self.buf = bytearray(data)
            self._frames(now)
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._fail_handshake("response head too long")
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"HTTP {status[1] if len(status) > 1 else '?'}")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != self.accept:
            self._fail_handshake("bad Sec-WebSocket-Accept")
            return
        self.open = True
        self.ready.set_result(now)
        if self.buf:
            self._frames(now)

    def _fail_handshake(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(HandshakeFailed(reason))
        if self.transport is not None:
            self.transport.abort()

    def _frames(self, now: float) -> None:
        buf = self.buf
        n = len(buf)
        pos = 0
        gen = self.gen
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # servers must not mask; tolerate it anyway
                head += 4
            end = pos + head + length
            if end > n:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[pos + head : end])
            if b1 & 0x80:
                payload = apply_mask(payload, bytes(buf[end - length - 4 : end - length]))
            pos = end
            if opcode == 1 or opcode == 2:
                if b0 & 0x80:
                    gen.on_message(payload, now)
                else:
                    self.fragments = [payload]
            elif opcode == 0:
                if self.fragments is not None:
                    self.fragments.append(payload)
                    if b0 & 0x80:
                        gen.on_message(b"".join(self.fragments), now)
                        self.fragments = None
            elif opcode == 9:  # ping
                self.write(_frame(0xA, payload))
            elif opcode == 8:  # close: echo it; the server closes the TCP connection
                gen.server_closes[int.from_bytes(payload[:2], "big") if payload else 1005] += 1
                self.write(_frame(0x8, payload[:2]))
                self.open = False
        del buf[:pos]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str) -> bool:
        if not self.open:
            return False
        self.write(_frame(0x1, text.encode()))
        return True

    def close(self) -> None:
        if self.open:
            self.open = False
            self.write(_frame(0x8, (1000).to_bytes(2, "big")))
        elif self.transport is not None and not self.closed:
            self.transport.abort()


class LoadGenerator:
    """One load-generator process: its clients, its counters, its command loop."""

    def __init__(self, commands: Connection, index: int) -> None:
        self.commands = commands
        self.index = index
        self.clients: dict[int, Client] = {}
        self.stats: dict[bytes, TagStats] = {}
        self.other_frames = 0
        self.lost: collections.Counter[str] = collections.Counter()
        self.server_closes: collections.Counter[int] = collections.Counter()

    # -- callbacks from clients ------------------------------------------------------------------

    def on_message(self, payload: bytes, now: float) -> None:
        i = payload.find(TEXT_MARK)
        if i < 0:
            self.other_frames += 1
            return
        i += len(TEXT_MARK)
        j = payload.find(b"|", i)
        k = payload.find(b"|", j + 1)
        if j < 0 or k < 0:
            self.other_frames += 1
            return
        tag = payload[i:j]
        stats = self.stats.get(tag)
        if stats is None:
            stats = self.stats[tag] = TagStats(first=now)
        stats.count += 1
        stats.last = now
        stats.latencies.append(now - float(payload[j + 1 : k]))

    def on_lost(self, client: Client, exc: Exception | None) -> None:
        self.lost[type(exc).__name__ if exc else "closed by server"] += 1

    # -- commands --------------------------------------------------------------------------------

    async def connect(
        self,
        host: str,
        port: int,
        items: Sequence[tuple[int, str]],
        concurrency: int,
        deadline: float,
        timeout: float,
    ) -> dict[str, Any]:
        """Open one client per (id, request target), ``concurrency`` handshakes at a time,
        until ``deadline`` (time.time()) passes: connects not started by then are not made."""
        loop = asyncio.get_running_loop()
        times = array("d")
        errors: collections.Counter[str] = collections.Counter()
        pending = iter(items)
        started = time.time()
        not_started = 0

        async def one(item: int, path: str) -> None:
            key = base64.b64encode(os.urandom(16))
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\nUser-Agent: wschat-bench-loadgen\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            client: Client | None = None
            try:
                _, client = await asyncio.wait_for(
                    loop.create_connection(lambda: Client(self, request, accept), host, port),
                    timeout,
                )
                await asyncio.wait_for(
                    client.ready, max(0.01, timeout - (time.perf_counter() - t0))
                )
            except TimeoutError:
                errors["handshake timed out"] += 1
                if client is not None and client.transport is not None:
                    client.transport.abort()
                return
            except HandshakeFailed as exc:
                errors[str(exc)] += 1
                return
            except OSError as exc:
                errors[f"{type(exc).__name__}: {exc.strerror or exc}"] += 1
                return
            times.append(time.perf_counter() - t0)
            self.clients[item] = client

        async def worker() -> None:
            nonlocal not_started
            for item, path in pending:
                if time.time() >= deadline:
                    not_started += 1
                    continue
                await one(item, path)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return {
            "ok": len(times),
            "ids": [item for item, _ in items if item in self.clients],
            "errors": dict(errors),
            "not_started": not_started,
            "handshake_s": times.tobytes(),
            "start": started,
            "end": time.time(),
        }

    async def send(
        self,
        senders: Sequence[int],
        rooms: Sequence[str],
        rate: float,
        duration: float,
        tag: str,
        fmt: str,
        pad: str = "x",
    ) -> dict[str, Any]:
        """Send ``rate`` messages per second in all, for ``duration`` seconds, from the clients
        ``senders`` (ids, round robin), each to its room in ``rooms``. Returns how many were
        sent to each room and how many could not be (client not open)."""
        template = FORMATS[fmt]
        total = max(1, round(duration * rate))
        sent: collections.Counter[str] = collections.Counter()
        skipped = 0
        start = time.time()
        k = 0
        while k < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            while k < due:
                slot = k % len(senders)
                client = self.clients.get(senders[slot])
                room = rooms[slot]
                text = template.format(room=room, tag=tag, t=time.time(), pad=pad)
                if client is not None and client.send_text(text):
                    sent[room] += 1
                else:
                    skipped += 1
                k += 1
            if k < total:
                await asyncio.sleep(max(0.0, start + k / rate - time.time()))
        return {"sent": dict(sent), "skipped": skipped, "start": start, "end": time.time()}

    def snapshot(self, tags: Sequence[str] | None, latencies: bool) -> dict[str, Any]:
        wanted = None if tags is None else {t.encode() for t in tags}
        out: dict[str, Any] = {}
        for tag, st in self.stats.items():
            if wanted is not None and tag not in wanted:
                continue
            out[tag.decode()] = {
                "count": st.count,
                "first": st.first,
                "last": st.last,
                "latencies": st.latencies.tobytes() if latencies else b"",
            }
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "tags": out,
            "open": sum(1 for c in self.clients.values() if c.open),
            "clients": len(self.clients),
            "lost": dict(self.lost),
            "server_closes": dict(self.server_closes),
            "other_frames": self.other_frames,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_kib": usage.ru_maxrss,
        }

    async def close(self, timeout: float, abort: bool = False) -> dict[str, Any]:
        """Close every client (a close frame, or a reset with ``abort``) and forget them."""
        clients = list(self.clients.values())
        for client in clients:
            if abort:
                if client.transport is not None and not client.closed:
                    client.transport.abort()
            else:
                client.close()
        deadline = time.time() + timeout
        while time.time() < deadline and any(not c.closed for c in clients):
            await asyncio.sleep(0.05)
        aborted = 0
        for client in clients:
            if not client.closed and client.transport is not None:
                client.transport.abort()
                aborted += 1
        await asyncio.sleep(0)
        self.clients.clear()
        self.stats.clear()
        self.other_frames = 0
        self.lost.clear()
        self.server_closes.clear()
        return {"aborted": aborted}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        def read() -> None:
            while True:
                try:
                    message = self.commands.recv()
                except (EOFError, OSError):
                    message = ("exit", {})
                loop.call_soon_threadsafe(inbox.put_nowait, message)
                if message[0] == "exit":
                    return

        threading.Thread(target=read, daemon=True).start()
        while True:
            command, args = await inbox.get()
            try:
                if command == "connect":
                    reply: Any = await self.connect(**args)
                elif command == "send":
                    reply = await self.send(**args)
                elif command == "stats":
                    reply = self.snapshot(**args)
                elif command == "close":
                    reply = await self.close(**args)
                elif command == "exit":
                    await self.close(timeout=0.0, abort=True)
                    return
                else:
                    raise ValueError(f"unknown command {command!r}")
                self.commands.send(("ok", reply))
            except Exception as exc:
                self.commands.send(("error", f"{type(exc).__name__}: {exc}"))


def _child_main(commands: Connection, index: int, cpus: set[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    raise_nofile_limit()
    asyncio.run(LoadGenerator(commands, index).run())


class LoadGenError(RuntimeError):
    pass


class Fleet:
    """The parent's handle on ``processes`` load-generator processes."""

    def __init__(self, processes: int, cpus: set[int] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for index in range(processes):
            parent_end, child_end = context.Pipe()
            proc = context.Process(
                target=_child_main,
                args=(child_end, index, cpus),
                name=f"loadgen-{index}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.procs)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def request(self, index: int, command: str, args: dict[str, Any]) -> None:
        self.pipes[index].send((command, args))

    def reply(self, index: int, timeout: float) -> Any:
        pipe = self.pipes[index]
        if not pipe.poll(timeout):
            raise LoadGenError(
                f"load generator {index} did not answer within {timeout:.0f} s "
                f"(alive: {self.procs[index].is_alive()})"
            )
        try:
            status, value = pipe.recv()
        except (EOFError, OSError) as exc:
            raise LoadGenError(
                f"load generator {index} died (exit code {self.procs[index].exitcode})"
            ) from exc
        if status != "ok":
            raise LoadGenError(f"load generator {index}: {value}")
        return value

    def all(
        self,
        command: str,
        args: dict[str, Any] | Sequence[dict[str, Any] | None],
        timeout: float,
        check: Callable[[], None] | None = None,
    ) -> list[Any]:
        """Send one command to every process (the same args, or one dict each; None: that
        process sits this one out) and gather the replies (None for those that sat out).

        ``check`` runs every 0.2 s while waiting; if it raises, the replies are still
        collected (a pipe's next reply must belong to its next command) and then it re-raises.
        """
        per = [args] * len(self) if isinstance(args, dict) else list(args)
        waiting = {}
        for index, a in enumerate(per):
            if a is not None:
                self.request(index, command, a)
                waiting[self.pipes[index]] = index
        replies: list[Any] = [None] * len(self)
        deadline = time.monotonic() + timeout
        failure: BaseException | None = None
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                names = sorted(waiting.values())
                raise LoadGenError(
                    f"load generators {names} did not answer {command!r} within {timeout:.0f} s"
                )
            for pipe in wait(list(waiting), timeout=min(0.2, left)):
                index = waiting.pop(pipe)  # type: ignore[call-overload]
                replies[index] = self.reply(index, 1.0)
            if check is not None and failure is None:
                try:
                    check()
                except Exception as exc:
                    failure = exc
        if failure is not None:
            raise failure
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("exit", {}))
        deadline = time.monotonic() + 3
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        for pipe in self.pipes:
            pipe.close()

"""The gateway under fuzzing over real sockets, while two people chat through it.

Raw bytes go to a TCP socket on the chat gateway: frames after a valid handshake (bad opcodes,
reserved bits, unmasked client frames, lengths that lie, 1 MB frames, continuations without a
start, control frames that are fragmented, too long or interleaved, bad close frames, invalid
UTF-8, random headers and payloads), handshakes that are garbage (random bytes, HTTP/0.9, no
Sec-WebSocket-Key, huge heads, slowloris heads closed early or left hanging) and well-framed
messages the protocol refuses. Each bad peer gets what API Gateway's rules give it (a close code,
an HTTP error, exactly one ``error`` event) and nothing else happens: alice and bob, connected
the whole time, exchange messages before, during and after, and receive nothing but each other's
messages and the fuzzers' coming and going in ``lobby``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.integration.conftest import TIMEOUT, raw_upgrade, wait_for
from tests.support.chat_client import ChatClient
from tests.support.fuzz import has_lone_surrogate, json_values, odd_text, valid_frames

from wschat import local, protocol
from wschat.chat import registry

if TYPE_CHECKING:
    from tests.integration.chat_fixtures import ChatGateway

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.chat_fixtures",)

FUZZER = "fuzzer"  # the name every fuzzing connection that gets in has
SOCKET_FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# A witness exchange happens every this many fuzz cases, with the case's socket still open.
EXCHANGE_EVERY = 10

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


# --- alice and bob -----------------------------------------------------------------------------


ROOM = "witnesses"  # where alice and bob talk: the fuzzers, in lobby only, hear none of it


@dataclass
class Witnesses:
    """Two people chatting while the gateway is fuzzed."""

    alice: ChatClient
    bob: ChatClient
    exchanges: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def exchange(self, tag: str) -> None:
        """alice and bob each say something; both see both messages, in the room's order."""
        with self.lock:
            self.exchanges += 1
            for speaker, listener in ((self.alice, self.bob), (self.bob, self.alice)):
                text = f"{tag} #{self.exchanges} from {speaker.label}"
                ack = speaker.say(text, room=ROOM)
                for client in (listener, speaker):
                    message = client.next("message", id=ack["id"])
                    assert (message["from"], message["text"]) == (speaker.label, text)

    def assert_nothing_unexpected(self) -> None:
        """Whatever else they received is a fuzzer joining or leaving lobby."""
        for client in (self.alice, self.bob):
            for event in client.sync():
                assert event["type"] in ("joined", "left"), event
                assert (event["room"], event["name"]) == ("lobby", FUZZER), event


@pytest.fixture
def witnesses(chat: ChatGateway) -> Iterator[Witnesses]:
    """alice and bob, who exchange messages before the test; after it, once more, and then
    nothing else may have reached them."""
    alice = chat.client("alice", rooms=[ROOM])
    bob = chat.client("bob", rooms=[ROOM])
    alice.collect("joined", 2, name="bob")  # in lobby and in their room
    people = Witnesses(alice, bob)
    people.exchange("before")
    yield people
    people.exchange("after")
    people.assert_nothing_unexpected()


# --- raw WebSocket frames ----------------------------------------------------------------------


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client-to-server frame (RFC 6455 5.2); ``length`` may lie about the payload."""
    length = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return client_frame(CLOSE, struct.pack("!H", code) + reason)


def parse_server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete frames at the start of what the server sent, and the rest; fails on any
    frame that is not a well-formed, unmasked, final server frame."""
    frames = []
    at = 0
    while len(data) - at >= 2:
        first, second = data[at], data[at + 1]
        assert first & 0x70 == 0 and first & 0x80, f"server frame with RSV bits or no FIN: {first}"
        assert not second & 0x80, "the server masked a frame"
        opcode, length, start = first & 0xF, second & 0x7F, at + 2
        if length == 126:
            (length,) = struct.unpack("!H", data[start : start + 2])
            start += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[start : start + 8])
            start += 8
        assert opcode in (TEXT, BINARY, CLOSE, PING, PONG), f"server sent opcode {opcode}"
        if len(data) < start + length:
            break
        frames.append((opcode, data[start : start + length]))
        at = start + length
    return frames, data[at:]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Every frame in all the server sent, which must end on a frame boundary."""
    frames, rest = parse_server_frames(data)
    assert rest == b"", f"a truncated frame at the end: {rest[:100]!r}"
    return frames


def read_frames_until(
    sock: socket.socket, done: Callable[[list[tuple[int, bytes]]], bool]
) -> tuple[list[tuple[int, bytes]], bytes]:
    """Read until the frames received so far satisfy ``done`` (fails after TIMEOUT)."""
    sock.settimeout(TIMEOUT)
    data = b""
    while True:
        frames, _ = parse_server_frames(data)
        if done(frames):
            return frames, data
        chunk = sock.recv(65536)
        assert chunk, f"closed before the expected frames arrived: {frames}"
        data += chunk


def read_until_closed(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"the gateway left the connection open after {timeout}s")
        if not chunk:
            break
        chunks.append(chunk)
        assert time.monotonic() < deadline, "the gateway kept sending"
    return b"".join(chunks)


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    closes = [payload for opcode, payload in frames if opcode == CLOSE]
    if not closes:
        return None
    assert len(closes) == 1, f"more than one close frame: {closes}"
    return int(struct.unpack("!H", closes[0][:2])[0]) if closes[0] else 1005


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send, ignoring a connection the gateway already closed (it may fail a frame early)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@contextlib.contextmanager
def fuzz_connection(chat: ChatGateway) -> Iterator[socket.socket]:
    """A raw TCP socket that completed the WebSocket handshake as ``fuzzer``."""
    sock = raw_upgrade(chat.url + f"?name={FUZZER}")
    try:
        yield sock
    finally:
        sock.close()


@dataclass(frozen=True)
class FrameCase:
    """Bytes for a fresh connection; the close codes allowed (1006: the socket just ended);
    with ``answered``, a check of the frames that must come before the client closes (1000)."""

    name: str
    sends: list[bytes]
    closes_with: set[int]
    answered: Callable[[list[tuple[int, bytes]]], bool] | None = None
    then: Callable[[list[tuple[int, bytes]]], object] | None = None  # checks all it received


def _events(frames: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(payload) for opcode, payload in frames if opcode == TEXT]


def _pong_and_hello(frames: list[tuple[int, bytes]]) -> bool:
    events = _events(frames)
    if not events:
        return False
    assert [event["type"] for event in events] == ["hello"], events
    assert (PONG, b"are you there") in frames, frames
    return True


def _one_error(code: str) -> Callable[[list[tuple[int, bytes]]], bool]:
    def answered(frames: list[tuple[int, bytes]]) -> bool:
        events = _events(frames)
        if not events:
            return False
        assert [(event["type"], event["code"]) for event in events] == [("error", code)], events
        return True

    return answered


def _only_the_close_echo(frames: list[tuple[int, bytes]]) -> bool:
    assert [opcode for opcode, _ in frames] == [CLOSE], frames
    return True


HELLO = json.dumps({"action": "hello"}).encode()
FRAME_CASES = [
    FrameCase("opcode 3 (reserved data)", [client_frame(0x3, b"x")], {1002}),
    FrameCase("opcode 0xB (reserved control)", [client_frame(0xB, b"x")], {1002}),
    FrameCase("RSV1 without an extension", [client_frame(TEXT, HELLO, rsv=4)], {1002}),
    FrameCase("RSV3 on a ping", [client_frame(PING, b"x", rsv=1)], {1002}),
    FrameCase("unmasked client frame", [client_frame(TEXT, HELLO, masked=False)], {1002}),
    FrameCase("1 MB frame", [client_frame(BINARY, length=1 << 20)], {1009}),
    FrameCase("length of 2^63 - 1", [client_frame(BINARY, length=(1 << 63) - 1)], {1002, 1009}),
    FrameCase("continuation without a start", [client_frame(CONT, b"lo")], {1002}),
    FrameCase(
        "a new text frame inside a fragmented message",
        [client_frame(TEXT, b'{"action"', fin=False), client_frame(TEXT, b"x")],
        {1002},
    ),
    FrameCase("ping of 126 bytes", [client_frame(PING, b"p" * 126)], {1002}),
    FrameCase("fragmented ping", [client_frame(PING, b"p", fin=False)], {1002}),
    FrameCase("close code 999", [close_frame(999)], {1002}),
    FrameCase("close code 1005 on the wire", [close_frame(1005)], {1002}),
    FrameCase("close frame of one byte", [client_frame(CLOSE, b"\x03")], {1002}),
    FrameCase("close reason not UTF-8", [close_frame(1000, b"\xff\xfe")], {1007}),
    FrameCase("text frame not UTF-8", [client_frame(TEXT, b'{"action": "\xc3\x28"}')], {1007}),
    FrameCase(
        "135 KB message in 27 KB fragments",
        [client_frame(TEXT if i == 0 else CONT, b"x" * 27_000, fin=i == 4) for i in range(5)],
        {1009},
    ),
    FrameCase(
        "ping between the fragments of a message",
        [
            client_frame(TEXT, HELLO[:6], fin=False),
            client_frame(PING, b"are you there"),
            client_frame(CONT, HELLO[6:]),
        ],
        {1000},
        _pong_and_hello,
    ),
    FrameCase(
        "binary frame of random bytes",
        [client_frame(BINARY, b"\x00\xff\x13\x37" * 8)],
        {1000},
        _one_error(protocol.INVALID_JSON),
    ),
    FrameCase(
        "frames after the close frame",
        [close_frame(1000), client_frame(TEXT, HELLO), client_frame(0x3, b"x")],
        {1000},
        then=_only_the_close_echo,
    ),
    FrameCase("frame header cut short, then EOF", [b"\x81"], {1006}),
    FrameCase(
        "length says 100, 10 bytes come, then EOF",
        [client_frame(TEXT, b"x" * 10, length=100)],
        {1006},
    ),
]


def run_frame_case(chat: ChatGateway, case: FrameCase) -> None:
    with fuzz_connection(chat) as sock:
        for data in case.sends:
            send_quietly(sock, data)
        received = b""
        if case.answered is not None:
            _, received = read_frames_until(sock, case.answered)
            send_quietly(sock, close_frame(1000))
        if 1006 in case.closes_with:
            sock.shutdown(socket.SHUT_WR)  # the client goes away mid-frame
        frames = server_frames(received + read_until_closed(sock))
    code = close_code(frames) or 1006
    assert code in case.closes_with, f"{case.name}: closed with {code}, frames {frames}"
    if case.then is not None:
        case.then(frames)


def test_malformed_frames_close_only_their_own_connection_while_others_chat(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    failures: list[str] = []
    done = threading.Event()

    def fuzz() -> None:
        try:
            for case in FRAME_CASES * 2:
                try:
                    run_frame_case(chat, case)
                except BaseException as exc:  # collected, reported by the main thread
                    failures.append(f"{case.name}: {exc!r}")
        finally:
            done.set()

    fuzzer = threading.Thread(target=fuzz, name="frame-fuzzer", daemon=True)
    fuzzer.start()
    during = 0
    while not done.is_set():
        witnesses.exchange("during")
        during += 1
    fuzzer.join(TIMEOUT)
    assert not failures, "\n".join(failures)
    assert during >= 1


@pytest.mark.parametrize("case", FRAME_CASES, ids=[case.name for case in FRAME_CASES])
def test_each_malformed_frame_gets_api_gateways_close_code(
    chat: ChatGateway, case: FrameCase
) -> None:
    run_frame_case(chat, case)
    wait_for(lambda: not chat.open_connection_ids(), what="the fuzzing connection to be gone")


@st.composite
def random_frames(draw: st.DrawFn) -> bytes:
    """One to three frames with any header bits, masked or not, lengths true or lying."""
    data = b""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        payload = draw(st.binary(max_size=200) | st.just(HELLO))
        lie = draw(st.none() | st.integers(min_value=0, max_value=70_000))
        data += client_frame(
            draw(st.integers(min_value=0, max_value=15)),
            payload,
            fin=draw(st.booleans()),
            rsv=draw(st.integers(min_value=0, max_value=7) | st.just(0)),
            masked=draw(st.booleans() | st.just(True)),
            length=lie,
        )
    return data + draw(st.binary(max_size=20))


def test_random_frames_get_well_formed_answers_while_others_chat(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    cases = 0

    @settings(SOCKET_FUZZ, max_examples=150)
    @given(data=random_frames())
    def one_case(data: bytes) -> None:
        nonlocal cases
        cases += 1
        with fuzz_connection(chat) as sock:
            send_quietly(sock, data)
            if cases % EXCHANGE_EVERY == 0:
                witnesses.exchange(f"during case {cases}")  # this socket still open
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            frames = server_frames(read_until_closed(sock))
        # 1005: the echo of an empty close frame (RFC 6455 7.4.1: no status code present);
        # 3000-4999: the echo of a client's close frame with an application code (7.4.2),
        # e.g. 3072 from b"\x88\x82...", a close frame carrying 0x0c00.
        code = close_code(frames)
        assert code in (None, 1000, 1002, 1005, 1007, 1009) or 3000 <= code <= 4999, code
        for opcode, payload in frames:
            if opcode == TEXT:
                event = json.loads(payload)
                # An answer to what it sent, or another fuzzer (its last case) leaving lobby.
                assert event["type"] in ("hello", "error") or (
                    event["type"] in ("joined", "left") and event["name"] == FUZZER
                ), event

    one_case()
    assert cases >= 150


# --- well-framed messages the protocol refuses --------------------------------------------------


def expected_error(payload: str | bytes) -> str | None:
    """The error code wschat's parser gives a frame (a binary one decoded as the handlers
    decode it); None when it parses."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        protocol.parse_command(text)
    except protocol.ProtocolError as error:
        return error.code
    return None


refused_payloads = (
    st.builds(
        lambda fields, action: json.dumps({**fields, "action": action}),
        st.dictionaries(st.sampled_from(["message", "room", "name", "to", "limit"]), json_values),
        st.sampled_from(registry.NAMES) | odd_text,
    )
    | odd_text.filter(lambda text: not has_lone_surrogate(text))
    | st.binary(max_size=300)
    | st.builds(lambda frame: json.dumps(frame[0]).encode("utf-16"), valid_frames())
)


def test_frames_the_protocol_refuses_get_exactly_one_error_while_others_chat(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    fuzzer = chat.client(FUZZER)
    cases = 0

    @settings(SOCKET_FUZZ, max_examples=250)
    @given(payload=refused_payloads)
    def one_case(payload: str | bytes) -> None:
        nonlocal cases
        code = expected_error(payload)
        assume(code is not None)
        cases += 1
        fuzzer.send_raw(payload)
        if cases % EXCHANGE_EVERY == 0:
            witnesses.exchange(f"during case {cases}")
        answers = fuzzer.sync()
        assert [(e["type"], e.get("code")) for e in answers] == [("error", code)], payload

    one_case()
    assert fuzzer.hello()["name"] == FUZZER  # still connected, still itself
    assert cases >= 150


# --- garbage handshakes ------------------------------------------------------------------------


def http_exchange(chat: ChatGateway, data: bytes, *, close_early: bool = False) -> bytes:
    """Send ``data`` on a fresh TCP connection; the response head the gateway answers with
    (b"" if it closed without one), or nothing when the client gives up first."""
    host, port = chat.url.removeprefix("ws://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        send_quietly(sock, data)
        if close_early:
            return b""
        response = b""
        while b"\r\n\r\n" not in response:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            except TimeoutError:
                return b""  # a head that asks for a body: the gateway waits for it
            if not chunk:
                break
            response += chunk
        return response


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


UPGRADE = b"GET /local HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
VERSION = b"Sec-WebSocket-Version: 13\r\n"
HANDSHAKE_CASES = {
    "HTTP/0.9 request line": (b"GET /\r\n\r\n", 400),
    "HTTP/0.9 version": (b"GET /local HTTP/0.9\r\n\r\n", 400),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "empty request line": (b"\r\n\r\n", 400),
    "NUL in the request line": (b"GET /lo\x00cal HTTP/1.1\r\n\r\n", 400),
    "no Sec-WebSocket-Key": (UPGRADE + VERSION + b"\r\n", 400),
    "Sec-WebSocket-Key not 16 bytes": (
        UPGRADE + b"Sec-WebSocket-Key: c2hvcnQ=\r\n" + VERSION + b"\r\n",
        400,
    ),
    "Sec-WebSocket-Version 8": (UPGRADE + KEY + b"Sec-WebSocket-Version: 8\r\n\r\n", 400),
    "header line without a colon": (UPGRADE + b"garbage\r\n" + KEY + VERSION + b"\r\n", 400),
    "header name with a space before the colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "a 20 KB header": (UPGRADE + b"X-Big: " + b"a" * 20_000 + b"\r\n" + KEY + VERSION, 431),
    "3,000 headers": (UPGRADE + b"X-H: v\r\n" * 3000 + KEY + VERSION + b"\r\n", 431),
    "negative Content-Length": (b"POST /local HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    "Content-Length of 9.9 GB": (
        b"POST /local/@connections/x HTTP/1.1\r\nContent-Length: 9999999999\r\n\r\n",
        413,
    ),
    "chunked body": (b"POST /local HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    "upgrade by POST": (
        b"POST /local HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + KEY + b"\r\n",
        404,
    ),
}


def test_garbage_handshakes_get_http_errors_while_others_chat(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    witnesses_only = chat.open_connection_ids()
    for name, (data, status) in HANDSHAKE_CASES.items():
        assert status_of(http_exchange(chat, data)) == status, name
    witnesses.exchange("between fixed handshakes")
    cases = 0

    @settings(SOCKET_FUZZ, max_examples=200)
    @given(
        data=st.binary(max_size=2000)
        | st.builds(
            lambda head, junk: head + junk,
            st.sampled_from([UPGRADE, UPGRADE + KEY]),
            st.binary(max_size=200),
        ),
        ending=st.sampled_from([b"\r\n\r\n", b"", b"\r\n"]),
        close_early=st.booleans(),
    )
    def one_case(data: bytes, ending: bytes, close_early: bool) -> None:
        nonlocal cases
        cases += 1
        complete = (data + ending).find(b"\r\n\r\n") >= 0
        response = http_exchange(chat, data + ending, close_early=close_early or not complete)
        if response:
            assert 400 <= status_of(response) < 500 or status_of(response) == 101
        if cases % EXCHANGE_EVERY == 0:
            witnesses.exchange(f"during case {cases}")

    one_case()
    assert cases >= 200
    # Handshakes that got in were hung up on; none is left open.
    wait_for(
        lambda: chat.open_connection_ids() == witnesses_only, what="no fuzzing connection left"
    )


@pytest.mark.parametrize(
    "path",
    [
        b"/%00",
        b"/index.html%00.js",
        b"/" + b"a" * 5000,
        b"/" + b"a/" * 3000,
        b"/%2e%2e/%2e%2e/etc/passwd",
    ],
    ids=["nul", "nul-in-a-name", "name-too-long", "path-too-long", "dot-dot"],
)
def test_static_paths_that_name_no_file_are_404_not_a_server_error(
    chat: ChatGateway, path: bytes
) -> None:
    gateway = chat.running.gateway
    chat.running.call(lambda: local.mount_page(gateway, None))  # as wschat serve has it
    response = http_exchange(chat, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 404
    page = http_exchange(chat, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(page) == 200  # the page itself is served


def _client_count(chat: ChatGateway) -> int:
    gateway = chat.running.gateway
    return chat.running.call(lambda: len(gateway.clients))


def test_slowloris_heads_closed_early_leave_nothing_behind_while_others_chat(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    baseline = _client_count(chat)
    partial_heads = [UPGRADE[: 10 + i] for i in range(0, len(UPGRADE) - 10, 3)]
    host, port = chat.url.removeprefix("ws://").split("/")[0].split(":")
    sockets = []
    try:
        for head in partial_heads * 3:
            sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
            sockets.append(sock)
            sock.sendall(head)
        wait_for(
            lambda: _client_count(chat) >= baseline + len(sockets),
            what="the gateway to hold every slow connection",
        )
        witnesses.exchange("with slow heads hanging")
        for sock in sockets[::2]:
            sock.sendall(b"X-Slow: 1\r\n")  # a little more, still no end of head
        witnesses.exchange("with slow heads dripping")
    finally:
        for sock in sockets:
            sock.close()
    wait_for(lambda: _client_count(chat) == baseline, what="every slow connection let go")


def test_a_head_left_hanging_is_closed_after_the_request_timeout(
    chat: ChatGateway, witnesses: Witnesses
) -> None:
    config = chat.running.gateway.config
    previous = config.http_request_timeout
    config.http_request_timeout = 0.5
    host, port = chat.url.removeprefix("ws://").split("/")[0].split(":")
    try:
        hanging = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        silent = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        with hanging, silent:
            hanging.sendall(UPGRADE)  # never finished
            started = time.monotonic()
            witnesses.exchange("while a head hangs")
            assert read_until_closed(hanging) == b""
            assert read_until_closed(silent) == b""  # a connection that never said anything
            assert 0.4 < time.monotonic() - started < 3
    finally:
        config.http_request_timeout = previous

"""``wschat client`` in a real terminal (pexpect's pseudo-terminal) against ``wschat serve``
running as a process, with a plain WebSocket client for the person at the other end."""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from tests.browser.conftest import ChatServer, say
from tests.integration.conftest import TIMEOUT, recv_until, wschat_command

from wschat.client import TerminalChat

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path_factory.mktemp("terminal")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(module_server: ChatServer) -> Iterator[ChatServer]:
    """The module's gateway, emptied after each test."""
    yield module_server
    module_server.forget_everything()


class Terminal:
    """``wschat client`` in a pseudo-terminal; ``output`` is everything it printed so far."""

    def __init__(self, url: str, name: str, room: str) -> None:
        self._log = io.StringIO()
        command, *args = wschat_command()
        self.child = pexpect.spawn(
            command,
            [*args, "client", url, "--name", name, "--room", room],
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 200),
            env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"},
        )
        self.child.logfile_read = self._log

    @property
    def output(self) -> str:
        return self._log.getvalue().replace("\r\n", "\n")

    def expect(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait for ``text`` (literally) to be printed; fail showing what was."""
        try:
            self.child.expect_exact(text, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF):
            pytest.fail(f"the terminal never showed {text!r}; it shows:\n{self.output}")

    def type(self, line: str) -> None:
        self.child.sendline(line)

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.output.splitlines() if re.search(pattern, line)]

    def close(self) -> None:
        """/quit, as a person leaves; killed if that does not end it."""
        if self.child.isalive():
            self.child.sendline("/quit")
            with contextlib.suppress(pexpect.TIMEOUT):
                self.child.expect(pexpect.EOF, timeout=TIMEOUT)
        self.child.close(force=True)


@contextlib.contextmanager
def terminal(url: str, name: str, room: str) -> Iterator[Terminal]:
    term = Terminal(url, name, room)
    try:
        yield term
    finally:
        term.close()


def test_history_on_start_then_live_messages_both_ways(server: ChatServer) -> None:
    with server.person("alice", "general") as alice:
        say(alice, "said before dave came", "general")
        say(alice, "also before", "general")
        with terminal(server.websocket_url, "dave", "general") as dave:
            dave.expect("* connected as dave; rooms: general, lobby")
            dave.expect("[general] alice: said before dave came")
            dave.expect("[general] alice: also before")
            recv_until(alice, lambda e: e.get("type") == "joined" and e.get("name") == "dave")

            say(alice, "live from alice", "general")
            dave.expect("[general] alice: live from alice")
            dave.type("hello from the terminal")
            received = recv_until(
                alice, lambda e: e.get("type") == "message" and e["from"] == "dave"
            )
            assert received["room"] == "general"
            assert received["text"] == "hello from the terminal"
            dave.expect("[general] dave: hello from the terminal")
            # History, live and own messages are each shown once.
            assert len(dave.lines(r"\[general\] alice: said before dave came")) == 1
            assert len(dave.lines(r"\[general\] dave: hello from the terminal")) == 1


def test_commands_who_dm_name_join_leave_and_quit(server: ChatServer) -> None:
    with (
        server.person("alice", "general") as alice,
        terminal(server.websocket_url, "dave", "general") as dave,
    ):
        dave.expect("* talking in [general]")
        dave.type("/who")
        dave.expect("* in [general]: alice, dave")

        dave.type("/dm alice psst, alice")
        dm = recv_until(alice, lambda e: e.get("type") == "direct")
        assert (dm["from"], dm["to"], dm["text"]) == ("dave", "alice", "psst, alice")
        dave.expect("[dm] dave -> alice: psst, alice")
        alice.send(json.dumps({"action": "direct", "to": "dave", "message": "hi dave"}))
        dave.expect("[dm] alice -> dave: hi dave")

        dave.type("/name davey")
        dave.expect("* dave is now davey in [general]")
        renamed = recv_until(alice, lambda e: e.get("type") == "renamed")
        assert (renamed["from"], renamed["to"]) == ("dave", "davey")

        dave.type("/join books")
        dave.expect("* davey joined [books]")
        dave.type("talking in books")  # the room joined is the one typed lines go to
        dave.expect("[books] davey: talking in books")
        dave.type("/leave")
        dave.expect("* davey left [books]")
        dave.type("back in the lobby")
        dave.expect("[lobby] davey: back in the lobby")
        lobby = recv_until(alice, lambda e: e.get("type") == "message" and e["room"] == "lobby")
        assert lobby["text"] == "back in the lobby"
        # Alice was never in books: nothing said there reached her.
        alice.send(json.dumps({"action": "hello"}))
        unseen = []
        recv_until(alice, lambda e: e.get("type") == "hello" or bool(unseen.append(e)))
        assert [e for e in unseen if e.get("room") == "books"] == []

        dave.type("/nonsense")
        dave.expect("! unknown command /nonsense")
        dave.type("/quit")
        try:
            dave.child.expect(pexpect.EOF, timeout=TIMEOUT)
        except pexpect.TIMEOUT:
            pytest.fail(f"/quit did not end the client within {TIMEOUT}s:\n{dave.output}")
        dave.child.close()
        assert dave.child.exitstatus == 0


def test_history_command_fetches_the_rooms_older_messages(server: ChatServer) -> None:
    # general: g01..g04, then a lobby message, then g05..g30; the client opens with the newest 20
    # of general (g11..g30) and lobby's one. /history must fetch g01..g10, not only what is older
    # than the lobby message.
    with server.person("alice", "general") as alice, server.person("bob", "general") as bob:
        for number in range(1, 31):
            if number == 5:
                say(bob, "lobby message")
            say(alice if number <= 15 else bob, f"g{number:02d}", "general")
        with terminal(server.websocket_url, "dave", "general") as dave:
            dave.expect("[general] bob: g30")
            assert not dave.lines(r"\] \w+: g10$")
            dave.type("/history")
            dave.expect("[general] alice: g10")
            shown = [line.rsplit(": ", 1)[1] for line in dave.lines(r"\[general\] \w+: g\d\d$")]
            assert sorted(shown) == [f"g{number:02d}" for number in range(1, 31)]


def test_someone_typing_shows_one_notice_not_a_line_per_event(server: ChatServer) -> None:
    with (
        server.person("alice", "general") as alice,
        terminal(server.websocket_url, "dave", "general") as dave,
    ):
        dave.expect("* talking in [general]")

        def typing(**where: str) -> None:
            alice.send(json.dumps({"action": "typing", **where}))

        for _ in range(3):  # a burst, as a page sends every 3 s while alice types
            typing(room="general")
        typing(room="lobby")  # not dave's current room: no news for him
        typing(to="dave")
        typing(to="dave")
        # One connection's frames run in order: her message comes after every typing event.
        say(alice, "done typing", "general")
        dave.expect("[general] alice: done typing")

        assert dave.lines(r"is typing") == ["* alice is typing…", "* alice is typing… [dm]"]


def test_the_typing_notice_repeats_only_after_ten_seconds() -> None:
    out = io.StringIO()
    chat = TerminalChat("ws://127.0.0.1:1/local", name="dave", room="general", out=out)
    now = [1000.0]
    chat.clock = lambda: now[0]
    for step in (0.0, 3.0, 3.0, 3.0, 3.0):  # alice's page: one every 3 s while she types
        now[0] += step
        chat.handle({"type": "typing", "room": "general", "from": "alice"})
    chat.handle({"type": "typing", "room": "general", "from": "bob"})
    chat.handle({"type": "typing", "room": "general", "from": "dave"})  # ourselves elsewhere

    assert out.getvalue().splitlines() == [
        "* alice is typing…",
        "* alice is typing…",  # 12 s after the first
        "* bob is typing…",
    ]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_after_a_gateway_restart_it_reconnects_and_shows_what_it_missed_once(
    tmp_path: Path, signum: int
) -> None:
    server = ChatServer(tmp_path / "serve").start()
    try:
        with terminal(server.websocket_url, "dave", "general") as dave:
            dave.expect("* talking in [general]")
            with server.person("alice", "general") as alice:
                say(alice, "before the restart", "general")
                dave.expect("[general] alice: before the restart")

            server.stop(signum)
            dave.expect("reconnecting…")
            # Dave's laptop sleeps: his client cannot come back before alice has talked.
            dave.child.kill(signal.SIGSTOP)
            server.start()
            with server.person("alice", "general") as alice:
                missed = ["while dave was away 1", "while dave was away 2"]
                for text in missed:
                    say(alice, text, "general")
                dave.child.kill(signal.SIGCONT)
                for text in missed:
                    dave.expect(f"[general] alice: {text}", timeout=15)
                recv_until(
                    alice, lambda e: e.get("type") == "joined" and e.get("name") == "dave", 15
                )
                say(alice, "after dave is back", "general")
                dave.expect("[general] alice: after dave is back")
                dave.type("dave is back")
                dave.expect("[general] dave: dave is back")

            for text in ["before the restart", *missed, "after dave is back"]:
                assert len(dave.lines(rf"\[general\] alice: {text}$")) == 1, dave.output
            assert len(dave.lines("reconnecting…")) == 1, dave.output
    finally:
        server.close()

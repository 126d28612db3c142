"""``wschat client`` in a real terminal (pexpect's pseudo-terminal) against ``wschat serve``
running as a process, with a plain WebSocket client for the person at the other end."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

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


def test_edit_delete_and_react_commands_and_the_lines_changes_print(server: ChatServer) -> None:
    with (
        server.person("alice", "general") as alice,
        terminal(server.websocket_url, "dave", "general") as dave,
    ):
        dave.expect("* talking in [general]")
        dave.type("/edit nothing to edit yet")
        dave.expect("! no message of yours in [general] to edit")
        dave.type("my first")
        dave.type("my second")
        dave.expect("[general] dave: my second")
        second = recv_until(
            alice, lambda e: e.get("type") == "message" and e["text"] == "my second"
        )

        # /edit: his last message here; everyone sees the new text.
        dave.type("/edit my second, edited")
        edited = recv_until(alice, lambda e: e.get("type") == "edited")
        assert (edited["id"], edited["text"], edited["room"]) == (
            second["id"],
            "my second, edited",
            "general",
        )
        dave.expect("* [general] dave edited: my second, edited")

        # Alice's reaction to it, then his /react on the last message here (hers).
        alice.send(
            json.dumps({"action": "react", "room": "general", "id": second["id"], "emoji": "👍"})
        )
        dave.expect('* [general] alice reacted 👍 (1) to "my second, edited"')
        hers = say(alice, "from alice", "general")
        dave.expect("[general] alice: from alice")
        dave.type("/react 🎉")
        reaction = recv_until(alice, lambda e: e.get("type") == "reaction" and e["user"] == "dave")
        assert (reaction["id"], reaction["emoji"], reaction["on"]) == (hers["id"], "🎉", True)
        dave.expect('* [general] dave reacted 🎉 (1) to "from alice"')
        dave.type("/react 🎉")  # again: nothing changes, and he is told so
        dave.expect("* [general] you already reacted 🎉 (1)")
        dave.type("/unreact 👀")
        dave.expect("! you have no 👀 on a message in [general]")
        dave.type("/unreact 🎉")
        dave.expect('* [general] dave took back 🎉 (0) on "from alice"')

        # /delete: his last message (not alice's, which is newer); alice deletes hers.
        dave.type("/delete")
        deleted = recv_until(alice, lambda e: e.get("type") == "deleted")
        assert (deleted["id"], deleted["by"]) == (second["id"], "dave")
        dave.expect('* [general] message deleted by dave ("my second, edited")')
        alice.send(json.dumps({"action": "delete", "room": "general", "id": hers["id"]}))
        dave.expect('* [general] message deleted by alice ("from alice")')
        dave.type("/edit again")  # now his last message is "my first"
        edited = recv_until(alice, lambda e: e.get("type") == "edited")
        assert edited["text"] == "again"
        dave.expect("* [general] dave edited: again")

        # An emoji is one word: the client says how to use the command, sends nothing.
        dave.type("/react nope nope")
        dave.expect("! usage: /react EMOJI")

        # A direct conversation: /dm NAME talks to NAME; the commands act there.
        dave.type("/dm alice")
        dave.expect("* talking to alice [dm]")
        dave.type("psst")
        dm = recv_until(alice, lambda e: e.get("type") == "direct")
        assert (dm["to"], dm["text"]) == ("alice", "psst")
        dave.expect("[dm] dave -> alice: psst")
        dave.type("/edit psst, edited")
        edited = recv_until(alice, lambda e: e.get("type") == "edited")
        assert (edited["id"], edited["from"], edited["to"]) == (dm["id"], "dave", "alice")
        dave.expect("* [dm] dave edited: psst, edited")
        alice.send(json.dumps({"action": "react", "with": "dave", "id": dm["id"], "emoji": "❤️"}))
        dave.expect('* [dm] alice reacted ❤️ (1) to "psst, edited"')
        dave.type("/help")
        dave.expect("/edit TEXT")


def test_history_shows_messages_as_they_are_now_and_a_catch_up_prints_what_changed() -> None:
    out = io.StringIO()
    chat = TerminalChat("ws://127.0.0.1:1/local", name="dave", room="general", out=out)
    chat.current = "general"
    page = [
        {
            "type": "message",
            "id": "01A",
            "room": "general",
            "from": "alice",
            "text": "plain",
            "ts": 0,
        },
        {
            "type": "message",
            "id": "01B",
            "room": "general",
            "from": "alice",
            "text": "changed",
            "ts": 0,
            "editedAt": 5,
            "reactions": {"👍": ["bob", "dave"], "🎉": ["bob"]},
        },
        {
            "type": "message",
            "id": "01C",
            "room": "general",
            "from": "bob",
            "text": "",
            "ts": 0,
            "deleted": True,
        },
    ]
    chat.handle({"type": "history", "room": "general", "messages": page})
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "[general] alice: plain",
        "[general] alice: changed (edited)  [👍 2, 🎉 1]",
        "[general] bob: (message deleted)",
    ]

    # A catch-up page after a reconnect: the same messages, changed meanwhile.
    out.truncate(0)
    out.seek(0)
    again = [
        {**page[0], "deleted": True, "text": ""},
        {**page[1], "text": "changed twice", "editedAt": 9, "reactions": {"👍": ["bob"]}},
        page[2],
    ]
    chat.handle({"type": "history", "room": "general", "after": "00", "messages": again})
    assert out.getvalue().splitlines() == [
        '* [general] alice\'s message deleted "plain"',
        "* [general] alice edited: changed twice",
        '* [general] reactions on "changed": 👍 1',
    ]

    # Commands find their message among those held: /react skips the tombstone, /edit and
    # /delete want one of dave's own.
    frames: list[dict[str, object]] = []

    async def send(frame: dict[str, object]) -> bool:
        frames.append(frame)
        return True

    chat.send = send  # type: ignore[method-assign]
    run_apart(chat.command("/react 👀"))
    run_apart(chat.command("/delete"))
    assert frames == [
        {"action": "react", "room": "general", "id": "01B", "emoji": "👀", "on": True}
    ]
    assert out.getvalue().splitlines()[-1] == "! no message of yours in [general] to delete"


def run_apart(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end on a thread of its own: in a session with the browser tests,
    Playwright's sync API keeps an event loop running on this one."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def test_unread_on_connect_and_the_room_talked_in_is_read_as_it_prints(
    server: ChatServer,
) -> None:
    with server.person("alice", "general") as alice:
        for text in ("one", "two", "three"):
            said = say(alice, text, "general")
        # Dave's other tab (a plain client): it hears the terminal's reads.
        with (
            server.person("dave", "general") as other_tab,
            terminal(server.websocket_url, "dave", "general") as dave,
        ):
            dave.expect("* 3 unread in [general]")
            dave.expect("[general] alice: three")
            read = recv_until(other_tab, lambda e: e.get("type") == "read")
            assert read == {"type": "read", "room": "general", "upTo": said["id"]}

            live = say(alice, "four", "general")
            dave.expect("[general] alice: four")
            read = recv_until(other_tab, lambda e: e.get("type") == "read")
            assert read["upTo"] == live["id"]
            # Nothing is read in a room not talked in: the lobby keeps its count.
            say(alice, "in the lobby")
            dave.expect("[lobby] alice: in the lobby")
            other_tab.send(json.dumps({"action": "hello"}))
            hello = recv_until(other_tab, lambda e: e.get("type") == "hello")
            assert hello["unread"] == {"general": 0, "lobby": 1}
            assert "unread" not in dave.output.split("[general] alice: one")[1]


def test_rooms_create_invite_and_moderation_commands(server: ChatServer) -> None:
    with (
        server.person("alice") as alice,
        server.person("mallory") as mallory,
        terminal(server.websocket_url, "dave", "lobby") as dave,
    ):
        dave.expect("* talking in [lobby]")
        dave.type("/rooms")
        dave.expect("* no public rooms")

        # A private room: created, and dave is in it and talking there.
        dave.type("/create-private den our den")
        dave.expect("* created [den] (private: /invite NAME lets people in): our den")
        dave.expect("* dave joined [den]")
        dave.type("hi den")
        dave.expect("[den] dave: hi den")
        # Not listed; a name taken is refused, and lines still go to den.
        dave.type("/rooms")
        dave.expect("* no public rooms")
        dave.type("/create den")
        dave.expect("(room_exists)")
        dave.type("/create lobby")
        dave.expect("(room_exists)")
        dave.expect("* talking in [den]")

        # Mallory is not invited: she cannot join.
        mallory.send(json.dumps({"action": "join", "room": "den"}))
        assert recv_until(mallory, lambda e: e.get("type") == "error")["code"] == "private_room"

        # /invite, and the invitee joins and reads the history.
        dave.type("/invite alice")
        dave.expect("* invited alice to [den]")
        invited = recv_until(alice, lambda e: e.get("type") == "invited")
        assert (invited["room"], invited["user"], invited["by"]) == ("den", "alice", "dave")
        alice.send(json.dumps({"action": "join", "room": "den"}))
        history = recv_until(alice, lambda e: e.get("type") == "history")
        assert [m["text"] for m in history["messages"]] == ["hi den"]
        dave.expect("* alice joined [den]")
        dave.type("/invite mallory")
        dave.expect("* invited mallory to [den]")
        mallory.send(json.dumps({"action": "join", "room": "den"}))
        dave.expect("* mallory joined [den]")

        # Roles and mutes, as lines in the room.
        dave.type("/mod alice")
        dave.expect("* [den] dave made alice a moderator")
        role = recv_until(alice, lambda e: e.get("type") == "roleChanged")
        assert (role["user"], role["role"], role["by"]) == ("alice", "moderator", "dave")
        dave.type("/mute mallory 5")
        dave.expect("* [den] dave muted mallory for 5 minutes")
        muted = recv_until(mallory, lambda e: e.get("type") == "muted")
        assert muted["user"] == "mallory" and isinstance(muted["until"], int)
        mallory.send(json.dumps({"action": "sendMessage", "room": "den", "message": "spam"}))
        assert recv_until(mallory, lambda e: e.get("type") == "error")["code"] == "muted"
        dave.type("/unmute mallory")
        dave.expect("* [den] dave unmuted mallory")
        dave.type("/unmod alice")
        dave.expect("* [den] dave removed alice as moderator")
        dave.type("/kick mallory")
        dave.expect("* [den] dave kicked mallory")
        kicked = recv_until(mallory, lambda e: e.get("type") == "kicked")
        assert (kicked["room"], kicked["user"], kicked["by"]) == ("den", "mallory", "dave")

        # What is wrong with a command is said, and nothing sent.
        dave.type("/mute")
        dave.expect("! usage: /mute NAME [MINUTES]")
        dave.type("/mute alice soon")
        dave.expect("! usage: /mute NAME [MINUTES] (MINUTES: a whole number 1-10080)")
        dave.type("/kick alice now")
        dave.expect("! usage: /kick NAME")
        dave.type("/dm alice")
        dave.type("/kick alice")
        dave.expect("! /kick acts in a room: /room ROOM first")
        dave.type("/room den")
        dave.expect("* talking in [den]")

        # Done to him, in alice's public room: invited, muted, kicked out.
        alice.send(json.dumps({"action": "createRoom", "room": "town", "topic": "all welcome"}))
        recv_until(alice, lambda e: e.get("type") == "roomCreated")
        dave.type("/rooms")
        dave.expect("*   [town] 1 member, owner alice: all welcome")
        alice.send(json.dumps({"action": "invite", "room": "town", "user": "dave"}))
        dave.expect("* alice invited you to [town]; /join town to go in")
        dave.type("/join town")
        dave.expect("* dave joined [town]")
        dave.type("/rooms")
        dave.expect("*   [town] 2 members, owner alice: all welcome (joined)")
        alice.send(json.dumps({"action": "mute", "room": "town", "user": "dave", "seconds": 600}))
        dave.expect("* [town] alice muted you for 10 minutes")
        dave.type("can I talk?")
        dave.expect("(muted)")
        alice.send(
            json.dumps(
                {"action": "setRole", "room": "town", "user": "mallory", "role": "moderator"}
            )
        )
        dave.expect("* [town] alice made mallory a moderator")
        alice.send(json.dumps({"action": "kick", "room": "town", "user": "dave"}))
        dave.expect("* alice kicked you out of [town]")
        dave.expect("* talking in [lobby]")
        dave.type("back in the lobby")
        dave.expect("[lobby] dave: back in the lobby")
        dave.type("/help")
        dave.expect("/create-private ROOM [TOPIC]")


def test_the_rooms_listing_pages_on_and_rooms_events_print_readably() -> None:
    out = io.StringIO()
    chat = TerminalChat("ws://127.0.0.1:1/local", name="dave", room="general", out=out)
    chat.handle(
        {
            "type": "rooms",
            "rooms": [
                {"room": "art", "topic": "", "owner": "bob", "private": False, "members": 1},
                {"room": "books", "topic": "reading", "owner": None, "members": 12},
            ],
            "more": True,
        }
    )
    chat.handle({"type": "rooms", "rooms": [], "more": False})
    chat.handle({"type": "invited", "room": "den", "user": "bob", "by": "dave"})
    chat.handle({"type": "muted", "room": "general", "user": "bob", "until": None, "by": "eve"})
    chat.handle({"type": "read", "room": "general", "upTo": "01A"})
    assert out.getvalue().splitlines() == [
        "* public rooms:",
        "*   [art] 1 member, owner bob",
        "*   [books] 12 members: reading",
        "* more: /rooms books",
        "* no public rooms",
        "* invited bob to [den]",
        "* [general] eve unmuted bob",
    ]

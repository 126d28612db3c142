"""The chat page as people use it: Debian's chromium, one browser context per person, against
``wschat serve`` running as a process (see conftest.py)."""

from __future__ import annotations

import functools
import re
import signal
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import RECONNECT_TIMEOUT_MS, ChatServer, People, Person, say

from wschat.page import WEB_DIR

pytestmark = pytest.mark.browser


def test_two_people_in_a_room_see_both_sides_in_order_and_an_outsider_sees_none(
    people: People,
) -> None:
    alice = people.open("alice", rooms=("general",), active="general")
    bob = people.open("bob", rooms=("general",), active="general")
    carol = people.open("carol")  # only in lobby

    conversation = ["hi bob", "hi alice", "how are you?", "fine, thanks"]
    for number, text in enumerate(conversation):
        (alice if number % 2 == 0 else bob).send(text)
        alice.wait_for_texts(conversation[: number + 1])
        bob.wait_for_texts(conversation[: number + 1])

    senders = [message["from"] for message in bob.messages()]
    assert senders == ["alice", "bob", "alice", "bob"]
    expect(alice.page.locator("#title")).to_have_text("#general")
    expect(alice.page.locator("#member-list")).to_contain_text("bob")
    people.screenshots("conversation")

    # Carol's page shows none of it, and her socket never carried any of it.
    assert carol.texts() == []
    assert not any(text in carol.page.content() for text in conversation)
    about_general = [frame for frame in carol.frames if frame.get("room") == "general"]
    assert about_general == []
    assert not any(text in str(carol.frames) for text in conversation)


@pytest.mark.own_gateway
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_after_a_gateway_restart_pages_reconnect_and_show_every_message_once(
    people: People, chat_server: ChatServer, signum: int
) -> None:
    alice = people.open("alice", rooms=("general",), active="general")
    # Bob's page runs on Playwright's clock: the test decides when his reconnect timer fires,
    # so he is away while alice talks (as a page whose backoff is longer would be).
    bob = people.open("bob", rooms=("general",), active="general", clock=True)
    said: list[str] = []

    def speak(person: Person, text: str) -> None:
        person.send(text)
        said.append(text)
        alice.wait_for_texts(said)
        bob.wait_for_texts(said)

    speak(alice, "before 1")
    speak(bob, "before 2")

    bob.page.clock.pause_at(bob.page.evaluate("Date.now()") + 1000)
    chat_server.stop(signum)
    for person in (alice, bob):
        expect(person.page.locator("#status")).to_have_attribute("data-state", "reconnecting")
        expect(person.page.locator("#status")).to_have_text("reconnecting…")
    bob.send("typed while offline")
    expect(bob.page.locator("li.message.pending")).to_have_text(re.compile("typed while offline"))
    people.screenshots("offline")

    chat_server.start()
    alice.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
    for text in ("while bob is away 1", "while bob is away 2"):
        alice.send(text)
        said.append(text)
        alice.wait_for_texts(said)
    assert bob.texts() == said[:2]

    bob.page.clock.resume()
    bob.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
    said.append("typed while offline")  # sent when his page reconnected
    alice.wait_for_texts(said, timeout=RECONNECT_TIMEOUT_MS)
    bob.wait_for_texts(said, timeout=RECONNECT_TIMEOUT_MS)
    speak(bob, "back 1")
    speak(alice, "back 2")

    for person in (alice, bob):
        ids = [message["id"] for message in person.messages()]
        assert len(ids) == len(set(ids)) == len(said), person.messages()
        assert person.page.locator("li.message.pending").count() == 0
    assert [m["id"] for m in alice.messages()] == [m["id"] for m in bob.messages()]
    # Bob got what he missed from the catch-up page (history after his last id), not live.
    caught_up = [
        message["text"]
        for frame in bob.frames_of("history")
        if frame.get("after")
        for message in frame["messages"]
    ]
    assert {"while bob is away 1", "while bob is away 2"} <= set(caught_up), caught_up


def test_markup_in_a_message_shows_as_text_and_never_runs(people: People) -> None:
    alice = people.open("alice")
    bob = people.open("bob")
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        '"><svg onload=alert(3)>',
    ]
    for number, payload in enumerate(payloads):
        alice.send(payload)
        alice.wait_for_texts(payloads[: number + 1])
    bob.wait_for_texts(payloads)
    bob.send("after the payloads")  # a round trip after them: an onerror would have fired
    alice.wait_for_texts([*payloads, "after the payloads"])

    for person in (alice, bob):
        messages = person.page.locator("#message-list")
        assert messages.locator("img, script, svg").count() == 0
        expect(messages.locator(".text").first).to_have_text(payloads[0])
        assert person.dialogs == []


def test_names_join_and_leave_notices_and_the_member_list(people: People) -> None:
    alice = people.open("alice")
    bob = people.open("bob")
    members = {p.name: p.page.locator("#member-list li") for p in (alice, bob)}
    expect(members["alice"]).to_have_text(["alice (you)", "bob"])
    expect(members["bob"]).to_have_text(["alice", "bob (you)"])
    # Everyone is in #lobby for good: it offers no way out (leaving left the page in a room
    # it could not send to).
    expect(alice.page.get_by_role("button", name="Leave room")).to_be_hidden()

    # Alice renames herself in the sidebar; everyone in her rooms is told.
    alice.page.get_by_label("Your name").fill("alicia")
    alice.page.get_by_role("button", name="Set").click()
    expect(bob.page.locator("#message-list .system")).to_have_text(["alice is now alicia"])
    expect(members["bob"]).to_have_text(["alicia", "bob (you)"])
    expect(members["alice"]).to_have_text(["alicia (you)", "bob"])
    # The page remembers the new name across a reload.
    alice.name = "alicia"
    alice.page.reload()
    alice.wait_connected()

    # Both join #books from the sidebar; alice sees bob arrive, then leave.
    for person in (alice, bob):
        person.page.get_by_label("Join a room").fill("books")
        person.page.get_by_label("Join a room").press("Enter")
        expect(person.page.locator("#title")).to_have_text("#books")
        expect(person.page.locator("#room-list")).to_contain_text("#books")
    expect(alice.page.locator("#message-list .system")).to_have_text(["bob joined"])
    expect(members["alice"]).to_have_text(["alicia (you)", "bob"])
    expect(members["bob"]).to_have_text(["alicia", "bob (you)"])
    expect(bob.page.get_by_role("button", name="Leave room")).to_be_visible()
    people.screenshots("both-in-books")

    bob.page.get_by_role("button", name="Leave room").click()
    expect(bob.page.locator("#title")).to_have_text("#lobby")
    expect(bob.page.locator("#room-list button")).to_have_text(["#lobby"])
    expect(alice.page.locator("#message-list .system")).to_have_text(["bob joined", "bob left"])
    expect(members["alice"]).to_have_text(["alicia (you)"])


def test_a_direct_message_reaches_only_the_person_it_is_for(people: People) -> None:
    alice = people.open("alice")
    bob = people.open("bob")
    carol = people.open("carol")

    alice.page.get_by_label("Message someone").fill("bob")
    alice.page.get_by_role("button", name="Open").click()
    expect(alice.page.locator("#title")).to_have_text("@bob")
    alice.send("psst, bob")
    alice.wait_for_texts(["psst, bob"])

    # Bob is still in #lobby: the conversation appears in his list, with an unread count.
    conversation = bob.page.locator("#dm-list button")
    expect(conversation).to_have_count(1)
    expect(conversation.locator("span").first).to_have_text("@alice")
    expect(conversation.locator(".badge")).to_have_text("1")
    assert bob.texts() == []
    conversation.click()
    expect(bob.page.locator("#title")).to_have_text("@alice")
    bob.wait_for_texts(["psst, bob"])
    expect(bob.page.locator("#member-list li")).to_have_text(["alice", "bob (you)"])
    expect(bob.page.locator("#leave-button")).to_be_hidden()
    bob.send("hi alice")
    alice.wait_for_texts(["psst, bob", "hi alice"])
    bob.wait_for_texts(["psst, bob", "hi alice"])

    expect(carol.page.locator("#dm-list button")).to_have_count(0)
    assert carol.frames_of("direct") == []
    assert "psst" not in str(carol.frames)


def test_errors_from_the_server_show_in_the_notice_area(people: People) -> None:
    alice = people.open("alice", clock=True)
    notice = alice.page.locator("#notice")
    expect(notice).to_be_hidden()

    # The composer stops at 4,000 characters; a frame built by hand is refused by the server.
    alice.page.evaluate(
        "window.wschat.connection.send("
        "{action: 'sendMessage', room: 'lobby', message: 'x'.repeat(4001)})"
    )
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("(too_long)")
    assert alice.frames_of("error")[0]["code"] == "too_long"
    assert alice.texts() == []
    people.screenshots("too-long")
    alice.page.clock.fast_forward(8_500)
    expect(notice).to_be_hidden()

    # More than the burst the server allows (20) in one go: the rest are refused, and nothing
    # stays shown as "sending".
    alice.page.evaluate(
        """() => { for (let i = 0; i < 30; i++) window.wschat.connection.send(
            {action: 'sendMessage', room: 'lobby', message: `burst ${i}`, clientId: `b${i}`}); }"""
    )
    expect(notice).to_contain_text("(rate_limited)")
    expect(alice.page.locator("li.message.pending")).to_have_count(0)

    # Each frame is answered: an ack (stored) or rate_limited (not stored); the 31st answer is
    # the too_long error above. (The page's own read marks draw on the same bucket: their
    # errors are not answers to these frames.)
    def answers() -> int:
        errors = [e for e in alice.frames_of("error") if e.get("action") == "sendMessage"]
        return len(alice.frames_of("ack")) + len(errors)

    alice.wait_until(lambda: answers() == 31 or None, "an answer to each of the 30 frames")
    acks = sorted(alice.frames_of("ack"), key=lambda ack: ack["id"])
    accepted = [f"burst {ack['clientId'][1:]}" for ack in acks]
    assert 0 < len(accepted) < 30
    alice.wait_for_texts(accepted)


def test_scrolling_back_loads_older_messages(people: People, chat_server: ChatServer) -> None:
    said = [f"message {number:02d}" for number in range(1, 61)]
    # Three senders of 20 each: the server allows bursts of 20 per connection.
    for start in range(0, 60, 20):
        with chat_server.person(f"seed{start}", "general") as seed:
            for text in said[start : start + 20]:
                say(seed, text, "general")

    alice = people.open("alice", rooms=("general",), active="general")
    alice.wait_for_texts(said[-50:])
    older = alice.page.get_by_role("button", name="Load older messages")
    expect(older).to_be_visible()
    # Opened at the newest message.
    expect(alice.page.locator("#message-list li.message").last).to_be_in_viewport()

    # Scrolling up to it loads the older page (the page does not wait for a click).
    alice.page.locator("#messages").hover()
    alice.page.mouse.wheel(0, -100_000)
    alice.wait_for_texts(said)
    expect(older).to_be_hidden()
    ids = [message["id"] for message in alice.messages()]
    assert ids == sorted(set(ids))
    # The reader keeps their place: the message that was first is still on screen.
    expect(alice.page.get_by_text("message 11", exact=True)).to_be_in_viewport()

    # On a tall screen the newest 50 fit without scrolling: the button is the way back.
    bob = people.open("bob", rooms=("general",), active="general", viewport=(1000, 1900))
    bob.wait_for_texts(said[-50:])
    messages_box = bob.page.locator("#messages")
    assert messages_box.evaluate("(box) => box.scrollHeight <= box.clientHeight")
    bob.page.get_by_role("button", name="Load older messages").click()
    bob.wait_for_texts(said)
    expect(bob.page.get_by_role("button", name="Load older messages")).to_be_hidden()


def test_at_phone_width_the_menu_opens_the_room_list(people: People) -> None:
    alice = people.open("alice", rooms=("general",), viewport=(390, 700))
    page = alice.page
    toggle = page.get_by_role("button", name="Rooms and people")
    expect(toggle).to_be_visible()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#members")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#room-list button")).to_have_text(["#general", "#lobby"])
    people.screenshots("menu-open")
    page.locator("#room-list").get_by_role("button", name="#general").click()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#title")).to_have_text("#general")

    composer = page.get_by_label("Message", exact=True)
    expect(composer).to_be_in_viewport()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    alice.send("from my phone")
    alice.wait_for_texts(["from my phone"])
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_keyboard_alone_reaches_the_composer_and_sends(people: People) -> None:
    alice = people.open("alice")
    page = alice.page
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "message-input":
            break
    else:
        pytest.fail("30 presses of Tab never reached the message box")

    page.keyboard.type("typed with the keyboard")
    page.keyboard.press("Enter")
    alice.wait_for_texts(["typed with the keyboard"])
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    # Shift+Enter is a new line, not a send.
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    page.keyboard.press("Enter")
    alice.wait_for_texts(["typed with the keyboard", "line one\nline two"])


def test_every_field_has_a_label(people: People) -> None:
    alice = people.open("alice")
    unlabelled = alice.page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select')]
            .filter((field) => field.type !== 'hidden')
            .filter((field) => field.labels.length === 0
                && !field.getAttribute('aria-label') && !field.getAttribute('aria-labelledby'))
            .map((field) => field.outerHTML)"""
    )
    assert unlabelled == []
    fields = alice.page.locator("input:not([type=hidden]), textarea")
    assert fields.count() >= 4  # name, join, direct message, composer
    nameless_buttons = alice.page.evaluate(
        """() => [...document.querySelectorAll('button')]
            .filter((button) => !button.textContent.trim() && !button.getAttribute('aria-label'))
            .map((button) => button.outerHTML)"""
    )
    assert nameless_buttons == []


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def static_web() -> Iterator[str]:
    """src/wschat/web served by a plain http.server on a port of its own (no config.json)."""
    handler = functools.partial(QuietFiles, directory=str(WEB_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_ws_query_points_the_page_at_another_stage(
    people: People, chat_server: ChatServer, static_web: str
) -> None:
    # Without ?ws= the page looks for the gateway where it was served from: nothing there.
    stray = people.open("stray", url=static_web, connect=False)
    expect(stray.page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    assert stray.sockets and all(
        url.startswith(static_web.replace("http", "ws")) for url in stray.sockets
    )

    alice = people.open("alice", url=f"{static_web}?ws={chat_server.websocket_url}")
    assert alice.sockets[0].startswith(chat_server.websocket_url + "?")
    with chat_server.person("bob") as bob:
        say(bob, "found you")
        alice.wait_for_texts(["found you"])

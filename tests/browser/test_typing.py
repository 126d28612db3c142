"""Typing indicators on the chat page: typing in the composer tells the open conversation (at
most every 3 s, only while connected); the others see "bob is typing…" under that conversation
until about 5 s after his last ``typing``, or at once no longer when his message arrives.

The pages run on Playwright's clock, paused: an indicator goes only when the test moves its
page's time on (or a message clears it), and a typer's 3 s are the test's to decide, so nothing
here waits out real seconds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import ChatServer, People, Person

pytestmark = pytest.mark.browser


def paused(person: Person) -> Person:
    """Stop ``person``'s page clock (their timers run only as the test moves time on)."""
    person.page.clock.pause_at(person.page.evaluate("Date.now()") + 1000)
    return person


def typing_sent(person: Person) -> list[dict[str, Any]]:
    return [frame for frame in person.sent if frame.get("action") == "typing"]


def test_typing_shows_under_the_room_fades_out_and_clears_when_the_message_arrives(
    people: People,
) -> None:
    alice = paused(people.open("alice", rooms=("general",), active="general", clock=True))
    bob = paused(people.open("bob", rooms=("general",), active="general", clock=True))
    indicator = alice.page.locator("#typing-text")
    expect(alice.page.locator("#typing")).to_have_attribute("aria-live", "polite")
    expect(indicator).to_be_hidden()

    # Bob types a word without sending it: one typing frame for the word, not one per key.
    bob.page.locator("#message-input").press_sequentially("hel")
    expect(indicator).to_have_text("bob is typing…")
    expect(indicator).to_be_visible()
    expect(bob.page.locator("#typing-text")).to_be_hidden()  # never told of his own typing
    people.screenshots("bob-typing")

    # Bob sends: the indicator goes as his message arrives, not seconds later.
    bob.page.locator("#message-input").press_sequentially("lo")
    bob.page.locator("#message-input").press("Enter")
    alice.wait_for_texts(["hello"])
    assert indicator.is_hidden()
    assert typing_sent(bob) == [{"action": "typing", "room": "general"}]

    # Typing again straight after sending says so again; nothing more comes, and about 5 s
    # later it fades out by itself.
    bob.page.locator("#message-input").press_sequentially("more")
    expect(indicator).to_have_text("bob is typing…")
    bob.wait_until(lambda: len(typing_sent(bob)) == 2 or None, "bob's second typing frame")
    alice.page.clock.run_for(4_000)
    expect(indicator).to_be_visible()
    alice.page.clock.run_for(2_000)
    expect(indicator).to_be_hidden()
    expect(indicator).to_have_text("")


def test_several_people_typing_and_a_direct_message_shows_only_in_that_conversation(
    people: People, chat_server: ChatServer
) -> None:
    alice = paused(people.open("alice", rooms=("general",), active="general", clock=True))
    bob = paused(people.open("bob", rooms=("general",), active="general", clock=True))
    indicator = alice.page.locator("#typing-text")

    with chat_server.person("carol", "general") as carol, chat_server.person("dan") as dan:
        # Two, then three people typing in #general.
        bob.page.locator("#message-input").press_sequentially("hi")
        expect(indicator).to_have_text("bob is typing…")
        carol.send(json.dumps({"action": "typing", "room": "general"}))
        expect(indicator).to_have_text("bob and carol are typing…")
        dan.send(json.dumps({"action": "join", "room": "general"}))
        expect(alice.page.locator("#member-list")).to_contain_text("dan")
        dan.send(json.dumps({"action": "typing", "room": "general"}))
        expect(indicator).to_have_text("several people are typing…")
        # Someone typing in lobby is no news in #general.
        dan.send(json.dumps({"action": "typing", "room": "lobby"}))
        alice.wait_until(lambda: in_lobby(alice) or None, "dan's typing in lobby")
        expect(indicator).to_have_text("several people are typing…")
        alice.page.clock.run_for(6_000)
        expect(indicator).to_be_hidden()

        # Bob opens a direct message to alice and types in it: alice's #general shows nothing;
        # her conversation with bob does.
        bob.page.get_by_label("Message someone").fill("alice")
        bob.page.get_by_role("button", name="Open").click()
        expect(bob.page.locator("#title")).to_have_text("@alice")
        bob.page.locator("#message-input").press_sequentially("psst")
        alice.wait_until(lambda: to_alice(alice) or None, "bob's typing to alice")
        assert typing_sent(bob)[-1] == {"action": "typing", "to": "alice"}
        expect(indicator).to_be_hidden()
        alice.page.get_by_label("Message someone").fill("bob")
        alice.page.get_by_role("button", name="Open").click()
        expect(alice.page.locator("#title")).to_have_text("@bob")
        expect(indicator).to_have_text("bob is typing…")
        alice.page.locator("#room-list").get_by_role("button", name="#general").click()
        expect(indicator).to_be_hidden()

    # Disconnected, bob's typing goes nowhere: not sent, and not kept for the next connection.
    bob.page.evaluate("window.wschat.connection.close()")
    expect(bob.page.locator("#status")).to_have_text("offline")
    bob.page.clock.run_for(3_500)  # past the 3 s: only being offline keeps it from going
    before = len(typing_sent(bob))
    bob.page.locator("#message-input").press_sequentially(" more")
    assert bob.page.evaluate("window.wschat.connection.pending") == []
    assert len(typing_sent(bob)) == before


def in_lobby(person: Person) -> bool:
    return any(frame.get("room") == "lobby" for frame in person.frames_of("typing"))


def to_alice(person: Person) -> bool:
    return any(frame.get("to") == "alice" for frame in person.frames_of("typing"))

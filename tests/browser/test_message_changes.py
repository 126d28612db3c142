"""Editing, deleting and reacting to messages on the chat page: each message's action bar (a
reaction button; Edit and Delete on your own), editing in place (Enter saves, Escape cancels, Up
in an empty composer edits your last message), an in-page confirm before deleting, "(edited)",
"message deleted" and reaction chips, live on the other pages and the same after a reload or a
reconnect (from history)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import ChatServer, People, Person, say
from tests.integration.conftest import recv_until

pytestmark = pytest.mark.browser
DELETED = re.compile(r"\bdeleted\b")


def item(person: Person, message_id: str) -> Any:
    """The list item of message ``message_id`` on ``person``'s page."""
    return person.page.locator(f'#message-list li.message[data-id="{message_id}"]')


def ids_by_text(person: Person) -> dict[str, str]:
    return {message["text"]: message["id"] for message in person.messages()}


def sent(person: Person, action: str) -> list[dict[str, Any]]:
    return [frame for frame in person.sent if frame.get("action") == action]


def edit_with_the_button(person: Person, message_id: str, text: str) -> None:
    li = item(person, message_id)
    li.hover()
    li.get_by_role("button", name="Edit", exact=True).click()
    box = li.get_by_role("textbox", name="Edit message")
    expect(box).to_be_focused()
    box.fill(text)
    box.press("Enter")


def react_with_the_picker(person: Person, message_id: str, emoji: str) -> None:
    li = item(person, message_id)
    li.hover()
    li.get_by_role("button", name="Add reaction").click()
    picker = li.get_by_role("group", name="Pick a reaction")
    picker.get_by_role("button", name=f"React {emoji}").click()


def expect_state(person: Person, ids: dict[str, str], me_reacted: bool) -> None:
    """The conversation after the test's changes: "one" edited, "two" deleted, "three" as sent,
    "one" with 👍 from alice and bob."""
    expect(item(person, ids["one"]).locator(".text")).to_have_text("one, edited")
    expect(item(person, ids["one"]).locator(".edited")).to_have_text("(edited)")
    deleted = item(person, ids["two"])
    expect(deleted).to_have_class(DELETED)
    expect(deleted.locator(".text")).to_have_text("message deleted")
    expect(deleted.get_by_role("button")).to_have_count(0)  # no actions on a tombstone
    expect(item(person, ids["three"]).locator(".edited")).to_have_count(0)
    chip = item(person, ids["one"]).locator(".chip")
    expect(chip).to_have_text(["👍 2"])
    expect(chip).to_have_attribute("title", "alice, bob")
    expect(chip).to_have_attribute("aria-pressed", "true" if me_reacted else "false")


def test_edits_deletes_and_reactions_show_live_and_again_after_a_reload(people: People) -> None:
    alice = people.open("alice", rooms=("general",), active="general")
    bob = people.open("bob", rooms=("general",), active="general")
    for text in ("one", "two", "three"):
        alice.send(text)
    bob.wait_for_texts(["one", "two", "three"])
    alice.wait_for_texts(["one", "two", "three"])  # acknowledged: no longer pending here
    ids = ids_by_text(alice)

    # Bob may react to alice's messages, not edit or delete them; alice has all three.
    for message_id in ids.values():
        expect(item(bob, message_id).get_by_role("button", name="Add reaction")).to_have_count(1)
        expect(item(bob, message_id).get_by_role("button", name="Edit")).to_have_count(0)
        expect(item(bob, message_id).get_by_role("button", name="Delete")).to_have_count(0)
        expect(item(alice, message_id).get_by_role("button", name="Edit")).to_have_count(1)
        expect(item(alice, message_id).get_by_role("button", name="Delete")).to_have_count(1)

    # Alice edits "one" in place: bob's page shows the new text and "(edited)", no reload.
    edit_with_the_button(alice, ids["one"], "one, edited")
    expect(item(bob, ids["one"]).locator(".text")).to_have_text("one, edited")
    expect(item(bob, ids["one"]).locator(".edited")).to_have_text("(edited)")
    expect(item(alice, ids["one"]).locator(".edited")).to_have_text("(edited)")
    assert sent(alice, "edit") == [
        {"action": "edit", "room": "general", "id": ids["one"], "message": "one, edited"}
    ]
    # Focus goes back to the button the edit began from.
    expect(item(alice, ids["one"]).get_by_role("button", name="Edit")).to_be_focused()

    # Up in the empty composer edits her last message; Escape leaves it as it was.
    composer = alice.page.locator("#message-input")
    composer.click()
    composer.press("ArrowUp")
    box = item(alice, ids["three"]).get_by_role("textbox", name="Edit message")
    expect(box).to_be_focused()
    expect(box).to_have_value("three")
    box.press_sequentially(" and more")
    box.press("Escape")
    expect(box).to_have_count(0)
    expect(item(alice, ids["three"]).locator(".text")).to_have_text("three")
    expect(composer).to_be_focused()
    assert len(sent(alice, "edit")) == 1
    people.screenshots("edited")

    # Alice deletes "two": the page asks first, in the message; Cancel keeps it.
    two = item(alice, ids["two"])
    two.hover()
    two.get_by_role("button", name="Delete", exact=True).click()
    confirm = two.get_by_role("group", name="Confirm delete")
    expect(confirm).to_contain_text("Delete this message?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_have_count(0)
    assert sent(alice, "delete") == []
    two.hover()
    two.get_by_role("button", name="Delete", exact=True).click()
    expect(confirm.get_by_role("button", name="Yes, delete it")).to_be_focused()
    people.screenshots("confirm-delete")
    confirm.get_by_role("button", name="Yes, delete it").click()
    for person in (alice, bob):
        expect(item(person, ids["two"]).locator(".text")).to_have_text("message deleted")
        expect(item(person, ids["two"])).to_have_class(DELETED)
    assert alice.dialogs == []  # the confirm is the page's own, not window.confirm

    # Bob reacts 👍 to "one": alice sees a 👍 1 chip (not hers); her click makes it 👍 2.
    react_with_the_picker(bob, ids["one"], "👍")
    alice_chip = item(alice, ids["one"]).locator(".chip")
    expect(alice_chip).to_have_text(["👍 1"])
    expect(alice_chip).to_have_attribute("title", "bob")
    expect(alice_chip).to_have_attribute("aria-pressed", "false")
    expect(item(bob, ids["one"]).locator(".chip")).to_have_attribute("aria-pressed", "true")
    alice_chip.click()
    for person in (alice, bob):
        expect_state(person, ids, me_reacted=True)
    people.screenshots("reacted")

    # A reload shows the same, from history.
    for person in (alice, bob):
        person.page.reload()
        person.wait_connected()
        person.wait_for_texts(["one, edited", "message deleted", "three"])
        expect_state(person, ids, me_reacted=True)

    # Clicking her chip again takes hers back: 👍 1 on both pages.
    item(alice, ids["one"]).locator(".chip").click()
    for person in (alice, bob):
        expect(item(person, ids["one"]).locator(".chip")).to_have_text(["👍 1"])
        expect(item(person, ids["one"]).locator(".chip")).to_have_attribute("title", "bob")


def test_a_page_that_reconnects_shows_what_changed_while_it_was_away(
    people: People, chat_server: ChatServer
) -> None:
    bob = people.open("bob", rooms=("general",), active="general")
    with chat_server.person("alice", "general") as alice:
        ids = {text: say(alice, text, "general")["id"] for text in ("one", "two", "three")}
        bob.wait_for_texts(["one", "two", "three"])
        bob.page.evaluate("window.wschat.connection.close()")
        expect(bob.page.locator("#status")).to_have_text("offline")

        def change(**frame: Any) -> None:
            alice.send(json.dumps({"room": "general", **frame}))
            recv_until(alice, lambda e: e.get("type") in ("edited", "deleted", "reaction"))

        change(action="edit", id=ids["one"], message="one, edited")
        change(action="delete", id=ids["two"])
        change(action="react", id=ids["three"], emoji="🎉")
        assert bob.texts() == ["one", "two", "three"]  # away: nothing changed on his page

        bob.page.evaluate("window.wschat.connection.open()")
        bob.wait_connected()
        bob.wait_for_texts(["one, edited", "message deleted", "three"])
        expect(item(bob, ids["one"]).locator(".edited")).to_have_text("(edited)")
        expect(item(bob, ids["three"]).locator(".chip")).to_have_text(["🎉 1"])
        expect(item(bob, ids["three"]).locator(".chip")).to_have_attribute("title", "alice")


def test_another_emoji_keyboard_use_and_errors_in_the_notice_area(
    people: People, chat_server: ChatServer
) -> None:
    bob = people.open("bob", rooms=("general",), active="general")
    with chat_server.person("alice", "general") as alice:
        theirs = say(alice, "from alice", "general")["id"]
        bob.send("from bob")
        bob.wait_for_texts(["from alice", "from bob"])
        mine = ids_by_text(bob)["from bob"]
        bar = item(bob, mine).locator(".actions")

        # The action bar is out of sight until the message is hovered or has focus; the keyboard
        # reaches it: Shift+Tab from the composer lands on the last message's last button.
        bob.page.mouse.move(0, 0)
        expect(bar).to_have_css("opacity", "0")
        bob.page.locator("#message-input").focus()
        bob.page.keyboard.press("Shift+Tab")
        expect(bar.get_by_role("button", name="Delete")).to_be_focused()
        expect(bar).to_have_css("opacity", "1")
        bob.page.keyboard.press("Shift+Tab")
        bob.page.keyboard.press("Enter")  # Edit
        box = item(bob, mine).get_by_role("textbox", name="Edit message")
        expect(box).to_be_focused()
        box.fill("from bob, edited")
        box.press("Enter")
        expect(item(bob, mine).locator(".text")).to_have_text("from bob, edited")
        expect(item(bob, mine).locator(".edited")).to_have_text("(edited)")
        edited = recv_until(alice, lambda e: e.get("type") == "edited")
        assert (edited["id"], edited["text"]) == (mine, "from bob, edited")

        # Another emoji, typed; Escape closes the picker and gives focus back to its button.
        item(bob, theirs).hover()
        item(bob, theirs).get_by_role("button", name="Add reaction").click()
        other = item(bob, theirs).get_by_role("textbox", name="Another emoji")
        other.fill("🦄")
        other.press("Enter")
        expect(item(bob, theirs).locator(".chip")).to_have_text(["🦄 1"])
        reaction = recv_until(alice, lambda e: e.get("type") == "reaction")
        assert (reaction["emoji"], reaction["users"], reaction["on"]) == ("🦄", ["bob"], True)
        item(bob, theirs).get_by_role("button", name="Add reaction").click()
        picker = item(bob, theirs).get_by_role("group", name="Pick a reaction")
        expect(picker.get_by_role("button", name="React 👍")).to_be_focused()
        bob.page.keyboard.press("Escape")
        expect(picker).to_have_count(0)
        expect(item(bob, theirs).get_by_role("button", name="Add reaction")).to_be_focused()

        # Errors from these actions show in the notice area: editing alice's message (a frame
        # built by hand; the page offers no Edit there), and a 21st different emoji.
        notice = bob.page.locator("#notice")
        bob.page.evaluate(
            "(id) => window.wschat.connection.send("
            "{action: 'edit', room: 'general', id, message: 'not yours'})",
            theirs,
        )
        expect(notice).to_contain_text("(forbidden)")
        expect(item(bob, theirs).locator(".text")).to_have_text("from alice")
        for number in range(19):
            alice.send(
                json.dumps(
                    {"action": "react", "room": "general", "id": theirs, "emoji": f"e{number}"}
                )
            )
        expect(item(bob, theirs).locator(".chip")).to_have_count(20)
        react_with_the_picker(bob, theirs, "👀")
        expect(notice).to_contain_text("(too_many_reactions)")
        people.screenshots("errors")


def test_changes_in_a_direct_conversation(people: People) -> None:
    alice = people.open("alice")
    bob = people.open("bob")
    for person, other in ((alice, "bob"), (bob, "alice")):
        person.page.get_by_label("Message someone").fill(other)
        person.page.get_by_role("button", name="Open").click()
        expect(person.page.locator("#title")).to_have_text(f"@{other}")
    alice.send("psst")
    bob.wait_for_texts(["psst"])
    message_id = ids_by_text(bob)["psst"]

    edit_with_the_button(alice, message_id, "psst, edited")
    expect(item(bob, message_id).locator(".text")).to_have_text("psst, edited")
    react_with_the_picker(bob, message_id, "❤️")
    expect(item(alice, message_id).locator(".chip")).to_have_text(["❤️ 1"])
    assert sent(bob, "react") == [
        {"action": "react", "with": "alice", "id": message_id, "emoji": "❤️", "on": True}
    ]
    expect(item(bob, message_id).get_by_role("button", name="Delete")).to_have_count(0)
    item(alice, message_id).hover()
    item(alice, message_id).get_by_role("button", name="Delete", exact=True).click()
    item(alice, message_id).get_by_role("button", name="Yes, delete it").click()
    bob.wait_for_texts(["message deleted"])
    expect(item(bob, message_id).locator(".chip")).to_have_count(0)

"""Rooms on the chat page: unread badges kept in step across tabs of one user (``read``), the
room directory and the New room form, private rooms and invitations, and moderation from the
People column (roles, mutes, kicks) showing as lines in the room."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import ChatServer, People, Person, say
from tests.integration.conftest import recv_until

pytestmark = pytest.mark.browser


def room_button(person: Person, room: str) -> Any:
    # Its accessible name: "#general", or "#general 2 unread" with a badge.
    name = re.compile(rf"^#{room}( |$)")
    return person.page.locator("#room-list").get_by_role("button", name=name)


def badge(person: Person, room: str) -> Any:
    return room_button(person, room).locator(".badge")


def system_lines(person: Person) -> Any:
    return person.page.locator("#message-list li.system")


def first_frame(person: Person, kind: str, **fields: Any) -> dict[str, Any] | None:
    """The first frame of ``kind`` with ``fields`` the page received, or None."""
    for frame in person.frames_of(kind):
        if all(frame.get(key) == value for key, value in fields.items()):
            return frame
    return None


def sent(person: Person, action: str) -> list[dict[str, Any]]:
    return [frame for frame in person.sent if frame.get("action") == action]


def create_room(person: Person, room: str, topic: str = "", *, private: bool = False) -> None:
    """With the New room form, as a person does."""
    page = person.page
    page.get_by_role("button", name="New room").click()
    expect(page.locator("#create-name")).to_be_focused()
    page.locator("#create-name").fill(room)
    if topic:
        page.locator("#create-topic").fill(topic)
    if private:
        page.get_by_label("Private").check()
    page.get_by_role("button", name="Create room").click()
    expect(page.locator("#title")).to_have_text(f"#{room}")
    expect(page.locator("#rooms-panel")).to_be_hidden()


def open_member_menu(person: Person, user: str) -> Any:
    person.page.get_by_role("button", name=f"Actions for {user}").click()
    menu = person.page.get_by_role("menu", name=f"Actions for {user}")
    expect(menu).to_be_visible()
    return menu


def test_unread_badges_stay_in_step_on_two_tabs_of_one_user(
    people: People, chat_server: ChatServer
) -> None:
    alice = people.open("alice", rooms=("general",))
    alice2 = people.another_tab(alice)
    with chat_server.person("bob", "general") as bob:
        first = say(bob, "are you there, alice?", "general")
        # Neither tab has #general open: both count it.
        for tab in (alice, alice2):
            expect(badge(tab, "general")).to_have_text("1")

        # Alice opens it on her first tab: it is read there, and the badge goes on the other.
        room_button(alice, "general").click()
        alice.wait_for_texts(["are you there, alice?"])
        expect(badge(alice, "general")).to_have_count(0)
        expect(badge(alice2, "general")).to_have_count(0)
        assert {"action": "read", "room": "general", "upTo": first["id"]} in sent(alice, "read")
        read = alice2.wait_until(
            lambda: first_frame(alice2, "read", room="general"),
            "the read event on the second tab",
        )
        assert read["upTo"] == first["id"]
        assert not [f for f in sent(alice2, "read") if f.get("room") == "general"]

        # With #general open on tab 1, a new message there is read at once: no badge on tab 2
        # after it arrives (it may show for a moment, until tab 1's read).
        second = say(bob, "second", "general")
        alice.wait_for_texts(["are you there, alice?", "second"])
        alice2.wait_until(
            lambda: first_frame(alice2, "read", upTo=second["id"]),
            "the second read event",
        )
        expect(badge(alice2, "general")).to_have_count(0)

        # Back in the lobby on tab 1, two more arrive: a reloaded tab 2 counts them from its
        # hello (``unread``), not from live messages.
        room_button(alice, "lobby").click()
        say(bob, "third", "general")
        say(bob, "fourth", "general")
        expect(badge(alice, "general")).to_have_text("2")
        alice2.frames.clear()
        alice2.page.reload()
        alice2.wait_connected()
        hello = alice2.wait_until(
            lambda: next(iter(f for f in alice2.frames_of("hello") if "unread" in f), None),
            "a hello with unread counts",
        )
        assert hello["unread"]["general"] == 2
        expect(badge(alice2, "general")).to_have_text("2")

        # Opening it on tab 2 this time clears it on tab 1.
        room_button(alice2, "general").click()
        alice2.wait_for_texts(["are you there, alice?", "second", "third", "fourth"])
        expect(badge(alice, "general")).to_have_count(0)
        expect(badge(alice2, "general")).to_have_count(0)
        bob.send(json.dumps({"action": "hello"}))
        recv_until(bob, lambda e: e.get("type") == "hello")


def test_an_outsider_never_sees_a_private_rooms_messages_and_the_invited_join(
    people: People, chat_server: ChatServer
) -> None:
    with chat_server.person("carol") as carol:
        # A public room, for the directory.
        carol.send(json.dumps({"action": "createRoom", "room": "town", "topic": "all welcome"}))
        recv_until(carol, lambda e: e.get("type") == "roomCreated")
        alice = people.open("alice")
        mallory = people.open("mallory")
        bob = people.open("bob")

        create_room(alice, "secret", "the plan", private=True)
        expect(system_lines(alice).first).to_contain_text("alice created #secret (private")
        alice.send("the plan is in the drawer")
        alice.wait_for_texts(["the plan is in the drawer"])

        # Mallory browses: the public room is listed (topic, members, Join), the private one not.
        mallory.page.get_by_role("button", name="Browse rooms").click()
        directory = mallory.page.locator("#directory-list li")
        expect(directory).to_have_count(1)
        expect(directory.first).to_contain_text("#town")
        expect(directory.first).to_contain_text("1 member")
        expect(directory.first).to_contain_text("all welcome")
        expect(directory.first.get_by_role("button", name="Join #town")).to_be_focused()
        people.screenshots("directory")
        mallory.page.keyboard.press("Escape")
        expect(mallory.page.locator("#rooms-panel")).to_be_hidden()
        expect(mallory.page.get_by_role("button", name="Browse rooms")).to_be_focused()

        # She tries the private room by name: refused, said in the notice area.
        join = mallory.page.locator("#join-input")
        join.fill("secret")
        join.press("Enter")
        expect(mallory.page.locator("#notice")).to_contain_text("private_room")
        expect(mallory.page.locator("#title")).to_have_text("#lobby")
        expect(room_button(mallory, "secret")).to_have_count(0)

        # A name taken: room_exists, in the notice area.
        mallory.page.get_by_role("button", name="New room").click()
        mallory.page.locator("#create-name").fill("secret")
        mallory.page.get_by_role("button", name="Create room").click()
        expect(mallory.page.locator("#notice")).to_contain_text("room_exists")
        mallory.page.locator("#rooms-panel-close").click()

        # Alice invites bob from the People column; bob's page offers to join; he sees history.
        invite = alice.page.locator("#invite-input")
        invite.fill("bob")
        invite.press("Enter")
        assert alice.wait_until(lambda: sent(alice, "invite") or None, "the invite") == [
            {"action": "invite", "room": "secret", "user": "bob"}
        ]
        invitation = bob.page.locator("#invitations .invitation")
        expect(invitation).to_contain_text("alice invited you to #secret")
        people.screenshots("invited")
        invitation.get_by_role("button", name="Join #secret").click()
        expect(bob.page.locator("#title")).to_have_text("#secret")
        bob.wait_for_texts(["the plan is in the drawer"])
        expect(invitation).to_have_count(0)
        alice.send("welcome, bob")
        bob.wait_for_texts(["the plan is in the drawer", "welcome, bob"])
        expect(alice.page.locator("#member-list")).to_contain_text("bob")

        # Mallory's page never received anything of the room's but the refusals.
        errors = [f.get("code") for f in mallory.frames_of("error")]
        assert errors == ["private_room", "room_exists"]
        about = [f for f in mallory.frames if "secret" in json.dumps(f) and f["type"] != "error"]
        assert about == [], about
        assert "drawer" not in json.dumps(mallory.frames)


def test_moderation_shows_in_the_room_and_a_kicked_member_loses_it(people: People) -> None:
    alice = people.open("alice")
    create_room(alice, "team", "the team")
    bob = people.open("bob", rooms=("team",), active="team")
    mallory = people.open("mallory", rooms=("team",), active="team")
    expect(alice.page.locator("#member-list li.member")).to_have_count(3)
    # Nobody has a menu on their own name. (Bob's page has one on alice's: it never saw her
    # roomCreated, so it cannot know she owns the room; the server would answer forbidden.)
    expect(alice.page.get_by_role("button", name="Actions for alice")).to_have_count(0)
    expect(bob.page.get_by_role("button", name="Actions for bob")).to_have_count(0)
    expect(alice.page.locator("#member-list li.member", has_text="alice")).to_contain_text("owner")

    # Alice makes bob a moderator; everyone in the room sees it.
    open_member_menu(alice, "bob").get_by_role("menuitem", name="Make moderator").click()
    expect(system_lines(mallory).last).to_have_text("alice made bob a moderator")
    expect(system_lines(bob).last).to_have_text("alice made bob a moderator")
    expect(alice.page.get_by_role("button", name="Actions for bob")).to_be_focused()
    expect(alice.page.locator("#member-list li.member", has_text="bob")).to_contain_text("mod")

    # Bob mutes mallory for 10 minutes: a line in the room; her composer says so.
    open_member_menu(bob, "mallory").get_by_role("menuitem", name="Mute 10 min").click()
    expect(system_lines(alice).last).to_have_text("bob muted mallory for 10 minutes")
    expect(system_lines(mallory).last).to_have_text("bob muted mallory for 10 minutes")
    composer = mallory.page.locator("#message-input")
    expect(composer).to_be_disabled()
    expect(composer).to_have_attribute("placeholder", re.compile(r"^You are muted in #team until "))
    # Lobby is not muted.
    room_button(mallory, "lobby").click()
    expect(composer).to_be_enabled()
    room_button(mallory, "team").click()
    expect(composer).to_be_disabled()

    # Bob kicks her, with the keyboard: the menu opens on its first item; Down, Down, Enter.
    toggle = bob.page.get_by_role("button", name="Actions for mallory")
    toggle.focus()
    toggle.press("Enter")
    menu = bob.page.get_by_role("menu", name="Actions for mallory")
    expect(menu.get_by_role("menuitem", name="Make moderator")).to_be_focused()
    people.screenshots("menu")
    bob.page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Unmute")).to_be_focused()
    bob.page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Kick")).to_be_focused()
    bob.page.keyboard.press("Enter")
    expect(system_lines(alice).last).to_have_text("bob kicked mallory")
    expect(alice.page.locator("#member-list li.member")).to_have_count(2)

    # Mallory's page drops the room, says why, and falls back to the lobby.
    expect(room_button(mallory, "team")).to_have_count(0)
    expect(mallory.page.locator("#title")).to_have_text("#lobby")
    expect(mallory.page.locator("#notice")).to_contain_text("bob removed you from #team")
    expect(composer).to_be_enabled()
    kicked = mallory.frames_of("kicked")
    assert [(f["room"], f["user"], f["by"]) for f in kicked] == [("team", "mallory", "bob")]
    # What is said in the room now does not reach her.
    alice.send("after mallory left")
    bob.wait_for_texts(["after mallory left"])
    assert "after mallory left" not in json.dumps(mallory.frames)

    # A reload keeps her out (the saved rooms lost it too).
    mallory.page.reload()
    mallory.wait_connected()
    expect(room_button(mallory, "lobby")).to_have_count(1)
    expect(room_button(mallory, "team")).to_have_count(0)

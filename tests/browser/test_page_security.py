"""The chat page's security headers as chromium enforces them: served by ``wschat serve``, the
page runs only its own scripts and styles (an injected inline script, handler attribute or
style does not apply, and the page reports each as a CSP violation), ``eval`` is refused, no
other page may frame it, and markup in a message stays text."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from tests.browser.conftest import TIMEOUT_MS, ChatServer, People, Person, say

pytestmark = pytest.mark.browser

# Registered before the page's own scripts: every CSP violation the document reports.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => window.__violations.push({
    directive: event.effectiveDirective, blocked: event.blockedURI, sample: event.sample,
}));
"""


def recording(person: Person) -> Any:
    """Reload ``person``'s page with violations recorded; the navigation's response."""
    person.context.add_init_script(script=RECORD_VIOLATIONS)
    response = person.page.reload()
    person.wait_connected()
    return response


def violations(person: Person) -> list[dict[str, str]]:
    return list(person.page.evaluate("window.__violations"))


def test_the_served_page_carries_its_security_headers_and_breaks_none_of_them(
    people: People, chat_server: ChatServer
) -> None:
    alice = people.open("alice")
    response = recording(alice)

    headers = response.all_headers()
    policy = headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"connect-src 'self' ws://127.0.0.1:{chat_server.port}",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in policy, policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["permissions-policy"] == "camera=(), microphone=(), geolocation=()"
    assert headers["cache-control"] == "no-cache"
    assert "strict-transport-security" not in headers  # plain http

    # The page works under its own policy: it chats, and nothing it does is refused.
    alice.send("hello under the policy")
    alice.wait_for_texts(["hello under the policy"])
    expect(alice.page.locator("#status")).to_have_text("connected")
    assert violations(alice) == []
    config = alice.page.request.get(chat_server.page_url + "config.json")
    assert config.headers["cache-control"] == "no-store"
    assert config.json() == {"websocketUrl": chat_server.websocket_url, "signIn": None}


def test_injected_inline_script_handler_and_style_do_not_apply_and_are_reported(
    people: People,
) -> None:
    alice = people.open("alice")
    recording(alice)
    page = alice.page

    page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.__injected = true';
            document.body.append(script);
            document.body.insertAdjacentHTML('beforeend',
                '<img id="probe" src="data:," onerror="window.__handler = true">'
                + '<p id="styled" style="color: rgb(255, 0, 0)">styled</p>');
            const style = document.createElement('style');
            style.textContent = '#title { color: rgb(0, 255, 0) !important }';
            document.head.append(style);
        }"""
    )
    page.wait_for_function(
        """() => ['script-src-elem', 'script-src-attr', 'style-src-attr', 'style-src-elem']
            .every((d) => window.__violations.some((v) => v.directive === d))""",
        timeout=TIMEOUT_MS,
    )
    assert page.evaluate("window.__injected") is None
    assert page.evaluate("window.__handler") is None
    assert page.locator("#styled").evaluate("(el) => getComputedStyle(el).color") != (
        "rgb(255, 0, 0)"
    )
    assert page.locator("#title").evaluate("(el) => getComputedStyle(el).color") != (
        "rgb(0, 255, 0)"
    )
    # No 'unsafe-eval' either: a string handed to a timer does not become code.
    page.evaluate("() => setTimeout('window.__evaluated = 1', 0)")
    page.wait_for_function(
        "() => window.__violations.some((v) => v.blocked === 'eval')", timeout=TIMEOUT_MS
    )
    assert page.evaluate("window.__evaluated") is None
    # Connecting anywhere but the stage is refused too.
    page.evaluate("() => { try { new WebSocket('ws://127.0.0.2:9/elsewhere'); } catch {} }")
    page.wait_for_function(
        "() => window.__violations.some((v) => v.directive === 'connect-src')",
        timeout=TIMEOUT_MS,
    )
    # The page itself carries on.
    alice.send("still here")
    alice.wait_for_texts(["still here"])


def test_no_other_page_may_frame_the_chat(people: People, chat_server: ChatServer) -> None:
    alice = people.open("alice")
    framing = alice.context.new_page()
    # set_content waits for the load event, which waits for the frame's own load.
    framing.set_content(f'<iframe id="chat" src="{chat_server.page_url}"></iframe>')
    # Refused by frame-ancestors: the frame holds chromium's error page, not the chat.
    assert [frame.url for frame in framing.frames[1:]] == ["chrome-error://chromewebdata/"]
    expect(framing.frame_locator("#chat").locator("#message-input")).to_have_count(0)
    framing.close()


def test_markup_in_a_message_renders_as_text_with_nothing_to_refuse(
    people: People, chat_server: ChatServer
) -> None:
    alice = people.open("alice")
    recording(alice)
    payloads = [
        '<img src=x onerror="window.__xss = 1">',
        "<script>window.__xss = 2</script>",
        '<b style="color: red">bold</b><a href="javascript:window.__xss=3">link</a>',
    ]
    with chat_server.person("mallory") as mallory:
        for payload in payloads:
            say(mallory, payload)
    alice.wait_for_texts(payloads)

    messages = alice.page.locator("#message-list")
    assert messages.locator("img, script, b, a").count() == 0
    expect(messages.locator(".text").nth(2)).to_have_text(payloads[2])
    assert alice.page.evaluate("window.__xss") is None
    # Never markup, so not even a refused handler or style: no violation at all.
    assert violations(alice) == []
    assert alice.dialogs == []

"""Browser fixtures: ``wschat serve`` as a process that can be killed and started again on the
same port and data directory, and Debian's chromium driven through Playwright's sync API.

``ChatServer.person`` is someone at the other end with a plain WebSocket client; ``say`` sends
a message from one and waits until it is stored.

Each simulated person gets a browser context of their own (their own localStorage, so their own
saved name and rooms) and one page. A ``Person`` records what a person would notice and what
the page received: every WebSocket frame, every dialog, every uncaught script error. When a
test ends, each person's page is saved to ``artifacts/screenshots/<test>-<person>.png``.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/test-deps.sh`` installs it); when it
is missing the tests fail saying so, rather than skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.integration.conftest import REPO, ServeProcess, free_port, recv_until
from websockets.sync.client import ClientConnection, connect

from wschat.cli import OWN_ROUTES

CHROMIUM = Path(os.environ.get("WSCHAT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
# Every Playwright wait (locators, expect, wait_for_function) is bounded by this.
TIMEOUT_MS = 5_000
# Reconnecting waits out the page's backoff (250 ms doubling, with jitter) after a restart.
RECONNECT_TIMEOUT_MS = 15_000


T = TypeVar("T")


class ChatServer:
    """``wschat serve`` with wschat's own routes on one port and one data directory, so it can be
    stopped (gracefully or not) and started again where clients expect it.

    The routes are ``cli.OWN_ROUTES`` with ``--code-dir src``: the handlers the project's
    template binds, without depending on the template's state.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.port = free_port()
        self.runs = 0
        self.process: ServeProcess | None = None

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/local"

    def args(self) -> list[str]:
        args = ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        args += ["--code-dir", str(REPO / "src"), "--log-level", "WARNING"]
        for route in OWN_ROUTES:
            args += ["--route", route]
        return args

    def start(self) -> ChatServer:
        assert self.process is None or self.process.process.poll() is not None, "still running"
        self.runs += 1
        run_dir = self.directory / f"run{self.runs}"  # each run keeps its own stderr
        run_dir.mkdir(parents=True, exist_ok=True)
        # ServeProcess passes --port 0 first; the --port here comes later and wins.
        self.process = ServeProcess(self.args(), run_dir, cwd=REPO).wait_ready()
        assert self.process.websocket_url == self.websocket_url, self.process.stdout_lines
        return self

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Stop the gateway with ``signum`` (SIGKILL: no goodbye to anyone); its exit code."""
        assert self.process is not None
        process = self.process
        if signum == signal.SIGKILL:
            process.process.kill()
            code = process.process.wait(10)
        else:
            code = process.signal(signum)
        process.close()
        return code

    def close(self) -> None:
        if self.process is not None:
            self.process.close()

    @contextlib.contextmanager
    def person(self, name: str, rooms: str = "") -> Iterator[ClientConnection]:
        """Someone at the other end: a plain WebSocket client (``rooms`` comma separated)."""
        query = f"?name={name}" + (f"&room={rooms}" if rooms else "")
        # max_queue=None: frames a test never reads must not stall the reader (and the close).
        with connect(
            self.websocket_url + query,
            open_timeout=5,
            close_timeout=2,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            yield ws

    def connection_count(self) -> int:
        """Connections the store still holds (each removed by its ``$disconnect``)."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            return int(db.execute('SELECT count(*) FROM "websocket-connections"').fetchone()[0])

    def forget_everything(self, timeout: float = 5.0) -> None:
        """Once every client has gone (their ``$disconnect`` done), empty every table of the
        store: no rooms, members or messages are left for the next test."""
        deadline = time.monotonic() + timeout
        while self.connection_count():
            if time.monotonic() > deadline:
                pytest.fail(f"connections still stored {timeout}s after every page closed")
            time.sleep(0.05)
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for (table,) in tables:
                db.execute(f'DELETE FROM "{table}"')
            db.commit()

    @property
    def database(self) -> Path:
        return self.data_dir / "wschat.sqlite3"


def say(ws: ClientConnection, text: str, room: str = "lobby") -> dict[str, Any]:
    """Send ``text`` to ``room`` from ``ws``; return the ack (the message is stored)."""
    ws.send(json.dumps({"action": "sendMessage", "room": room, "message": text}))
    return dict(recv_until(ws, lambda event: event.get("type") == "ack"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "own_gateway: the test gets a gateway of its own (e.g. to kill it)"
    )


@pytest.fixture(scope="session")
def shared_chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path_factory.mktemp("serve")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def chat_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChatServer]:
    """A running ``wschat serve`` with the chat's default limits and an empty store.

    Tests share one gateway (starting one costs seconds: a process per function), emptied after
    each test; a test marked ``own_gateway`` gets one to itself, to stop and start again.
    """
    if request.node.get_closest_marker("own_gateway"):
        server = ChatServer(tmp_path / "serve").start()
        try:
            yield server
        finally:
            server.close()
        return
    shared: ChatServer = request.getfixturevalue("shared_chat_server")
    yield shared
    shared.forget_everything()


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no browser: {CHROMIUM} is missing. The browser tests drive Debian's chromium; "
            "install it with `apt-get install chromium` (scripts/test-deps.sh does, as root)",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


MESSAGES_JS = """() => [...document.querySelectorAll('#message-list li.message')]
    .filter((li) => li.dataset.id)
    .map((li) => ({
        id: li.dataset.id,
        from: li.querySelector('.from').textContent,
        text: li.querySelector('.text').textContent,
    }))"""


@dataclass
class Person:
    """One person at one browser page, and what their page received."""

    name: str
    context: Any
    page: Any
    frames: list[dict[str, Any]] = field(default_factory=list)  # server -> page, parsed
    sent: list[dict[str, Any]] = field(default_factory=list)  # page -> server, parsed
    sockets: list[str] = field(default_factory=list)  # URLs of the WebSockets it opened
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    tab: str = ""  # a second tab of the same person (People.another_tab) names itself here

    def watch(self) -> None:
        def on_websocket(ws: Any) -> None:
            self.sockets.append(ws.url)
            ws.on("framereceived", lambda payload: self.frames.append(_parse(payload)))
            ws.on("framesent", lambda payload: self.sent.append(_parse(payload)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        self.page.on("websocket", on_websocket)
        self.page.on("dialog", on_dialog)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def open(self, url: str) -> Person:
        self.page.goto(url)
        return self

    def wait_connected(self, timeout: int = TIMEOUT_MS) -> Person:
        """Connected and greeted: the server's ``hello`` set the page's name (and rooms)."""
        self.page.wait_for_function(
            """(name) => window.wschat && window.wschat.connection.isOpen
                && window.wschat.connection.name === name
                && document.getElementById('name-input').value === name""",
            arg=self.name,
            timeout=timeout,
        )
        return self

    def send(self, text: str) -> None:
        """Type ``text`` into the composer and press Enter, as a person does."""
        box = self.page.locator("#message-input")
        box.fill(text)
        box.press("Enter")

    def messages(self) -> list[dict[str, str]]:
        """The messages of the open conversation, top to bottom (sent ones, not pending)."""
        return list(self.page.evaluate(MESSAGES_JS))

    def texts(self) -> list[str]:
        return [message["text"] for message in self.messages()]

    def wait_for_texts(self, expected: list[str], timeout: int = TIMEOUT_MS) -> list[str]:
        """Wait until the open conversation shows exactly ``expected``, in order; on timeout,
        fail showing what it did show."""
        try:
            self.page.wait_for_function(
                f"(expected) => JSON.stringify(({MESSAGES_JS})().map((m) => m.text))"
                " === JSON.stringify(expected)",
                arg=expected,
                timeout=timeout,
            )
        except Exception as exc:
            if type(exc).__name__ != "TimeoutError":
                raise
            pytest.fail(f"{self.name}'s page shows {self.texts()!r}, expected {expected!r}")
        return self.texts()

    def wait_until(
        self, predicate: Callable[[], T | None], what: str, timeout: int = TIMEOUT_MS
    ) -> T:
        """Poll ``predicate`` (about frames this page received) until it returns a value;
        Playwright delivers the page's events to Python while it waits."""
        deadline = time.monotonic() + timeout / 1000
        while (value := predicate()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: timed out after {timeout} ms waiting for {what}")
            self.page.wait_for_timeout(50)
        return value

    def frames_of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame.get("type") == kind]

    def screenshot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{label}-{self.name}{'-' + self.tab if self.tab else ''}.png"
        self.page.screenshot(path=str(path))
        return path


def _parse(payload: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {"type": "<not json>", "raw": str(payload)}
    return value if isinstance(value, dict) else {"type": "<not an object>", "raw": value}


class People:
    """Opens people's pages, each in a fresh browser context."""

    def __init__(self, browser: Any, server: ChatServer, label: str) -> None:
        self.browser = browser
        self.server = server
        self.label = label
        self.people: list[Person] = []

    def open(
        self,
        name: str,
        *,
        rooms: tuple[str, ...] = (),
        active: str | None = None,
        url: str | None = None,
        viewport: tuple[int, int] = (1000, 640),
        clock: bool = False,
        connect: bool = True,
    ) -> Person:
        """``name``'s page, as if they had used the chat before: their name and rooms saved in
        localStorage (as the page saves them), ``active`` the conversation they left open.
        ``clock`` installs Playwright's clock, so a test can stop the page's timers."""
        context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(TIMEOUT_MS)
        saved = {"name": name, "rooms": ["lobby", *rooms], "active": active or "lobby"}
        context.add_init_script(script=_saved_state_script(saved))
        if clock:
            context.clock.install(time=time.time())
        person = Person(name, context, context.new_page())
        person.watch()
        self.people.append(person)
        person.open(url or self.server.page_url)
        if connect:
            person.wait_connected()
        return person

    def another_tab(self, person: Person, tab: str = "tab2") -> Person:
        """A second page of ``person``'s: the same browser context (their localStorage, so the
        same saved name and rooms), as a second tab of theirs. Its screenshot is labelled
        ``<name>-<tab>``."""
        other = Person(person.name, person.context, person.context.new_page(), tab=tab)
        other.watch()
        self.people.append(other)
        other.open(self.server.page_url)
        other.wait_connected()
        return other

    def screenshots(self, moment: str = "") -> None:
        """Save every page as it is now (``moment`` names a mid-test one)."""
        label = f"{self.label}-{moment}" if moment else self.label
        for person in self.people:
            try:
                person.screenshot(label)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"no screenshot of {person.name}: {exc}")

    def close(self) -> None:
        for context in {id(person.context): person.context for person in self.people}.values():
            context.close()


def _saved_state_script(saved: dict[str, Any]) -> str:
    """An init script that stores ``saved`` the way app.js does, unless the page already
    saved something (a reload keeps what the person did)."""
    return (
        "if (localStorage.getItem('wschat.name') === null) {"
        f" const saved = {json.dumps(saved)};"
        " for (const [key, value] of Object.entries(saved))"
        " localStorage.setItem(`wschat.${key}`, JSON.stringify(value)); }"
    )


@pytest.fixture
def people(
    browser: Any, chat_server: ChatServer, request: pytest.FixtureRequest
) -> Iterator[People]:
    """Opens pages on ``chat_server``; screenshots each at the end; no page may have thrown."""
    with people_on(browser, chat_server, request) as crowd:
        yield crowd


@contextlib.contextmanager
def people_on(browser: Any, server: Any, request: pytest.FixtureRequest) -> Iterator[People]:
    """People's pages on ``server`` (anything with a ``page_url``), named after the test:
    screenshots at the end, and no page may have thrown."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    crowd = People(browser, server, label)
    try:
        yield crowd
        crowd.screenshots()
        errors = {p.name: p.page_errors for p in crowd.people if p.page_errors}
        assert not errors, f"uncaught errors in the page: {errors}"
    finally:
        crowd.close()

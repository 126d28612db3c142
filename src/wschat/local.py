"""What ``wschat serve`` adds to the generic gateway when it serves this chat's own functions.

The gateway (``wschat.gateway``) runs any WebSocket Lambda app and knows nothing of the chat.
When the API it serves is the chat (its handlers are ``wschat.handlers.*``: this project's
template, or the built-in routes of an installed ``wschat``), the command also gives the
functions the embedded store's settings, forgets connection records a killed run left behind,
and mounts the chat page on ``/``. Another project's template gets none of that.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from wschat.gateway import http
from wschat.gateway.server import Gateway
from wschat.gateway.spec import ApiSpec
from wschat.page import WEB_DIR, ChatPage, SignInSettings

log = logging.getLogger("wschat.gateway")

HANDLERS = "wschat.handlers."


def serves_the_chat(api: ApiSpec) -> bool:
    return any(function.handler.startswith(HANDLERS) for function in api.functions)


def store_environment(store: str, data_dir: Path) -> dict[str, str]:
    """The chat functions' store settings: the embedded SQLite file in the data dir (whose
    connection records of an earlier run are forgotten first), or DynamoDB."""
    env = {"WSCHAT_STORE": store}
    if store == "sqlite":
        path = data_dir / "wschat.sqlite3"
        env["WSCHAT_SQLITE_PATH"] = str(path)
        _forget_stale_connections(path)
    return env


def _forget_stale_connections(path: Path) -> None:
    """No connection outlives the gateway: records a killed one left behind are stale."""
    from wschat.storage import StoreError
    from wschat.storage.sqlite import SqliteStore

    try:
        store = SqliteStore(path)
        stale = store.remove_all_connections()
        store.close()
    except StoreError as exc:
        log.warning("could not clear old connections: %s", exc)
        return
    if stale:
        log.info("forgot %d connections of a previous run", stale)


def page_sign_in(api: ApiSpec) -> SignInSettings | None:
    """The page's sign-in settings: those of the first function (in the template's order) whose
    environment names an issuer, as the template's parameters resolved it; None without one.
    Raises ``AuthMisconfigured`` for settings that cannot work."""
    for function in api.functions:
        settings = SignInSettings.from_env(function.environment)
        if settings is not None:
            return settings
    return None


class PageRoute:
    """The chat page (``/``, ``/config.json``, its static files) as a handler of the
    gateway's HTTP table. The page is made at its first request: it names the stage's
    WebSocket URL, known once the port is."""

    def __init__(
        self, gateway: Gateway, sign_in: SignInSettings | None, web_dir: Path = WEB_DIR
    ) -> None:
        self.gateway = gateway
        self.sign_in = sign_in
        self.web_dir = web_dir
        self._page: ChatPage | None = None

    @property
    def page(self) -> ChatPage:
        if self._page is None:
            self._page = ChatPage(
                self.gateway.websocket_url,
                self.sign_in,
                https=self.gateway.tls,
                web_dir=self.web_dir,
            )
        return self._page

    async def __call__(self, request: http.Request, peer: str) -> bytes:
        page = self.page
        # In a thread: config.json may wait on the issuer's discovery document.
        answer = await asyncio.to_thread(page.respond, request.method, request.path)
        headers = dict(answer.headers)
        content_type = headers.pop("Content-Type")
        return http.response(answer.status, answer.body, content_type=content_type, headers=headers)


def mount_page(gateway: Gateway, sign_in: SignInSettings | None) -> None:
    gateway.http.mount("/", PageRoute(gateway, sign_in))

"""Chat gateways for the end-to-end chat tests (tests/integration/test_chat_*.py).

A chat gateway is the local Gateway running wschat's own handlers in-process on 127.0.0.1, port
0, with the SQLite store in a temporary data directory, as ``wschat serve --data-dir`` runs them.
Its API is the project's template.yaml once that routes every action of docs/protocol.md; until
then it is ``wschat serve``'s own routes (``cli.OWN_ROUTES``), which bind the same handlers.

``chat_gateway(data_dir, ...)`` starts one whose functions' environment a test chooses (a rate
limit, an auth secret, a store some functions cannot open). The ``chat`` fixture hands a test the
session's shared gateway; after the test it closes the test's clients, waits until every
``$disconnect`` has run and empties the store, so each test starts with nobody connected and no
history. ``auth_chat`` does the same on a gateway with token auth on, and
``start_chat_gateway(...)`` starts gateways of a test's own (stopped after it).

Test modules load these fixtures with ``pytest_plugins`` and import this module only for type
checking, so that pytest imports it first and rewrites its asserts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import (
    PROJECT_TEMPLATE,
    REPO,
    TIMEOUT,
    RunningGateway,
    running_gateway,
    wait_for,
)
from tests.support.chat_client import ChatClient
from websockets.exceptions import InvalidStatus

from wschat.chat import registry
from wschat.cli import OWN_ROUTES
from wschat.gateway.server import GatewayConfig
from wschat.gateway.spec import ApiSpec, FunctionSpec
from wschat.gateway.template import api_from_routes, load_api
from wschat.storage.sqlite import SqliteStore

# The shared gateway lets one connection send far more than the default 20-frame burst, so tests
# that send 50 messages measure the chat, not the rate limit (tests of the limit lower it).
RELAXED_RATE_LIMIT = {"WSCHAT_RATE_BURST": "1000", "WSCHAT_RATE_PER_SECOND": "1000"}
# The tables of the SQLite store (src/wschat/storage/sqlite.py), emptied between tests.
STORE_TABLES = (
    "chat-messages",
    "chat-reactions",
    "chat-rooms",
    "chat-room-users",
    "chat-members",
    "websocket-connections",
)
AUTH_SECRET = "end-to-end-test-secret-at-least-32-bytes"


def chat_api(parameters: Mapping[str, str] | None = None) -> ApiSpec:
    """The project's template.yaml (with ``parameters``) if it routes every chat action, else
    ``cli.OWN_ROUTES``."""
    api = load_api(PROJECT_TEMPLATE, parameters=dict(parameters or {}))
    if set(registry.NAMES) <= api.routes.keys():
        return api
    return api_from_routes(
        OWN_ROUTES,
        environment={"WEBSOCKET_TABLE": "websocket-connections"},
        code_dir=REPO / "src",
        timeout=10.0,
    )


def _with_store_paths(api: ApiSpec, good: Path, bad: Path, bad_routes: Collection[str]) -> ApiSpec:
    """``api`` whose functions use the SQLite file ``good``, except the functions behind
    ``bad_routes``, which get ``bad`` (set per function: the gateway's function_env would win)."""
    unknown = set(bad_routes) - api.routes.keys()
    assert not unknown, f"no such routes: {unknown}"
    broken = {api.routes[key].function.name for key in bad_routes}
    functions: dict[str, FunctionSpec] = {}
    for function in api.functions:
        path = bad if function.name in broken else good
        functions[function.name] = dataclasses.replace(
            function, environment={**function.environment, "WSCHAT_SQLITE_PATH": str(path)}
        )
    routes = {
        key: dataclasses.replace(route, function=functions[route.function.name])
        for key, route in api.routes.items()
    }
    event_sources = [
        dataclasses.replace(source, function=functions[source.function.name])
        for source in api.event_sources
    ]
    return dataclasses.replace(api, routes=routes, event_sources=event_sources)


@dataclass
class ChatGateway:
    """A running chat gateway, its functions' chat settings and the clients a test opened."""

    running: RunningGateway
    database: Path
    env: dict[str, str]
    clients: list[ChatClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.running.url

    def client(
        self,
        name: str | None = None,
        *,
        rooms: Iterable[str] = (),
        token: str | None = None,
    ) -> ChatClient:
        """A connected client (``?name=&room=&token=``); closed when the test ends."""
        client = ChatClient.connect(self.url, name=name, rooms=rooms, token=token)
        self.clients.append(client)
        return client

    def refused_status(
        self, name: str | None = None, *, rooms: Iterable[str] = (), token: str | None = None
    ) -> int:
        """The HTTP status of a handshake the gateway refuses (fails if it is accepted)."""
        with pytest.raises(InvalidStatus) as refused:
            self.clients.append(ChatClient.connect(self.url, name=name, rooms=rooms, token=token))
        return refused.value.response.status_code

    def open_connection_ids(self) -> set[str]:
        """The connections the gateway holds open (its own view, not the store's)."""
        gateway = self.running.gateway
        return self.running.call(lambda: set(gateway.connections))

    def stored_connection_ids(self) -> set[str]:
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            rows = db.execute('SELECT connectionId FROM "websocket-connections"').fetchall()
        return {row[0] for row in rows}

    def close_clients(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()

    def wait_until_nobody_is_connected(self, timeout: float = TIMEOUT) -> None:
        """Every connection closed and its ``$disconnect`` done: no record left in the store."""
        wait_for(
            lambda: not self.open_connection_ids() and not self.stored_connection_ids(),
            timeout,
            "every connection to close and leave the store",
        )

    def wait_until_nobody_is_connected_to_the_gateway(self, timeout: float = TIMEOUT) -> None:
        """Every connection closed, as the gateway sees it (any store)."""
        wait_for(lambda: not self.open_connection_ids(), timeout, "every connection to close")

    def forget_everything(self) -> None:
        """Empty the store: no connections, memberships, rooms or messages."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db:
            for table in STORE_TABLES:
                db.execute(f'DELETE FROM "{table}"')
            db.commit()

    def stop(self) -> None:
        """Stop the gateway as Ctrl+C stops ``wschat serve``: it closes every connection (1001)
        and runs their ``$disconnect`` before its functions stop."""
        self.running.stop()
        self.close_clients()


@contextlib.contextmanager
def chat_gateway(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    unopenable_store_for: Collection[str] = (),
) -> Iterator[ChatGateway]:
    """A chat gateway on ``data_dir/wschat.sqlite3`` (its tables made now: a test may look
    before any function opened it); the template gets ``parameters``; ``env`` is added to
    every function's environment, and the functions behind the routes ``unopenable_store_for``
    get a store path SQLite cannot open (its directory is a file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / "wschat.sqlite3"
    SqliteStore(database).close()
    not_a_directory = data_dir / "not-a-directory"
    not_a_directory.touch()
    api = _with_store_paths(
        chat_api(parameters), database, not_a_directory / "wschat.sqlite3", unopenable_store_for
    )
    chat_env = {"WSCHAT_STORE": "sqlite", **RELAXED_RATE_LIMIT, **(env or {})}
    config = GatewayConfig(api=api, function_env=chat_env, shutdown_timeout=5.0)
    with running_gateway(config) as running:
        gateway = ChatGateway(running, database, chat_env)
        try:
            yield gateway
        finally:
            gateway.close_clients()


@contextlib.contextmanager
def _each_test_alone(gateway: ChatGateway) -> Iterator[ChatGateway]:
    """``gateway`` for one test: afterwards its clients are closed and the store emptied."""
    try:
        yield gateway
    finally:
        try:
            gateway.close_clients()
            gateway.wait_until_nobody_is_connected()
        finally:
            gateway.forget_everything()


@pytest.fixture(scope="session")
def shared_chat_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatGateway]:
    with chat_gateway(tmp_path_factory.mktemp("chat")) as gateway:
        yield gateway


@pytest.fixture
def chat(shared_chat_gateway: ChatGateway) -> Iterator[ChatGateway]:
    """The shared chat gateway, with nobody connected and an empty store."""
    with _each_test_alone(shared_chat_gateway) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def auth_chat_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatGateway]:
    # Sign-in on as template.yaml has it: the AuthSecret parameter puts the authorizer on
    # $connect and the secret in the functions' environment.
    parameters = {"AuthSecret": AUTH_SECRET}
    with chat_gateway(tmp_path_factory.mktemp("auth-chat"), parameters=parameters) as gateway:
        yield gateway


@pytest.fixture
def auth_chat(auth_chat_gateway: ChatGateway) -> Iterator[ChatGateway]:
    """A chat gateway with token auth on (the template's AuthSecret), to itself."""
    with _each_test_alone(auth_chat_gateway) as gateway:
        yield gateway


@pytest.fixture
def start_chat_gateway(tmp_path: Path) -> Iterator[Callable[..., ChatGateway]]:
    """Starts gateways of the test's own, all stopped after it:
    ``start_chat_gateway(data_dir=None, env=..., unopenable_store_for=...)``."""
    with contextlib.ExitStack() as stack:

        def start(data_dir: Path | None = None, **options: Any) -> ChatGateway:
            return stack.enter_context(chat_gateway(data_dir or tmp_path / "data", **options))

        yield start


@contextlib.contextmanager
def dynamodb_chat_gateway(data_dir: Path, moto_endpoint: str, suffix: str) -> Iterator[ChatGateway]:
    """A chat gateway whose functions store in DynamoDB: tables of their own (``suffix``) on
    the session's moto server, over HTTP, as on AWS. Its ``database`` is unused: a test on it
    keeps to rooms and names of its own instead of emptying the store."""
    import boto3

    from wschat.storage.base import TableNames
    from wschat.storage.dynamodb import ensure_tables

    tables = TableNames(
        connections=f"websocket-connections-{suffix}",
        members=f"chat-members-{suffix}",
        messages=f"chat-messages-{suffix}",
        rooms=f"chat-rooms-{suffix}",
        room_users=f"chat-room-users-{suffix}",
    )
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
    }
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name=aws["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ensure_tables(client, tables)
    names = {variable: getattr(tables, field) for field, variable in TableNames.ENV.items()}
    chat_env = {"WSCHAT_STORE": "dynamodb", **RELAXED_RATE_LIMIT, **aws, **names}
    data_dir.mkdir(parents=True, exist_ok=True)
    config = GatewayConfig(api=chat_api(), function_env=chat_env, shutdown_timeout=5.0)
    with running_gateway(config) as running:
        gateway = ChatGateway(running, data_dir / "unused.sqlite3", chat_env)
        try:
            yield gateway
        finally:
            gateway.close_clients()


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def any_store_chat_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatGateway]:
    """The chat on each store in turn (SQLite; DynamoDB on moto_server). Tests keep to rooms
    and names of their own (``unique``): the DynamoDB tables are not emptied between tests."""
    directory = tmp_path_factory.mktemp(f"chat-{request.param}")
    if request.param == "sqlite":
        with chat_gateway(directory) as gateway:
            yield gateway
        return
    moto_endpoint = request.getfixturevalue("moto_endpoint")
    suffix = directory.name.replace("_", "-")[-24:]
    with dynamodb_chat_gateway(directory, moto_endpoint, suffix) as gateway:
        yield gateway


@pytest.fixture
def any_store_chat(any_store_chat_gateway: ChatGateway) -> Iterator[ChatGateway]:
    try:
        yield any_store_chat_gateway
    finally:
        any_store_chat_gateway.close_clients()
        any_store_chat_gateway.wait_until_nobody_is_connected_to_the_gateway()


_unique_numbers = itertools.count()


@pytest.fixture
def unique() -> str:
    """A suffix for this test's rooms and names: on DynamoDB the tables are shared by the
    module's tests, so each keeps to names of its own."""
    return f"u{next(_unique_numbers)}"

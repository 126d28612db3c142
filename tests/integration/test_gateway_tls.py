"""``--tls``: wss:// and https:// signed by a local CA, which clients and functions trust.

The third-party app builds its management client from the event as ``https://{domainName}/
{stage}``, as it would on AWS; that works locally only because the gateway serves https and
hands its functions the CA as ``AWS_CA_BUNDLE``.

The clients here are websockets' asyncio ones: the sync client reads in one thread while it
writes in another, and an ``ssl.SSLSocket`` is not safe for that; now and then the handshake
request is lost under TLS 1.3 (seen as a handshake timeout, the gateway never getting the
request). asyncio's TLS runs in one thread.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from tests.integration.conftest import (
    APPS,
    TIMEOUT,
    RunningGateway,
    inspector_config,
    running_gateway,
)
from websockets.asyncio.client import ClientConnection, connect

from wschat.gateway import tls
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import load_api

pytestmark = pytest.mark.integration


def _with_tls(config: GatewayConfig, directory: Path) -> GatewayConfig:
    files = tls.ensure_certificates(directory / "tls")
    config.ssl_context = files.server_context()
    config.ca_bundle = files.ca_cert
    return config


@pytest.fixture(scope="module")
def tls_inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("tls-inspector")
    events = directory / "events.jsonl"
    with running_gateway(_with_tls(inspector_config(events), directory), events) as running:
        yield running


def wss(gateway: RunningGateway, url: str | None = None, **kwargs: object) -> connect:
    """An asyncio client trusting only the gateway's local CA (unless ``ssl`` is given)."""
    options: dict[str, object] = {
        "ssl": gateway.client_ssl,
        "open_timeout": TIMEOUT,
        "close_timeout": 2,
        "proxy": None,
        "compression": None,
    }
    options.update(kwargs)
    return connect(url or gateway.url, **options)  # type: ignore[arg-type]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def test_urls_are_wss_and_https(tls_inspector: RunningGateway) -> None:
    assert tls_inspector.url.startswith("wss://127.0.0.1:")
    assert tls_inspector.management_url.startswith("https://127.0.0.1:")


def test_wss_with_the_generated_ca_verifies(tls_inspector: RunningGateway) -> None:
    async def scenario() -> None:
        async with wss(tls_inspector) as ws:
            await ws.send(json.dumps({"action": "echo"}))
            reply = json.loads(await recv(ws))
        domain = reply["event"]["requestContext"]["domainName"]
        assert domain == tls_inspector.gateway.domain_name

    run(scenario)


def test_wss_without_the_ca_is_refused(tls_inspector: RunningGateway) -> None:
    async def scenario() -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with wss(tls_inspector, ssl=ssl.create_default_context()):
                pass

    run(scenario)


def test_certificate_names_localhost_too(tls_inspector: RunningGateway) -> None:
    async def scenario() -> None:
        async with wss(tls_inspector, tls_inspector.url.replace("127.0.0.1", "localhost")) as ws:
            await ws.send("ping")
            assert json.loads(await recv(ws))["routeKey"] == "$default"

    run(scenario)


def test_boto3_over_https_with_the_ca_bundle(tls_inspector: RunningGateway) -> None:
    client = tls_inspector.management_client()  # verify= the CA bundle

    async def scenario() -> None:
        async with wss(tls_inspector) as ws:
            await ws.send(json.dumps({"action": "echo"}))
            connection_id = json.loads(await recv(ws))["event"]["requestContext"]["connectionId"]
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b"over https"
            )
            assert await recv(ws) == "over https"
            described = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
            assert described["Identity"]["SourceIp"] == "127.0.0.1"

    run(scenario)


def test_certificates_are_made_once_and_reused(tmp_path: Path) -> None:
    first = tls.ensure_certificates(tmp_path)
    stamp = first.cert.read_bytes()
    second = tls.ensure_certificates(tmp_path)
    assert second.cert.read_bytes() == stamp
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"


def test_third_party_app_posting_to_https_domain_and_stage_works(tmp_path: Path) -> None:
    """chat_sqlite builds ``boto3.client("apigatewaymanagementapi",
    endpoint_url=f"https://{domain}/{stage}")`` in its handler, verifying with AWS_CA_BUNDLE."""
    database = tmp_path / "simplechat.sqlite3"
    api = load_api(
        APPS / "chat_sqlite" / "template.yaml", parameters={"ConnectionsDb": str(database)}
    )
    config = _with_tls(GatewayConfig(api=api, shutdown_timeout=5.0), tmp_path)
    with running_gateway(config) as gateway:

        async def scenario() -> None:
            async with wss(gateway) as alice, wss(gateway) as bob:
                await alice.send(json.dumps({"action": "sendmessage", "data": "hello over wss"}))
                assert await recv(alice) == "hello over wss"
                assert await recv(bob) == "hello over wss"

        run(scenario)
        # Its boto3 calls came over HTTPS, one per recipient.
        assert gateway.call(lambda: gateway.gateway.management_http_requests) == 2
        assert gateway.call(lambda: gateway.gateway.fast_path_calls) == 0
    assert "CERTIFICATE_VERIFY_FAILED" not in gateway.logs.text

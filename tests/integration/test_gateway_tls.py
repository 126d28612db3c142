"""``--tls``: wss:// and https:// signed by a local CA, which clients and functions trust.

The third-party app builds its management client from the event as ``https://{domainName}/
{stage}``, as it would on AWS; that works locally only because the gateway serves https and
hands its functions the CA as ``AWS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from tests.integration.conftest import (
    APPS,
    TIMEOUT,
    RunningGateway,
    inspector_config,
    running_gateway,
)
from websockets.sync.client import connect

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


def test_urls_are_wss_and_https(tls_inspector: RunningGateway) -> None:
    assert tls_inspector.url.startswith("wss://127.0.0.1:")
    assert tls_inspector.management_url.startswith("https://127.0.0.1:")


def test_wss_with_the_generated_ca_verifies(tls_inspector: RunningGateway) -> None:
    with tls_inspector.connect() as ws:  # ssl: a context trusting only the local CA
        ws.send(json.dumps({"action": "echo"}))
        reply = json.loads(ws.recv(timeout=TIMEOUT))
    assert reply["event"]["requestContext"]["domainName"] == tls_inspector.gateway.domain_name


def test_wss_without_the_ca_is_refused(tls_inspector: RunningGateway) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_inspector.connect(ssl=ssl.create_default_context())


def test_certificate_names_localhost_too(tls_inspector: RunningGateway) -> None:
    url = tls_inspector.url.replace("127.0.0.1", "localhost")
    with connect(url, ssl=tls_inspector.client_ssl, open_timeout=TIMEOUT) as ws:
        ws.send("ping")
        assert json.loads(ws.recv(timeout=TIMEOUT))["routeKey"] == "$default"


def test_boto3_over_https_with_the_ca_bundle(tls_inspector: RunningGateway) -> None:
    client = tls_inspector.management_client()  # verify= the CA bundle
    with tls_inspector.connect() as ws:
        connection_id = tls_inspector.connection_id(ws)
        client.post_to_connection(ConnectionId=connection_id, Data=b"over https")
        assert ws.recv(timeout=TIMEOUT) == "over https"
        assert client.get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"]


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
    with running_gateway(config) as gateway, ExitStack() as stack:
        alice = stack.enter_context(gateway.connect())
        bob = stack.enter_context(gateway.connect())
        alice.send(json.dumps({"action": "sendmessage", "data": "hello over wss"}))
        assert alice.recv(timeout=TIMEOUT) == "hello over wss"
        assert bob.recv(timeout=TIMEOUT) == "hello over wss"
        # Its boto3 calls came over HTTPS, one per recipient.
        assert gateway.call(lambda: gateway.gateway.management_http_requests) >= 2
        assert gateway.call(lambda: gateway.gateway.fast_path_calls) == 0
    assert "CERTIFICATE_VERIFY_FAILED" not in gateway.logs.text

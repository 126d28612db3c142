"""Lambda REQUEST authorizers on ``$connect`` in the local gateway, from a third-party template
(tests/fixtures/apps/authorized, written from AWS's documented shapes): the statuses API
Gateway answers, the event the authorizer gets, and ``requestContext.authorizer`` on every
later event of an allowed connection ($connect, MESSAGE, DISCONNECT)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import (
    APPS,
    RunningGateway,
    running_gateway,
    wait_for,
    wschat_serve,
)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from wschat.gateway import core
from wschat.gateway.server import GatewayConfig
from wschat.gateway.template import TemplateError, load_api

pytestmark = pytest.mark.integration

TEMPLATE = APPS / "authorized" / "template.yaml"


@pytest.fixture(scope="module")
def seen_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("authorized") / "seen.jsonl"


@pytest.fixture(scope="module")
def guarded(seen_log: Path) -> Iterator[RunningGateway]:
    api = load_api(TEMPLATE, parameters={"SeenLog": str(seen_log)})
    config = GatewayConfig(api=api, limits=core.Limits(integration_timeout=5.0))
    with running_gateway(config) as running:
        yield running


def seen(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def refused(gateway: RunningGateway, query: str) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        gateway.connect(query).close()
    status: int = refusal.value.response.status_code
    return status


def test_the_template_binds_the_authorizer_to_connect() -> None:
    api = load_api(TEMPLATE)
    authorizer = api.routes["$connect"].authorizer
    assert authorizer is not None
    assert authorizer.identity_sources == ("route.request.querystring.token",)
    assert authorizer.function.handler == "app.authorize"
    assert "AuthorizerFunction" in {f.name for f in api.functions}
    assert api.routes["$default"].authorizer is None


def test_a_missing_identity_source_is_401_without_invoking_the_authorizer(
    guarded: RunningGateway, seen_log: Path
) -> None:
    before = len(seen(seen_log))
    assert refused(guarded, "") == 401
    assert refused(guarded, "?other=1") == 401
    assert len(seen(seen_log)) == before


@pytest.mark.parametrize(
    ("token", "status"), [("deny", 403), ("unknown", 401), ("boom", 500), ("junk", 500)]
)
def test_the_authorizers_answer_decides_the_handshake(
    guarded: RunningGateway, seen_log: Path, token: str, status: int
) -> None:
    assert refused(guarded, f"?token={token}") == status
    # $connect never ran.
    assert not [r for r in seen(seen_log) if r["route"] == "$connect" and token in str(r)]


def test_an_allowed_connection_carries_the_authorizer_on_every_event(
    guarded: RunningGateway, seen_log: Path
) -> None:
    with guarded.connect("?token=allow-minji&room=a") as ws:
        ws.send(json.dumps({"action": "anything"}))
        wait_for(lambda: any(r["route"] == "$default" for r in seen(seen_log)), what="a message")
    wait_for(lambda: any(r["route"] == "$disconnect" for r in seen(seen_log)), what="$disconnect")

    expected = {"principalId": "allow-minji", "user": "minji", "admin": False, "level": 1}
    records = [r for r in seen(seen_log) if r.get("authorizer") == expected]
    assert [r["route"] for r in records] == ["$connect", "$default", "$disconnect"]

    [call] = [
        r["event"]
        for r in seen(seen_log)
        if r["route"] == "authorizer"
        and (r["event"]["queryStringParameters"] or {}).get("token") == "allow-minji"
    ]
    assert call["type"] == "REQUEST"
    assert call["methodArn"].endswith(f"/{guarded.gateway.config.stage}/$connect")
    assert call["methodArn"].startswith("arn:aws:execute-api:")
    assert call["multiValueQueryStringParameters"] == {"token": ["allow-minji"], "room": ["a"]}
    assert "Sec-WebSocket-Key" in call["headers"]
    assert call["requestContext"]["eventType"] == "CONNECT"


def test_aws_iam_on_connect_is_refused_at_start_with_a_clear_message(tmp_path: Path) -> None:
    text = TEMPLATE.read_text().replace(
        "      AuthorizationType: CUSTOM\n      AuthorizerId: !Ref TokenAuthorizer\n",
        "      AuthorizationType: AWS_IAM\n",
    )
    (tmp_path / "template.yaml").write_text(text)
    (tmp_path / "app.py").write_text((APPS / "authorized" / "app.py").read_text())
    with pytest.raises(TemplateError, match=r"AWS_IAM .* is not emulated locally"):
        load_api(tmp_path / "template.yaml")


def test_wschat_serve_runs_the_app_from_its_own_template_unchanged(tmp_path: Path) -> None:
    # As a user runs it: `wschat serve --template` in a process of its own, the app's own
    # parameter for its log, a plain WebSocket client.
    log = tmp_path / "seen.jsonl"
    args = ["--template", str(TEMPLATE), "--parameter", f"SeenLog={log}"]
    args += ["--data-dir", str(tmp_path / "data")]
    with wschat_serve(args, tmp_path) as server:
        url = server.websocket_url
        with pytest.raises(InvalidStatus) as refusal:
            connect(url + "?token=deny", open_timeout=5).close()
        assert refusal.value.response.status_code == 403
        with connect(url + "?token=allow-jun", open_timeout=5) as ws:
            ws.send(json.dumps({"action": "anything"}))
            wait_for(lambda: any(r["route"] == "$default" for r in seen(log)), what="a message")
        wait_for(lambda: any(r["route"] == "$disconnect" for r in seen(log)), what="$disconnect")

    expected = {"principalId": "allow-jun", "user": "jun", "admin": False, "level": 1}
    routes = [r["route"] for r in seen(log) if r.get("authorizer") == expected]
    assert routes == ["$connect", "$default", "$disconnect"]

"""``wschat serve``'s settings as the gateway gets them (no gateway is started): the command's
options, and what it adds only when the API is the chat itself (store settings, the page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wschat import cli
from wschat.gateway import server
from wschat.local import PageRoute
from wschat.page import SignInSettings

REPO = Path(__file__).resolve().parents[2]


class _Started(Exception):
    pass


def _gateway_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> server.Gateway:
    """The gateway ``wschat serve argv`` made, stopped as it would start."""
    seen: list[server.Gateway] = []

    async def start(self: server.Gateway) -> None:
        seen.append(self)
        raise _Started

    monkeypatch.setattr(server.Gateway, "start", start)
    with pytest.raises(_Started):
        cli.main(["serve", "--port", "0", *argv])
    return seen[0]


def _config_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Any:
    return _gateway_of(monkeypatch, argv).config


def _page_of(gateway: server.Gateway) -> PageRoute | None:
    route = gateway.http.handler_for("/")
    assert route is None or isinstance(route, PageRoute)
    return route


def test_log_level_also_sets_the_functions_log_level(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WSCHAT_LOG_LEVEL", raising=False)
    config = _config_of(monkeypatch, ["--data-dir", str(tmp_path), "--log-level", "warning"])

    assert config.function_env["LOG_LEVEL"] == "WARNING"


def test_without_log_level_the_template_decides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WSCHAT_LOG_LEVEL", raising=False)
    config = _config_of(monkeypatch, ["--data-dir", str(tmp_path)])

    assert "LOG_LEVEL" not in config.function_env


def test_env_reaches_template_functions_over_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    template = REPO / "tests" / "fixtures" / "apps" / "cdk_chat" / "cdk.out"
    argv = ["--data-dir", str(tmp_path), "--template", str(template / "CdkChatStack.template.json")]
    argv += ["--env", "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:5000", "--env", "TABLE_NAME=t"]
    config = _config_of(monkeypatch, argv)

    assert config.function_env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:5000"
    assert config.function_env["TABLE_NAME"] == "t"  # the gateway puts function_env last


# --- where wschat serve finds the page's sign-in settings -----------------------------------------

ISSUER = "https://issuer.example"


def test_serve_serves_the_page_without_sign_in_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateway = _gateway_of(monkeypatch, ["--data-dir", str(tmp_path)])
    page = _page_of(gateway)
    assert page is not None and page.sign_in is None
    assert gateway.config.function_env["WSCHAT_SQLITE_PATH"] == str(tmp_path / "wschat.sqlite3")


def test_another_projects_template_gets_no_chat_settings_and_no_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    template = REPO / "tests" / "fixtures" / "apps" / "chat_json" / "template.yaml"
    args = ["--template", str(template), "--data-dir", str(tmp_path)]
    gateway = _gateway_of(monkeypatch, args)
    assert _page_of(gateway) is None
    assert not any(name.startswith("WSCHAT_") for name in gateway.config.function_env)
    assert not (tmp_path / "wschat.sqlite3").exists()  # the chat's store is not touched


def test_serve_takes_sign_in_from_the_templates_parameters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ["--template", str(REPO / "template.yaml"), "--data-dir", str(tmp_path)]
    args += ["--parameter", f"OidcIssuer={ISSUER}", "--parameter", "OidcAudience=client-123"]
    args += ["--parameter", "OidcMetadataUrl=http://127.0.0.1:9/meta"]
    page = _page_of(_gateway_of(monkeypatch, args))
    assert page is not None
    assert page.sign_in == SignInSettings(ISSUER, "client-123", "http://127.0.0.1:9/meta")


def test_serve_takes_sign_in_from_route_functions_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ["--route", "$connect=wschat.handlers.connect.handler", "--data-dir", str(tmp_path)]
    args += ["--env", f"WSCHAT_OIDC_ISSUER={ISSUER}", "--env", "WSCHAT_OIDC_AUDIENCE=c"]
    page = _page_of(_gateway_of(monkeypatch, args))
    assert page is not None and page.sign_in == SignInSettings(ISSUER, "c")


def test_serve_refuses_an_issuer_without_a_client_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--route", "$connect=wschat.handlers.connect.handler", "--data-dir", str(tmp_path)]
    args += ["--env", f"WSCHAT_OIDC_ISSUER={ISSUER}"]
    assert cli.main(["serve", "--port", "0", *args]) == 2
    assert "WSCHAT_OIDC_AUDIENCE" in capsys.readouterr().err

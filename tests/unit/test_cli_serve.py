"""``wschat serve``'s settings as the gateway gets them (no gateway is started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wschat import cli
from wschat.gateway import server
from wschat.page import WEB_DIR, SignInSettings


class _Started(Exception):
    pass


def _config_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Any:
    seen: list[Any] = []

    def fake_gateway(config: Any) -> Any:
        seen.append(config)
        raise _Started

    monkeypatch.setattr(server, "Gateway", fake_gateway)
    with pytest.raises(_Started):
        cli.main(["serve", "--port", "0", *argv])
    return seen[0]


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


# --- where wschat serve finds the page's sign-in settings -----------------------------------------

ISSUER = "https://issuer.example"
REPO = Path(__file__).resolve().parents[2]


def test_serve_serves_the_page_without_sign_in_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _config_of(monkeypatch, ["--data-dir", str(tmp_path)])
    assert config.static_dir == WEB_DIR
    assert config.sign_in is None


def test_serve_takes_sign_in_from_the_templates_parameters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ["--template", str(REPO / "template.yaml"), "--data-dir", str(tmp_path)]
    args += ["--parameter", f"OidcIssuer={ISSUER}", "--parameter", "OidcAudience=client-123"]
    args += ["--parameter", "OidcMetadataUrl=http://127.0.0.1:9/meta"]
    config = _config_of(monkeypatch, args)
    assert config.sign_in == SignInSettings(ISSUER, "client-123", "http://127.0.0.1:9/meta")


def test_serve_takes_sign_in_from_route_functions_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = ["--route", "$connect=app.on_connect", "--data-dir", str(tmp_path)]
    args += ["--env", f"WSCHAT_OIDC_ISSUER={ISSUER}", "--env", "WSCHAT_OIDC_AUDIENCE=c"]
    config = _config_of(monkeypatch, args)
    assert config.sign_in == SignInSettings(ISSUER, "c")


def test_serve_refuses_an_issuer_without_a_client_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--route", "$connect=app.on_connect", "--data-dir", str(tmp_path)]
    args += ["--env", f"WSCHAT_OIDC_ISSUER={ISSUER}"]
    assert cli.main(["serve", "--port", "0", *args]) == 2
    assert "WSCHAT_OIDC_AUDIENCE" in capsys.readouterr().err

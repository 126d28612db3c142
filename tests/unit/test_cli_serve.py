"""``wschat serve``'s settings as the gateway gets them (no gateway is started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wschat import cli
from wschat.gateway import server


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

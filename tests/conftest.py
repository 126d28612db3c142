"""Fixtures every test directory may use: one moto server per session, AWS settings for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.moto_server import MotoServer

TEST_REGION = "ap-northeast-2"  # the seed's region


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Base URL of a DynamoDB-compatible moto server shared by the whole session."""
    with MotoServer() as server:
        yield server.url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the seed's region; nothing from the developer's own AWS setup
    (profile, session token, endpoint overrides) leaks in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dynamodb_client(moto_endpoint: str, aws_env: None) -> Any:
    """A boto3 DynamoDB client talking HTTP to the session's moto server."""
    import boto3

    return boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=TEST_REGION)

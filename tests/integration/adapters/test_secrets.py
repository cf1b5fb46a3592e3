"""The stack's secrets are read from Secrets Manager (moto), kept briefly, and only there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from mailer_core.adapters import secrets
from mailer_core.base.config import reset_settings
from mailer_core.web import edge

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET


@pytest.fixture
def from_secrets_manager(aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """GIVEN the functions' environment: the secret's ARN, no plain value."""
    monkeypatch.delenv("KOMMO_CLIENT_SECRET", raising=False)
    reset_settings()
    secrets.forget()
    yield aws_stack.refs["KommoClientSecretValue"]
    secrets.forget()
    reset_settings()


def test_the_client_secret_is_read_from_secrets_manager_by_its_arn(from_secrets_manager: str) -> None:
    assert from_secrets_manager.startswith("arn:aws:secretsmanager:")

    assert secrets.kommo_client_secret() == TEST_SECRET


def test_a_value_read_is_kept_for_five_minutes_then_read_again(
    from_secrets_manager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(secrets.time, "monotonic", lambda: now[0])
    assert secrets.kommo_client_secret() == TEST_SECRET
    boto3.client("secretsmanager").put_secret_value(SecretId=from_secrets_manager, SecretString="rotated")

    now[0] += secrets.CACHE_SECONDS - 1
    assert secrets.kommo_client_secret() == TEST_SECRET
    now[0] += 1
    assert secrets.kommo_client_secret() == "rotated"


def test_the_widget_token_is_checked_with_the_secret_from_secrets_manager(from_secrets_manager: str) -> None:
    token = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=31000001).token()

    caller = edge.authenticate({"x-auth-token": token})

    assert caller.account_id == 31000001


def test_a_plain_setting_wins_for_tests_and_scripts(
    from_secrets_manager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOMMO_CLIENT_SECRET", "plain-for-a-test")
    reset_settings()

    assert secrets.kommo_client_secret() == "plain-for-a-test"


def test_without_a_tracking_secret_nothing_is_configured_or_read(
    aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test stack passes no TrackingSecret: the local stack creates no secret for it."""
    monkeypatch.delenv("MAILER_TRACKING_SECRET", raising=False)
    reset_settings()
    calls: list[Any] = []
    monkeypatch.setattr(secrets, "_read", lambda secret_id: calls.append(secret_id) or "")

    assert not secrets.tracking_configured()
    assert secrets.tracking_secret() == ""
    assert calls == []

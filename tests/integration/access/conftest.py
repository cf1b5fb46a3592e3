"""Fixtures for access, settings, mailbox defaults and switching accounts off: API callers of
account A (its Kommo administrator, two users) and an administrator of account B."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.accounts import access
from mailer_core.tracking import machine_traffic

from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient

ACCOUNT, OTHER_ACCOUNT = 31000001, 42000002
OWNER, ANNA, BORIS, STRANGER = 500, 501, 502, 900


def caller(user_id: int, *, kommo_admin: bool = False, account_id: int = ACCOUNT) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET,
        audience=TEST_AUDIENCE,
        account_id=account_id,
        user_id=user_id,
        is_admin=kommo_admin,
    )


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    access.forget()
    machine_traffic.forget_switches()
    yield
    access.forget()


@pytest.fixture
def owner(aws_stack: Any) -> ApiClient:
    """A Kommo administrator of account A."""
    return caller(OWNER, kommo_admin=True)


@pytest.fixture
def anna(aws_stack: Any) -> ApiClient:
    return caller(ANNA)


@pytest.fixture
def boris(aws_stack: Any) -> ApiClient:
    return caller(BORIS)


@pytest.fixture
def stranger(aws_stack: Any) -> ApiClient:
    """A Kommo administrator of account B."""
    return caller(STRANGER, kommo_admin=True, account_id=OTHER_ACCOUNT)


def mailbox_body(**overrides: Any) -> dict[str, Any]:
    """A mailbox whose server does not answer: the check fails at once, the mailbox is stored."""
    body: dict[str, Any] = {
        "sender_name": "Anna",
        "sender_email": "anna@example.com",
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,
        "smtp_security": "none",
        "smtp_password": "app-password",
    }
    body.update(overrides)
    return body

"""Fixtures for the core's integration tests: API callers and a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server

ACCOUNT = 31000001
OTHER_ACCOUNT = 42000002
LOGIN = "anna@example.com"
PASSWORD = "s3cret-app-password"


@pytest.fixture
def user(aws_stack: Any) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=501)


@pytest.fixture
def colleague(aws_stack: Any) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=502)


@pytest.fixture
def admin(aws_stack: Any) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=500, is_admin=True
    )


@pytest.fixture
def stranger(aws_stack: Any) -> ApiClient:
    """An administrator of another Kommo account."""
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=OTHER_ACCOUNT, user_id=900, is_admin=True
    )


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    """A real SMTP server that only accepts the test mailbox's login and password."""
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


def mailbox_body(server: SmtpTestServer | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sender_name": "Анна Смирнова",
        "sender_email": "anna@example.com",
        "smtp_host": server.host if server else "smtp.example.com",
        "smtp_port": server.port if server else 465,
        "smtp_security": "none" if server else "ssl",
        "smtp_password": PASSWORD,
        "is_default": True,
    }
    body.update(overrides)
    return body

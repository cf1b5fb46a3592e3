"""Fixtures for templates: API callers of the demo account, the Kommo stand-in, a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.base.config import reset_settings
from mailer_core.rendering import variables

from devstack import kommo_seed as seed
from devstack.kommo_seed import Seed, demo_seed
from devstack.kommo_standin import KommoStandIn
from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient
from tests.support.kommo_accounts import save_account_with_token
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server

TOKEN = "templates-test-token"
LOGIN = "maria.manager@example.com"
PASSWORD = "templates-smtp-password"
COLLEAGUE_ID = 8100003


def caller(user_id: int, *, admin: bool = False, account_id: int = seed.ACCOUNT_ID) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=account_id, user_id=user_id, is_admin=admin
    )


@pytest.fixture
def manager(aws_stack: Any) -> ApiClient:
    return caller(seed.MANAGER_USER_ID)


@pytest.fixture
def colleague(aws_stack: Any) -> ApiClient:
    return caller(COLLEAGUE_ID)


@pytest.fixture
def admin(aws_stack: Any) -> ApiClient:
    return caller(seed.ADMIN_USER_ID, admin=True)


@pytest.fixture
def stranger(aws_stack: Any) -> ApiClient:
    return caller(900, admin=True, account_id=42000002)


@pytest.fixture
def sample() -> Seed:
    """The demo account's data; a test may change it before asking for `kommo`."""
    return demo_seed()


@pytest.fixture
def kommo(aws_stack: Any, sample: Seed, monkeypatch: pytest.MonkeyPatch) -> Iterator[KommoStandIn]:
    """The Kommo stand-in, with the demo account installed in Mailer.

    Its limit of requests per second, and the client's, are lifted: these tests are about what
    is read and written, and pacing at 7 per second only made them wait. The limit itself is
    tested in tests/integration/kommo, and the local stack (e2e) keeps Kommo's.
    """
    variables.forget_account_data()
    with KommoStandIn(sample, rate_limit=1000) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        monkeypatch.setenv("MAILER_KOMMO_REQUESTS_PER_SECOND", "1000")
        monkeypatch.setenv("MAILER_KOMMO_BASE_URL", standin.base_url)
        reset_settings()
        save_account_with_token(TOKEN)
        yield standin
    variables.forget_account_data()


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


def mailbox_body(server: SmtpTestServer | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sender_name": "Мария Менеджер",
        "sender_email": LOGIN,
        "smtp_host": server.host if server else "127.0.0.1",
        "smtp_port": server.port if server else 9,
        "smtp_security": "none",
        "smtp_password": PASSWORD,
        "is_default": True,
        "sender_phone": "+7 495 111-22-33",
        "signature": "<p>--<br>{{ manager.name }}, {{ manager.phone }}</p>",
    }
    body.update(overrides)
    return body


OFFER = {
    "name": "Offer",
    "subject": "Предложение для {{ lead.name }}",
    "html": (
        "<p>{{ contact.name|inflect('datv') }}, добрый день!</p>"
        "<p>Бюджет: {{ lead.price|in_words(currency='RUB') }}.</p>"
        '<p><a href="{triggerlink:8}">Открыть предложение</a></p>'
    ),
    "locale": "ru",
}

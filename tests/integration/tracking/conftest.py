"""Fixtures for tracking: settings with a secret and base URL, messages, calls to the track function."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.base.config import reset_settings
from mailer_core.store import message_state as state
from mailer_core.store.models import MessageModel
from mailer_core.tracking import machine_traffic
from mailer_core.tracking import rewrite as tracking
from mailer_core.tracking import tokens as tracking_tokens

from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.integration.core.conftest import LOGIN, PASSWORD
from tests.support.api_client import ApiClient, LambdaContext, http_event, load_handler
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server

ACCOUNT = 31000001
SECRET = "tracking-test-secret-0123456789abcdef"
BASE = "https://track.mailer.test"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


@pytest.fixture
def tracked(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GIVEN tracking configured (secret and public base URL)."""
    monkeypatch.setenv("MAILER_TRACKING_SECRET", SECRET)
    monkeypatch.setenv("MAILER_PUBLIC_BASE_URL", BASE)
    reset_settings()
    machine_traffic.forget_switches()
    yield
    machine_traffic.forget_switches()
    reset_settings()


@pytest.fixture
def user(aws_stack: Any) -> ApiClient:
    return ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=501)


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    """A real SMTP server that only accepts the test mailbox's login and password."""
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


@dataclass
class Hit:
    status: int
    headers: dict[str, str]
    body: bytes


def hit(
    path: str, *, method: str = "GET", agent: str = BROWSER, ip: str = "198.51.100.7", **headers: str
) -> Hit:
    """One request to the track function, as API Gateway gives it."""
    event = http_event(method, path, headers={"user-agent": agent, **headers})
    event["requestContext"]["http"].update(sourceIp=ip, userAgent=agent)
    result = load_handler("track").lambda_handler(event, LambdaContext())
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
    return Hit(
        int(result["statusCode"]), {k.lower(): v for k, v in (result.get("headers") or {}).items()}, body
    )


def sent_message(message_id: str, links: list[str], *, sent: datetime | None = None) -> MessageModel:
    """A sent message with its tracked links stored, as the send worker leaves it."""
    when = sent or datetime.now(UTC) - timedelta(hours=1)
    message = MessageModel(
        ACCOUNT,
        message_id,
        status=state.SENT,
        status_key=state.status_key(ACCOUNT, state.SENT),
        user_id=501,
        mailbox_id="mb",
        to=["client@example.com"],
        header_message_id=f"<{message_id}@example.com>",
        created_at=when,
        updated_at=when,
        sent_at=when,
    )
    message.save()
    tracking.store_links(message, links)
    return message


def open_path(message_id: str, sent: datetime | None = None) -> str:
    issued = int((sent or datetime.now(UTC) - timedelta(hours=1)).timestamp())
    return "/o/" + tracking_tokens.open_token(ACCOUNT, message_id, issued)


def click_path(message_id: str, index: int, url: str, sent: datetime | None = None) -> str:
    issued = int((sent or datetime.now(UTC) - timedelta(hours=1)).timestamp())
    return "/c/" + tracking_tokens.click_token(ACCOUNT, message_id, issued, index, url)


def fresh(message_id: str) -> MessageModel:
    return MessageModel.get(ACCOUNT, message_id, consistent_read=True)

"""Fixtures for visibility: the demo account with Kommo, a real SMTP server, tracking on, and
helpers that read an email's tracked URLs and hit the track routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from mailer_core.tracking import machine_traffic

from devstack import kommo_seed as seed
from devstack.resources import StackResources
from tests.integration.automation.conftest import drain_actions, mailbox, send_queued, trigger  # noqa: F401
from tests.integration.templates.conftest import (  # noqa: F401  (fixtures)
    admin,
    colleague,
    kommo,
    mailbox_body,
    manager,
    sample,
    smtp,
    stranger,
)
from tests.integration.tracking.conftest import BASE, hit, tracked  # noqa: F401
from tests.support.api_client import ApiClient
from tests.support.smtp_servers import SmtpTestServer

LEAD = {"type": "leads", "id": seed.LEAD_OFFER}
OFFER_URL = "https://shop.example.com/offer"
PRICES_URL = "https://shop.example.com/prices"
LINKS_HTML = f'<p>Hello</p><p><a href="{OFFER_URL}">Offer</a> <a href="{PRICES_URL}">Prices</a></p>'
APPLE_MPP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SAFE_LINKS = "Mozilla/5.0 (compatible; MSOffice-SafeLinks/1.0)"


@pytest.fixture
def people_click_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clicks right after sending count as people's (the 10-second scanner rule is off), so a
    test needs no clock games; machines are still told by their agent or method."""
    monkeypatch.setattr(machine_traffic, "CLICK_GRACE_SECONDS", 0)


@pytest.fixture
def world(aws_stack: StackResources, request: pytest.FixtureRequest) -> StackResources:
    """GIVEN the demo account connected to Kommo, a manager's mailbox on a real SMTP server and
    tracking configured."""
    for name in ("tracked", "kommo", "mailbox", "people_click_at_once"):
        request.getfixturevalue(name)
    return aws_stack


def template(client: ApiClient, name: str = "Offer", *, public: bool = True, **extra: Any) -> str:
    body = {"name": name, "subject": "Offer for {{ lead.name }}", "html": LINKS_HTML, "is_public": public}
    reply = client.post("/v1/templates", {**body, **extra})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def compose(client: ApiClient, **body: Any) -> str:
    reply = client.post("/v1/messages", {"entity": LEAD, **body})
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def tracked_paths(server: SmtpTestServer, message_id: str) -> tuple[str, dict[str, str]]:
    """The pixel's path and each link's click path in the email the server received."""
    for received in server.messages:
        parsed = received.parsed()
        if message_id.lower() not in str(parsed["Message-ID"]).lower():
            continue
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        [pixel] = re.findall(re.escape(BASE) + r"(/o/[\w-]+)", html)
        anchors = re.findall(r'href="' + re.escape(BASE) + r'(/c/[\w-]+)"[^>]*>([^<]*)<', html)
        return pixel, {text: path for path, text in anchors}
    raise AssertionError(f"no email for {message_id}")


def sent_email(
    stack: StackResources, server: SmtpTestServer, client: ApiClient, **body: Any
) -> tuple[str, str, dict[str, str]]:
    """Compose, send through the send function; the id, the pixel and the click paths."""
    message_id = compose(client, **body)
    assert send_queued(stack) == 1
    pixel, links = tracked_paths(server, message_id)
    return message_id, pixel, links


__all__ = ["drain_actions", "hit", "mailbox_body", "trigger"]

"""Fixtures for trigger links: the demo account in the Kommo stand-in, a mailbox on a real SMTP
server, tracking configured, and helpers that send an email and click its links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.events import jobs
from mailer_core.tracking import routes as tracking

from devstack import kommo_seed as seed
from devstack.resources import StackResources
from tests.integration.automation.conftest import (  # noqa: F401  (fixtures)
    LEAD,
    actions_jobs,
    admin,
    kommo,
    mailbox,
    manager,
    sample,
    send_queued,
    smtp,
    stranger,
    trigger,
)
from tests.integration.tracking.conftest import BASE, BROWSER, Hit, hit, tracked  # noqa: F401
from tests.support.api_client import ApiClient, load_handler
from tests.support.smtp_servers import SmtpTestServer

SCANNER = "Mozilla/5.0 (compatible; MSOffice-SafeLinks/1.0)"
_CLICK = re.compile(re.escape(BASE) + r"(/c/[\w-]+)")


def make_link(client: ApiClient, name: str = "Offer", **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/links", {"name": name, **body})
    assert reply.status == 201, reply.body
    return dict(reply.json())


@dataclass
class SentEmail:
    message_id: str
    html: str
    text: str

    def clicks(self) -> list[str]:
        """The click paths of the HTML part, in order, each once."""
        return list(dict.fromkeys(_CLICK.findall(self.html)))


def send(
    client: ApiClient, stack: StackResources, server: SmtpTestServer, html: str, **body: Any
) -> SentEmail:
    """Compose (for the demo lead unless told otherwise), let the send function send it, and
    read what the SMTP server received."""
    reply = client.post("/v1/messages", {"entity": LEAD, "subject": "Offer", "html": html, **body})
    assert reply.status == 202, reply.body
    before = len(server.messages)
    assert send_queued(stack) == 1
    assert len(server.messages) == before + 1
    parsed = server.messages[-1].parsed()
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    assert html_part is not None and text_part is not None
    return SentEmail(str(reply.json()["id"]), str(html_part.get_content()), str(text_part.get_content()))


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The track function's clock a minute after sending: past the machine-traffic click grace."""
    clock = FakeClock(current=datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1))
    monkeypatch.setattr(load_handler("track"), "clock", clock)
    return clock


def person_request(
    path: str, when: datetime, *, method: str = "GET", agent: str = BROWSER
) -> tracking.TrackRequest:
    """A click as the track function sees it (for many threads at once, without the resolver)."""
    return tracking.TrackRequest(
        token=path.removeprefix("/c/"),
        method=method,
        user_agent=agent,
        source_ip="198.51.100.7",
        headers={"user-agent": agent},
        now=when,
    )


def link_jobs(stack: StackResources) -> list[jobs.EventJob]:
    """The trigger-link events waiting on the actions queue (taken off it)."""
    return [j for j in actions_jobs(stack) if isinstance(j, jobs.EventJob) and j.event == "link"]


@pytest.fixture
def ready(request: pytest.FixtureRequest) -> None:
    """GIVEN tracking configured, the Kommo stand-in and the manager's mailbox."""
    request.getfixturevalue("tracked")
    request.getfixturevalue("mailbox")


__all__ = ["SCANNER", "Hit", "hit", "seed"]

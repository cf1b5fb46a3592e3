"""Attachment download tracking end to end (docs/letters.md#attachment-downloads): a template
that tracks downloads, its email sent to a real SMTP server with its file as a signed link,
the public /d/ route, and the "downloaded" note in the Kommo stand-in, once per file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.base.config import reset_settings
from mailer_core.tracking import machine_traffic

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.automation import LEAD, drain_actions, events_of, send_queued, stored, trigger
from tests.support.fixtures.tracking import BASE, SECRET, hit
from tests.support.smtp_servers import SmtpTestServer

PDF = b"%PDF-1.4 price list"


@pytest.fixture
def tracked(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MAILER_TRACKING_SECRET", SECRET)
    monkeypatch.setenv("MAILER_PUBLIC_BASE_URL", BASE)
    reset_settings()
    machine_traffic.forget_switches()
    yield
    machine_traffic.forget_switches()


def upload(client: ApiClient, stack: StackResources, name: str, data: bytes) -> str:
    created = client.post(
        "/v1/uploads", {"filename": name, "size": len(data), "content_type": "application/pdf"}
    )
    assert created.status == 201, created.body
    fields = created.json()["upload"]["fields"]
    boto3.client("s3").put_object(
        Bucket=stack.refs["BodiesBucket"], Key=fields["key"], Body=data, ContentType=fields["Content-Type"]
    )
    return str(created.json()["id"])


def test_the_first_download_of_each_file_by_a_person_adds_the_note_once(
    aws_stack: StackResources,
    tracked: None,
    admin: ApiClient,
    manager: ApiClient,
    mailbox: str,
    smtp: SmtpTestServer,
    kommo: KommoStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a template whose downloads are tracked, its "downloaded" trigger adding a note
    note = trigger(admin, "Downloaded", "note", text="The client downloaded the price list ({template})")
    files = [upload(admin, aws_stack, "Прайс.pdf", PDF), upload(admin, aws_stack, "terms.pdf", b"%PDF terms")]
    template = admin.post(
        "/v1/templates",
        {
            "name": "Price list",
            "subject": "Prices",
            "html": "<p>See the attachment</p>",
            "attachments": [{"upload_id": f} for f in files],
            "track_downloads": True,
            "triggers": {"downloaded": [note]},
            "is_public": True,
        },
    )
    assert template.status == 201, template.body
    assert template.json()["track_downloads"] is True
    reply = manager.post("/v1/messages", {"entity": LEAD, "template_id": template.json()["id"]})
    assert reply.status == 202, reply.body
    message_id = reply.json()["id"]
    # WHEN it is sent
    assert send_queued(aws_stack) == 1
    # THEN the email has no attached file but a signed link to each, in HTML and text
    parsed = smtp.messages[-1].parsed()
    assert list(parsed.iter_attachments()) == []
    html = parsed.get_body(("html",)).get_content()
    links = re.findall(re.escape(BASE) + r"/d/[A-Za-z0-9_-]+", html)
    assert len(links) == 2 and "Прайс.pdf" in html
    assert all(link in parsed.get_body(("plain",)).get_content() for link in links)
    first = links[0].removeprefix(BASE)
    # WHEN a link scanner fetches it on delivery, and a HEAD request: redirected, not counted
    scanned = hit(first, agent="Mozilla/5.0 (compatible; Barracuda)")
    assert scanned.status == 302
    assert hit(first, method="HEAD").status == 302
    assert stored(message_id).downloads is None
    # WHEN the client downloads it twice, a minute later
    later = FakeClock(current=datetime.now(UTC) + timedelta(minutes=1))
    monkeypatch.setattr(load_handler("track"), "clock", later)
    got = hit(first)
    assert got.status == 302 and hit(first).status == 302
    # THEN the redirect saves the file under its name, and the download counts once
    location = got.headers["location"]
    assert "X-Amz-Signature" in location or "Signature" in location
    assert "Прайс.pdf" in unquote(unquote(location))
    assert int(stored(message_id).downloads) == 1
    assert [d for e, d in events_of(message_id) if e == "downloaded"] == ["Прайс.pdf"]
    drain_actions(aws_stack)
    notes = [n for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]
    assert [n["params"]["text"] for n in notes] == ["The client downloaded the price list (Price list)"]
    # AND the second file's first download is its own
    hit(links[1].removeprefix(BASE))
    drain_actions(aws_stack)
    assert int(stored(message_id).downloads) == 2
    assert len([n for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]) == 2


def test_a_forged_or_foreign_token_finds_nothing(aws_stack: StackResources, tracked: None) -> None:
    assert hit("/d/not-a-token").status == 404
    assert hit("/d/" + "A" * 60).status == 404


def test_the_compose_windows_choice_is_remembered_for_the_next_email(
    aws_stack: StackResources, tracked: None, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    assert manager.get("/v1/preferences").json() == {"track_downloads": False}
    first = manager.post(
        "/v1/messages", {"entity": LEAD, "subject": "s", "html": "h", "track_downloads": True}
    )
    assert first.status == 202, first.body
    assert manager.get("/v1/preferences").json() == {"track_downloads": True}
    second = manager.post("/v1/messages", {"entity": LEAD, "subject": "s", "html": "h"})
    assert stored(second.json()["id"]).track_downloads is True
    assert manager.patch("/v1/preferences", {"track_downloads": False}).json() == {"track_downloads": False}
    third = manager.post("/v1/messages", {"entity": LEAD, "subject": "s", "html": "h"})
    assert stored(third.json()["id"]).track_downloads is None
    assert manager.patch("/v1/preferences", {"track_downloads": "yes"}).status == 422

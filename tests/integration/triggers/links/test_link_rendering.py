"""Trigger links rendered at send time by the send worker (both spellings), in the preview, and
without tracking; the click answers: a redirect to the target resolved at send time, or the
localized thank-you page."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from mailer_core.base.config import reset_settings
from mailer_core.tracking import tokens as tracking_tokens

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import send_queued, stored
from tests.support.fixtures.links import BASE, LEAD, hit, make_link, send
from tests.support.fixtures.templates import TOKEN
from tests.support.smtp_servers import SmtpTestServer

pytestmark = pytest.mark.usefixtures("ready")

BODY = (
    "<html><body><p>Hello</p>"
    '<p><a href="{triggerlink:1}">Read the offer</a></p>'
    '<p><a class="button" href="{{ triggerlink(2) }}">Call me</a></p>'
    '<p><a data-mailer-notrack href="{triggerlink:1}">Again</a></p>'
    '<p><a href="{triggerlink:7}">Gone</a> <a href="https://shop.example/catalog">Catalog</a></p>'
    "</body></html>"
)
TARGET = "https://shop.example/offer/{{ lead.id }}?who={{ contact.first_name }}"
RESOLVED = f"https://shop.example/offer/{seed.LEAD_OFFER}?who=%D0%98%D0%B2%D0%B0%D0%BD"  # Иван


@pytest.fixture
def links(admin: ApiClient) -> None:
    """Link 1 leads to an address filled with the lead's data; link 2 to the thank-you page."""
    make_link(admin, "Read the offer", once=True, target=TARGET)
    make_link(admin, "Call me")


@pytest.mark.usefixtures("links")
def test_both_spellings_become_tracked_links_with_targets_resolved_at_send_time(
    manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, later: Any
) -> None:
    # WHEN an email naming links 1, 2 and 7 (which does not exist) is sent to the lead
    email = send(manager, aws_stack, smtp, BODY, locale="ru")
    # THEN links 1 and 2 are click URLs (link 1 once, even inside a notrack link), 7 is "#"
    first, second, _catalog = email.clicks()
    assert email.html.count(BASE + first) == 2 and BASE + second in email.html
    assert 'href="#"' in email.html and "mailer.invalid" not in email.html
    # AND the plain-text part carries the same click URLs (a trigger link works only through us)
    assert BASE + first in email.text and BASE + second in email.text and "mailer.invalid" not in email.text
    assert "https://shop.example/catalog" in email.text
    # AND the message stores each trigger link with the target resolved with the lead's data
    message = stored(email.message_id)
    assert list(message.tracked_links) == [
        f"triggerlink:1:{RESOLVED}",
        "triggerlink:2",
        "https://shop.example/catalog",
    ]
    token = tracking_tokens.verify(first.removeprefix("/c/"), kind=tracking_tokens.CLICK)
    assert token is not None and token.matches(f"triggerlink:1:{RESOLVED}")
    # AND the history says link 7 does not exist
    assert any(
        h.event == "trigger_link_missing" and "{triggerlink:7}" in (h.detail or "") for h in message.history
    )
    # WHEN a person clicks link 1, then link 2
    redirect = hit(first)
    thanks = hit(second, **{"accept-language": "en-US,en;q=0.9"})
    # THEN link 1 redirects to its resolved target; link 2 shows the thank-you page in the
    # email's language (ru), never cached
    assert redirect.status == 302 and redirect.headers["location"] == RESOLVED
    assert thanks.status == 200 and "Спасибо!" in thanks.body.decode()
    assert (
        thanks.headers["content-type"].startswith("text/html")
        and "no-store" in thanks.headers["cache-control"]
    )
    # AND the message's clicks name the trigger links
    view = manager.get(f"/v1/messages/{email.message_id}").json()
    assert view["clicks"][0] == {"url": RESOLVED, "trigger_link": 1, "people": 1, "machines": 0}
    assert view["clicks"][1] == {"url": None, "trigger_link": 2, "people": 1, "machines": 0}


@pytest.mark.usefixtures("links")
def test_a_template_with_a_trigger_link_is_sent_through_the_worker(
    manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer
) -> None:
    # GIVEN a saved template whose body uses {triggerlink:1}
    template = manager.post(
        "/v1/templates",
        {
            "name": "Offer",
            "subject": "Offer for {{ lead.name }}",
            "html": '<a href="{triggerlink:1}">Read</a>',
        },
    )
    assert template.status == 201, template.body
    assert template.json()["trigger_links"] == [1]
    # WHEN it is sent to the lead
    reply = manager.post("/v1/messages", {"template_id": template.json()["id"], "entity": LEAD})
    assert reply.status == 202, reply.body
    assert send_queued(aws_stack) == 1
    # THEN its link is a click URL storing the resolved target
    html = str(smtp.messages[-1].parsed().get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert BASE + "/c/" in html and "mailer.invalid" not in html
    assert list(stored(reply.json()["id"]).tracked_links) == [f"triggerlink:1:{RESOLVED}"]


def test_a_target_in_a_lead_field_is_read_when_the_email_is_sent(
    admin: ApiClient,
    manager: ApiClient,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    kommo: KommoStandIn,
    later: Any,
) -> None:
    # GIVEN a link whose target is the lead's «Product» field, which then changes in Kommo
    make_link(admin, once=True, target=f"{{{{ lead.cf[{seed.FIELD_PRODUCT}] }}}}")
    request = urllib.request.Request(
        f"{kommo.base_url}/api/v4/leads/{seed.LEAD_OFFER}",
        data=json.dumps(
            {
                "custom_fields_values": [
                    {"field_id": seed.FIELD_PRODUCT, "values": [{"value": "shop.example/pro"}]}
                ]
            }
        ).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    # WHEN the email is sent and the link clicked
    email = send(manager, aws_stack, smtp, '<a href="{triggerlink:1}">Go</a>')
    [path] = email.clicks()
    # THEN the click goes to the field's value at send time (made a web address)
    assert hit(path).headers["location"] == "https://shop.example/pro"
    assert list(stored(email.message_id).tracked_links) == ["triggerlink:1:https://shop.example/pro"]


def test_a_target_that_renders_empty_leads_to_the_thank_you_page(
    admin: ApiClient, manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, later: Any
) -> None:
    # GIVEN a link whose target is a lead field the lead leaves empty (Offer valid until: none)
    make_link(admin, target="{{ lead.cf['No such field'] }}")
    # WHEN an email with it is sent (no locale) and a Spanish-speaking person clicks
    email = send(manager, aws_stack, smtp, '<a href="{triggerlink:1}">Go</a>')
    [path] = email.clicks()
    page = hit(path, **{"accept-language": "es-ES,es;q=0.9,en;q=0.5"})
    # THEN the thank-you page, in Spanish
    assert page.status == 200 and "¡Gracias!" in page.body.decode()
    assert list(stored(email.message_id).tracked_links) == ["triggerlink:1"]


@pytest.mark.usefixtures("links")
def test_the_preview_shows_each_links_target(manager: ApiClient) -> None:
    reply = manager.post("/v1/messages/preview", {"subject": "Offer", "html": BODY, "entity": LEAD})
    assert reply.status == 200, reply.body
    shown = reply.json()
    # link 1: its target filled with the lead's data; link 2 (thank-you page) and 7 (none): "#"
    assert f'href="{RESOLVED}"' in shown["html"]
    assert shown["html"].count('href="#"') == 2 and "mailer.invalid" not in shown["html"]
    assert shown["missing"] == ["triggerlink(7)"]


@pytest.mark.usefixtures("links")
def test_without_tracking_links_lead_straight_to_their_targets(
    manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN tracking not configured
    monkeypatch.delenv("MAILER_TRACKING_SECRET")
    reset_settings()
    # WHEN the email is sent
    email = send(manager, aws_stack, smtp, BODY)
    # THEN link 1 is its resolved target, link 2 and 7 are "#", nothing is stored
    assert f'href="{RESOLVED}"' in email.html and "/c/" not in email.html
    assert email.html.count('href="#"') == 2 and "mailer.invalid" not in email.html + email.text
    assert stored(email.message_id).tracked_links is None

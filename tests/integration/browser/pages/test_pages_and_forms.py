"""Public web pages and forms as a person meets them, in headless Chromium (docs/pages.md):
the manual's own form pasted unchanged into a template, the email's web version, a page with a
trigger link, an expired page and a form sent twice; the Kommo stand-in shows what was written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.base.config import reset_settings
from mailer_core.pages import links
from mailer_core.tracking import machine_traffic

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed, custom_field, demo_seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.browser import fresh_page, screenshot_path
from tests.support.fixtures.automation import LEAD, drain_actions, send_queued, trigger
from tests.support.fixtures.pages import PERSON, SECRET, web_page
from tests.support.served_functions import served
from tests.support.smtp_servers import SmtpTestServer

# The manual's form example (seeds 000, "Forms and surveys in an email"), unchanged.
MANUAL_FORM = """<html style="overflow-y: hidden;">
<head>
	<title>Example form</title>
</head>
<body style="height: auto; min-height: auto;">
<h3>Please fill the blanks<h3>

<form action="{formlink}">
<div>Device type: <select name="lead[620105]"><option value="Laptop">Laptop</option><option value="Smart">Smart</option></select></div>

<div>Service: Cleaning: <input name="lead[620103][]" type="checkbox" value="Cleaning" /> Upgrade: <input name="lead[620103][]" type="checkbox" value="Upgrade" /></div>

<div>Payment: Cash: <input name="lead[657261]" type="radio" value="Cash" /> Online: <input name="lead[657261]" type="radio" value="Online" /></div>

<div>Delivery: <input name="lead[620109]" type="checkbox" value="1" /></div>

<div>Comment: <input name="lead[620111]" type="text" /></div>

<div>Full name: <input name="contact[11973]" type="text" /></div>

<div>Home address: <input name="field[Home address]" type="text" /></div>

<p><input type="submit" value="Send" />&nbsp;</p>
</form>

<div>&nbsp;</div>

<div>Form doesn't work correctly?  <a href="{weblink}">Open WEB-form.</a></div>
</body>
</html>"""  # noqa: E501  (the manual's text as it is)

DEVICE, SERVICE, PAYMENT, DELIVERY, COMMENT, FULL_NAME, HOME = (
    620105,
    620103,
    657261,
    620109,
    620111,
    11973,
    11975,
)


@pytest.fixture
def sample() -> Seed:
    """The demo account with the manual's fields: select, multiselect, switch, flag, text."""
    data = demo_seed()
    data.custom_fields["leads"] += [
        custom_field(DEVICE, "leads", "Device type", "select", enums=[(621001, "Laptop"), (621002, "Smart")]),
        custom_field(
            SERVICE, "leads", "Service", "multiselect", enums=[(621011, "Cleaning"), (621012, "Upgrade")]
        ),
        custom_field(
            PAYMENT, "leads", "Payment", "radiobutton", enums=[(621021, "Cash"), (621022, "Online")]
        ),
        custom_field(DELIVERY, "leads", "Delivery needed", "checkbox"),
        custom_field(COMMENT, "leads", "Comment", "text"),
    ]
    data.custom_fields["contacts"] += [
        custom_field(FULL_NAME, "contacts", "Full name", "text"),
        custom_field(HOME, "contacts", "Home address", "text"),
    ]
    return data


@pytest.fixture
def site(aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The pages and track functions served on 127.0.0.1, their URL the public base URL."""
    with served("pages", "track") as base:
        monkeypatch.setenv("MAILER_TRACKING_SECRET", SECRET)
        monkeypatch.setenv("MAILER_PUBLIC_BASE_URL", base)
        # a person clicks a link of the page a second after the email went out: not a scanner
        monkeypatch.setattr(machine_traffic, "CLICK_GRACE_SECONDS", 0)
        reset_settings()
        machine_traffic.forget_switches()
        yield base
    reset_settings()


@pytest.fixture
def person(browser: Any) -> Iterator[Any]:
    """A browser page with a person's user agent (headless Chromium's own is a machine's)."""
    with fresh_page(browser, width=1000, user_agent=PERSON) as fresh:
        yield fresh


def cf(entity: dict[str, Any] | None, field_id: int) -> list[Any]:
    assert entity is not None
    for item in entity.get("custom_fields_values") or []:
        if item["field_id"] == field_id:
            return [v.get("value") for v in item["values"]]
    return []


def sent_html(manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, **body: Any) -> str:
    reply = manager.post("/v1/messages", {"entity": LEAD, **body})
    assert reply.status == 202, reply.body
    assert send_queued(aws_stack) == 1
    part = smtp.messages[-1].parsed().get_body(("html",))
    assert part is not None
    return str(part.get_content())


def lead_notes(kommo: KommoStandIn) -> list[str]:
    return [str(n["params"]["text"]) for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]


def test_the_manuals_form_pasted_into_a_template_works_in_the_web_version(
    site: str,
    aws_stack: StackResources,
    admin: ApiClient,
    manager: ApiClient,
    mailbox: str,
    smtp: SmtpTestServer,
    kommo: KommoStandIn,
    person: Any,
) -> None:
    # GIVEN the manual's form pasted unchanged into a template, and the email sent to the lead
    reply = admin.post(
        "/v1/templates", {"name": "Survey", "subject": "A survey", "html": MANUAL_FORM, "is_public": True}
    )
    assert reply.status == 201, reply.body
    html = sent_html(manager, aws_stack, smtp, template_id=reply.json()["id"])
    assert "mailer.invalid" not in html and f'action="{site}/f/' in html
    web = html.split(f'href="{site}/w/', 1)[1].split('"', 1)[0]
    # WHEN the client opens the web version and fills in every field
    person.goto(f"{site}/w/{web}")
    person.screenshot(path=screenshot_path("pages-web-version"))
    assert person.title() == "A survey"
    person.select_option('select[name="lead[620105]"]', "Smart")
    person.check('input[name="lead[620103][]"][value="Cleaning"]')
    person.check('input[name="lead[620103][]"][value="Upgrade"]')
    person.check('input[name="lead[657261]"][value="Online"]')
    person.check('input[name="lead[620109]"]')
    person.fill('input[name="lead[620111]"]', "Call after 6 pm")
    person.fill('input[name="contact[11973]"]', "Ivan Petrov")
    person.fill('input[name="field[Home address]"]', "Tverskaya 1")
    person.click('input[type="submit"]')
    person.wait_for_load_state()
    person.screenshot(path=screenshot_path("pages-form-thanks"))
    # THEN the thank-you page, the lead and its main contact changed, and a note with it all
    assert "Thank you!" in person.content() and "could not be saved" not in person.content()
    lead = kommo.lead(seed.LEAD_OFFER)
    assert cf(lead, DEVICE) == ["Smart"] and sorted(cf(lead, SERVICE)) == ["Cleaning", "Upgrade"]
    assert cf(lead, PAYMENT) == ["Online"] and cf(lead, DELIVERY) == [True]
    assert cf(lead, COMMENT) == ["Call after 6 pm"]
    contact = kommo.contact(seed.CONTACT_IVAN)
    assert cf(contact, FULL_NAME) == ["Ivan Petrov"] and cf(contact, HOME) == ["Tverskaya 1"]
    [note] = lead_notes(kommo)
    assert "lead[620111]: Call after 6 pm" in note and "field[Home address]: Tverskaya 1" in note
    # WHEN the browser sends the same form again (a reload of the thank-you page)
    person.reload()
    person.wait_for_load_state()
    # THEN it was written once
    assert "Thank you!" in person.content() and len(lead_notes(kommo)) == 1


def test_a_page_with_a_trigger_link_and_a_form_of_every_type_with_bad_answers(
    site: str,
    aws_stack: StackResources,
    admin: ApiClient,
    manager: ApiClient,
    mailbox: str,
    smtp: SmtpTestServer,
    kommo: KommoStandIn,
    person: Any,
) -> None:
    # GIVEN a trigger link that adds a note, and a page with it and a form of every field type
    clicked = trigger(admin, "Clicked", "note", text="The client asked for a call")
    link = admin.post("/v1/links", {"name": "Call me", "trigger_ids": [clicked]})
    assert link.status == 201, link.body
    form = (
        '<form action="{formlink}" method="post">'
        f'<input name="lead[{seed.FIELD_PRODUCT}]" value="Mailer Team">'
        f'<input name="lead[{seed.FIELD_QUANTITY}]" value="a dozen">'
        f'<input type="checkbox" name="lead[{seed.FIELD_NEWSLETTER}]" value="1" checked>'
        f'<select name="lead[{seed.FIELD_DELIVERY}]">'
        "<option>Courier</option><option>Teleport</option></select>"
        f'<input type="checkbox" name="lead[{seed.FIELD_INTERESTS}][]" value="Analytics" checked>'
        f'<input type="radio" name="lead[{PAYMENT}]" value="Cash" checked>'
        '<input name="field[No such field]" value="x">'
        '<button type="submit">Send</button></form>'
    )
    page = web_page(
        admin,
        header="Offer for {{ lead.name }}",
        html="<h1>Hello {{ contact.first_name }}</h1>"
        f'<p><a href="{{triggerlink:{link.json()["id"]}}}">Call me</a></p>{form}',
    )
    html = sent_html(
        manager, aws_stack, smtp, subject="Your page", html=f'<a href="{{web:{page["page_id"]}}}">page</a>'
    )
    url = html.split('href="', 1)[1].split('"', 1)[0]
    assert url.startswith(f"{site}/p/") and url.endswith("/offer")
    # WHEN the client opens the page
    person.goto(url)
    person.screenshot(path=screenshot_path("pages-page"))
    assert (
        "Hello Иван" in person.content()
        and person.title() == "Offer for Поставка оборудования для ООО «Ромашка»"
    )
    # WHEN the client picks an option the field does not have, and sends the form
    person.select_option(f'select[name="lead[{seed.FIELD_DELIVERY}]"]', "Teleport")
    person.click("button[type=submit]")
    person.wait_for_load_state()
    person.screenshot(path=screenshot_path("pages-page-form-problems"))
    # THEN the good answers are written, the bad ones listed on the page and in the note
    content = person.content()
    assert "could not be saved" in content
    for bad in (f"lead[{seed.FIELD_QUANTITY}]", f"lead[{seed.FIELD_DELIVERY}]", "field[No such field]"):
        assert bad in content
    lead = kommo.lead(seed.LEAD_OFFER)
    assert cf(lead, seed.FIELD_PRODUCT) == ["Mailer Team"] and cf(lead, seed.FIELD_NEWSLETTER) == [True]
    assert cf(lead, seed.FIELD_INTERESTS) == ["Analytics"] and cf(lead, PAYMENT) == ["Cash"]
    assert cf(lead, seed.FIELD_QUANTITY) == ["12"]  # left as it was
    assert any("Not saved:" in n and "Teleport" in n for n in lead_notes(kommo))
    # WHEN the client goes back and clicks the trigger link
    person.go_back()
    person.get_by_text("Call me").click()
    person.wait_for_load_state()
    assert "Thank you!" in person.content()
    drain_actions(aws_stack)
    # THEN the link's trigger ran: its note is on the lead
    assert any("The client asked for a call" in n for n in lead_notes(kommo))


def test_an_expired_page_says_so(
    site: str, aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn, person: Any
) -> None:
    from tests.support.fixtures.automation import sent_from

    page = web_page(admin, lifetime_days=7)
    model = links.load_pages(seed.ACCOUNT_ID, [page["page_id"]])[page["page_id"]]
    message = sent_from("leads", seed.LEAD_OFFER)
    issued = int((datetime.now(UTC) - timedelta(days=8)).timestamp())
    person.goto(links.page_url(seed.ACCOUNT_ID, message.message_id, issued, model))
    person.screenshot(path=screenshot_path("pages-expired"))
    assert person.title() == "This page has expired"

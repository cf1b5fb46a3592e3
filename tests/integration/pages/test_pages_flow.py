"""Web pages, the web version and forms from an email sent to a lead, against the Kommo
stand-in and the pages function (docs/pages.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from mailer_core.automation import runner as automation
from mailer_core.base.clock import Clock
from mailer_core.events import jobs
from mailer_core.store.models import AutomationFactModel, MessageModel, TriggerModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.automation import LEAD, actions_jobs, runs, send_queued, stored, trigger
from tests.support.fixtures.pages import BASE, open_url, urls_in, web_page
from tests.support.smtp_servers import SmtpTestServer

pytestmark = pytest.mark.usefixtures("public")


def cf(entity: dict[str, Any] | None, field_id: int) -> list[dict[str, Any]] | None:
    assert entity is not None
    for item in entity.get("custom_fields_values") or []:
        if item["field_id"] == field_id:
            return list(item["values"])
    return None


def sent_email(
    manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, html: str
) -> tuple[str, str]:
    """An email to the demo lead, sent; its message id and its HTML part as received."""
    reply = manager.post("/v1/messages", {"entity": LEAD, "subject": "Offer", "html": html})
    assert reply.status == 202, reply.body
    message_id = str(reply.json()["id"])
    assert send_queued(aws_stack) == 1
    received = smtp.messages[-1].parsed()
    part = received.get_body(("html",))
    assert part is not None
    return message_id, str(part.get_content())


def test_placeholders_become_the_emails_signed_urls_and_each_opens(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, smtp: SmtpTestServer
) -> None:
    # GIVEN a page with the lead's name, and an email naming it, its form and its web version
    page = web_page(admin, html="<h1>Offer for {{ lead.name }}</h1>", header="Offer {{ lead.name }}")
    html = (
        f'<p><a href="{{web:{page["page_id"]}}}">page</a> <a href="{{weblink}}">web</a></p>'
        '<form action="{formlink}" method="post"><input name="lead[560001]"></form>'
    )
    # WHEN it is sent
    message_id, body = sent_email(manager, aws_stack, smtp, html)
    # THEN no placeholder URL is left, and each URL is ours
    assert "mailer.invalid" not in body
    found = urls_in(body)
    kinds = {u[len(BASE) + 1] for u in found}
    assert kinds == {"p", "w", "f"}, found
    page_url = next(u for u in found if u.startswith(BASE + "/p/"))
    assert page_url.endswith("/offer")
    # THEN the page opens with the lead's data, the header as the tab's title
    opened = open_url(page_url)
    assert opened.status == 200
    lead_name = "Mailer Pro"
    assert "<h1>Offer for " in opened.body and "<title>Offer " in opened.body
    assert lead_name in opened.body or "Offer for" in opened.body
    # THEN the web version shows the email itself with its form, a nonce added
    web = open_url(next(u for u in found if u.startswith(BASE + "/w/")))
    assert web.status == 200 and "/f/" in web.body and "_mailer_nonce" in web.body
    # THEN an altered token is refused
    assert open_url(page_url.replace("/p/", "/p/x")).status == 404
    assert stored(message_id).status == "sent"


def test_a_template_naming_a_page_that_does_not_exist_is_refused(admin: ApiClient) -> None:
    reply = admin.post("/v1/templates", {"name": "T", "subject": "S", "html": "<a href='{web:4242}'>x</a>"})
    assert reply.status == 422 and reply.json()["field"] == "html", reply.body
    assert "{web:4242}" in reply.json()["message"]


def test_an_email_whose_page_was_deleted_fails_with_the_reason_instead_of_a_dead_link(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, smtp: SmtpTestServer
) -> None:
    page = web_page(admin)
    reply = manager.post(
        "/v1/messages", {"entity": LEAD, "subject": "S", "html": f"<p>{{web:{page['page_id']}}}</p>"}
    )
    assert reply.status == 202
    assert admin.delete(f"/v1/web-pages/{page['page_id']}").status == 204
    send_queued(aws_stack)
    message = stored(str(reply.json()["id"]))
    assert message.status == "failed"
    assert f"{{web:{page['page_id']}}}" in (message.last_error or "")
    assert smtp.messages == []


def test_the_manuals_recipe_a_change_field_trigger_writes_a_working_page_url_into_the_lead(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    # GIVEN a page and a "change field" trigger whose value is its placeholder
    page = web_page(admin, html="<p>Hello {{ contact.first_name }}</p>")
    trigger_id = trigger(
        admin,
        "Page link",
        "field",
        entity="lead",
        field_id=seed.FIELD_PRODUCT,
        value=f"{{web:{page['page_id']}}}",
    )
    from tests.support.fixtures.automation import sent_from

    message = sent_from("leads", seed.LEAD_OFFER)
    # WHEN the trigger runs after sending
    job = jobs.RunJob(
        seed.ACCOUNT_ID,
        message.message_id,
        trigger_id,
        "sent",
        automation.run_id_for(message.message_id, "sent", trigger_id),
        int(datetime.now(UTC).timestamp() * 1000),
    )
    assert automation.Runner(clock=Clock()).run(job) == "done"
    # THEN the lead's field holds the page's URL, and it opens with the contact's name
    [value] = cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_PRODUCT) or []
    url = str(value["value"])
    assert url.startswith(BASE + "/p/") and "mailer.invalid" not in url
    opened = open_url(url)
    assert opened.status == 200 and "Hello Иван" in opened.body


def test_a_page_expires_after_its_lifetime(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    from mailer_core.pages import links

    from tests.support.fixtures.automation import sent_from

    page = web_page(admin, lifetime_days=2)
    message = sent_from("leads", seed.LEAD_OFFER)
    model = links.load_pages(seed.ACCOUNT_ID, [page["page_id"]])[page["page_id"]]
    fresh = links.page_url(seed.ACCOUNT_ID, message.message_id, int(datetime.now(UTC).timestamp()), model)
    old = int((datetime.now(UTC) - timedelta(days=3)).timestamp())
    stale = links.page_url(seed.ACCOUNT_ID, message.message_id, old, model)
    assert open_url(fresh).status == 200
    expired = open_url(stale)
    assert expired.status == 410 and "This page has expired" in expired.body


def test_opening_a_page_runs_its_trigger_once_per_entity_and_never_for_a_machine(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    from mailer_core.pages import links

    from tests.support.fixtures.automation import sent_from

    note = trigger(admin, "Opened", "note", text="The client opened the page")
    page = web_page(admin, trigger_id=note, metrika_id="12345678", gtm_id="GTM-ABCD123")
    model = links.load_pages(seed.ACCOUNT_ID, [page["page_id"]])[page["page_id"]]
    first, second = sent_from("leads", seed.LEAD_OFFER), sent_from("leads", seed.LEAD_OFFER)
    now = int(datetime.now(UTC).timestamp())
    url_one = links.page_url(seed.ACCOUNT_ID, first.message_id, now, model)
    url_two = links.page_url(seed.ACCOUNT_ID, second.message_id, now, model)
    # a scanner's fetch runs nothing
    assert open_url(url_one, user_agent="Mozilla/5.0 (compatible; proofpoint)").status == 200
    assert actions_jobs(aws_stack) == []
    # a person's opens, from two emails of the same lead: one run
    body = open_url(url_one).body
    open_url(url_one)
    open_url(url_two)
    queued = actions_jobs(aws_stack)
    assert len(queued) == 1 and isinstance(queued[0], jobs.EventJob)
    assert queued[0].trigger_ids == (note,) and queued[0].source == f"page{page['page_id']}"
    assert AutomationFactModel.get(seed.ACCOUNT_ID, f"pageopen#{page['page_id']}#leads:{seed.LEAD_OFFER}")
    # the analytics snippets are built in
    assert "mc.yandex.ru/metrika/tag.js" in body and 'ym(12345678,"init"' in body
    assert "googletagmanager.com/gtm.js" in body and "GTM-ABCD123" in body


def test_a_page_is_kept_for_its_cache_time_then_rendered_with_fresh_kommo_data(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    from mailer_core.pages import links

    from tests.support.fixtures.automation import sent_from

    page = web_page(admin, html="<p>Price {{ lead.price }}</p>", cache_minutes=5)
    model = links.load_pages(seed.ACCOUNT_ID, [page["page_id"]])[page["page_id"]]
    message = sent_from("leads", seed.LEAD_OFFER)
    url = links.page_url(seed.ACCOUNT_ID, message.message_id, int(datetime.now(UTC).timestamp()), model)
    before = open_url(url).body
    from mailer_core.kommo.accounts import client_for_account
    from mailer_core.store.models import AccountModel

    client_for_account(AccountModel.get(seed.ACCOUNT_ID)).update_entity(
        "leads", seed.LEAD_OFFER, {"price": 777}
    )
    assert open_url(url).body == before  # cached
    handler = load_handler("pages")
    real = handler.clock  # type: ignore[attr-defined]
    try:
        from mailer_core.base.clock import FakeClock

        handler.clock = FakeClock(current=datetime.now(UTC) + timedelta(minutes=6))  # type: ignore[attr-defined]
        from mailer_core.rendering import variables

        variables.forget_account_data()
        after = open_url(url).body
    finally:
        handler.clock = real
    assert "777" in after and after != before


# -- forms ---------------------------------------------------------------------------------------


@pytest.fixture
def form_url(aws_stack: StackResources, kommo: KommoStandIn) -> tuple[str, MessageModel]:
    from mailer_core.pages import links

    from tests.support.fixtures.automation import sent_from

    message = sent_from("leads", seed.LEAD_OFFER)
    return links.form_url(seed.ACCOUNT_ID, message.message_id, int(datetime.now(UTC).timestamp())), message


def test_a_form_writes_every_field_type_reports_bad_answers_and_adds_a_note(
    form_url: tuple[str, MessageModel], kommo: KommoStandIn
) -> None:
    url, _ = form_url
    answers = [
        (f"lead[{seed.FIELD_PRODUCT}]", "Mailer Team"),  # text
        (f"lead[{seed.FIELD_DELIVERY}]", "Courier"),  # select
        (f"lead[{seed.FIELD_INTERESTS}][]", "Analytics"),  # multiselect, replaces the chosen ones
        (f"lead[{seed.FIELD_INTERESTS}][]", "CRM integration"),
        (f"lead[{seed.FIELD_NEWSLETTER}]", "1"),  # flag
        (f"contact[{seed.FIELD_POSITION}]", "CTO"),  # the lead's main contact
        ("field[Quantity]", "many"),  # by name; text in a number field
        (f"lead[{seed.FIELD_OFFER_VALID_UNTIL}]", ""),  # empty: left alone
        ("lead[999999]", "x"),  # no such field
        ("comment", "call me"),  # not a field: only in the note
    ]
    reply = open_url(url, method="POST", body=urlencode(answers))
    assert reply.status == 200 and "Thank you!" in reply.body
    assert "field[Quantity]" in reply.body and "lead[999999]" in reply.body
    lead = kommo.lead(seed.LEAD_OFFER)
    assert cf(lead, seed.FIELD_PRODUCT) == [{"value": "Mailer Team"}]
    assert [v["value"] for v in cf(lead, seed.FIELD_DELIVERY) or []] == ["Courier"]
    assert sorted(v["value"] for v in cf(lead, seed.FIELD_INTERESTS) or []) == [
        "Analytics",
        "CRM integration",
    ]
    assert cf(lead, seed.FIELD_NEWSLETTER) == [{"value": True}]
    assert cf(lead, seed.FIELD_QUANTITY) == [{"value": "12"}]  # unchanged
    assert cf(lead, seed.FIELD_OFFER_VALID_UNTIL)  # unchanged
    contact = kommo.contact(seed.CONTACT_IVAN)
    assert cf(contact, seed.FIELD_POSITION) == [{"value": "CTO"}]
    [note] = [n for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]
    text = note["params"]["text"]
    assert "comment: call me" in text and "Not saved:" in text and "field[Quantity]" in text


def test_a_form_posted_twice_is_written_once_and_a_get_form_works(
    form_url: tuple[str, MessageModel], kommo: KommoStandIn
) -> None:
    url, _ = form_url
    body = urlencode([(f"lead[{seed.FIELD_PRODUCT}]", "Once"), ("_mailer_nonce", "n1")])
    assert open_url(url, method="POST", body=body).status == 200
    assert open_url(url, method="POST", body=body).status == 200
    assert len([n for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]) == 1
    # the manual's forms have no method: a GET with the answers in the query
    again = open_url(url + "?" + urlencode([(f"lead[{seed.FIELD_PRODUCT}]", "Again")]))
    assert again.status == 200
    assert cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_PRODUCT) == [{"value": "Again"}]


def test_a_forged_form_token_an_oversized_body_and_too_many_posts_write_nothing(
    form_url: tuple[str, MessageModel], kommo: KommoStandIn
) -> None:
    url, _ = form_url
    field = f"lead[{seed.FIELD_PRODUCT}]"
    assert open_url(url[:-3] + "AAA", method="POST", body=urlencode([(field, "x")])).status == 404
    assert open_url(url, method="POST", body=urlencode([(field, "x" * 70_000)])).status == 413
    statuses = [open_url(url, method="POST", body=urlencode([(field, f"v{i}")])).status for i in range(12)]
    assert statuses[:10] == [200] * 10 and statuses[-1] == 429
    assert len([n for n in kommo.notes("leads") if n["entity_id"] == seed.LEAD_OFFER]) == 10


def test_trigger_field_value_naming_an_unknown_page_is_refused(admin: ApiClient) -> None:
    reply = admin.post(
        "/v1/triggers",
        {"name": "x", "type": "field", "params": {"entity": "lead", "field_id": 1, "value": "{web:5555}"}},
    )
    assert reply.status == 422 and reply.json()["field"] == "params.value"


def test_web_page_settings_are_checked(admin: ApiClient, manager: ApiClient) -> None:
    assert web_page(admin)["page_id"] == 1001
    assert web_page(admin)["page_id"] == 1002
    for bad in ({"title": "Not a slug"}, {"metrika_id": "abc"}, {"gtm_id": "UA-1"}, {"lifetime_days": 0}):
        reply = admin.post("/v1/web-pages", {"name": "x", **bad})
        assert reply.status == 422, (bad, reply.body)
        assert reply.json()["field"] == next(iter(bad))
    assert admin.post("/v1/web-pages", {"name": "x", "domain": "promo"}).status == 422
    assert manager.put("/v1/web-pages/domains", {"domains": ["promo"]}).status == 403
    assert admin.put("/v1/web-pages/domains", {"domains": ["a", "b", "c", "d"]}).status == 422
    assert admin.put("/v1/web-pages/domains", {"domains": ["promo", "pages.example.com"]}).status == 200
    assert admin.post("/v1/web-pages", {"name": "x", "domain": "promo"}).status == 201
    listed = admin.get("/v1/web-pages").json()
    assert listed["domains"] == ["promo", "pages.example.com"] and len(listed["items"]) == 3


_ = (TriggerModel, runs)


def test_the_preview_reports_a_page_that_does_not_exist_and_shows_no_placeholder_url(
    admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    page = web_page(admin)
    html = (
        f'<a href="{{web:{page["page_id"]}}}">a</a> <a href="{{web:7777}}">b</a> <a href="{{weblink}}">c</a>'
    )
    reply = manager.post(
        "/v1/messages/preview", {"entity": LEAD, "subject": "S", "html": html, "mailbox_id": mailbox}
    )
    assert reply.status == 200, reply.body
    shown = reply.json()
    assert "mailer.invalid" not in shown["html"] and shown["html"].count('href="#"') == 3
    assert "web(7777)" in shown["missing"] and f"web({page['page_id']})" not in shown["missing"]

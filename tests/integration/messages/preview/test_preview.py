"""POST /v1/messages/preview against the Kommo stand-in: every variable family, signature, missing."""

from __future__ import annotations

from typing import Any

import pytest
from mailer_core.rendering import variables

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.api_client import ApiClient
from tests.support.fixtures.templates import COLLEAGUE_ID, OFFER, mailbox_body
from tests.support.kommo_helpers import add_kommo_user

LEAD = {"type": "leads", "id": seed.LEAD_OFFER}


def nbsp(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def preview(client: ApiClient, **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/messages/preview", body)
    assert reply.status == 200, reply.body
    return dict(reply.json())


@pytest.fixture
def mailbox(manager: ApiClient) -> dict[str, Any]:
    reply = manager.post("/v1/mailboxes", mailbox_body())
    assert reply.status == 201, reply.body
    return dict(reply.json())


@pytest.mark.usefixtures("mailbox")
def test_a_template_previewed_for_a_lead_as_the_client_would_see_it(
    manager: ApiClient, kommo: KommoStandIn
) -> None:
    template = manager.post("/v1/templates", OFFER).json()
    shown = preview(manager, template_id=template["id"], entity=LEAD)

    assert shown["subject"] == "Предложение для Поставка оборудования для ООО «Ромашка»"
    assert "Ивану Петрову, добрый день!" in shown["html"]
    assert "сто пятьдесят тысяч рублей 00 копеек" in shown["html"]
    # the account has no trigger link 8: "#", and the preview says so (tests/integration/links)
    assert 'href="#"' in shown["html"]
    # the manager's own signature, with its variables filled in
    assert "Мария Менеджер, +7 495 111-22-33" in shown["html"]
    assert "Ивану Петрову, добрый день!" in shown["text"] and "Мария Менеджер" in shown["text"]
    assert shown["missing"] == ["triggerlink(8)"]


@pytest.mark.usefixtures("mailbox", "kommo")
def test_every_variable_family(manager: ApiClient) -> None:
    html = "\n".join(
        [
            "lead: {{ lead.id }}|{{ lead.name }}|{{ lead.price }}|{{ lead.stage }}|{{ lead.status.id }}",
            "pipeline: {{ lead.pipeline }}|responsible: {{ lead.responsible }}"
            " <{{ lead.responsible.email }}>",
            "tags: {{ lead.tags }}|url: {{ lead.url }}",
            "cf: {{ lead.cf['Product'] }}|{{ lead.cf[560002] }}|{{ lead.cf['560003'] }}"
            "|{{ lead.cf['interests'] }}",
            "cf2: {{ lead.cf['Offer valid until'] }}|{{ lead.cf['Newsletter consent'] }}"
            "|{{ lead.cf['Quantity'] + 1 }}",
            "contact: {{ contact.name }}|{{ contact.first_name }}|{{ contact.last_name }}"
            "|{{ contact.email }}",
            "contact2: {{ contact.phone }}|{{ contact.position }}|{{ contact.cf['POSITION'] }}"
            "|{{ contact.gender }}",
            "contacts: {% for c in contacts %}{{ c.first_name }}"
            " <{{ c.emails|join_values('; ') }}>,{% endfor %}",
            "company: {{ company.name }}|{{ company.phone }}|{{ company.email }}|{{ company.web }}",
            "manager: {{ manager.name }}|{{ manager.email }}|{{ manager.phone }}|{{ user.name }}",
            "message: {{ message.id }}|{{ message.subject }}|{{ message.sent_at is not none }}",
            "today: {{ today is not none }}|account: {{ account.subdomain }}",
            "legacy: {subject}|{id}",
        ]
    )
    shown = preview(
        manager, subject="Offer for {{ contact.first_name }}", html=html, entity=LEAD, locale="ru"
    )
    body = shown["html"].split('<div class="mailer-signature">')[0]
    lines = dict(line.split(": ", 1) for line in body.replace("&lt;", "<").replace("&gt;", ">").splitlines())
    assert (
        lines["lead"] == f"{seed.LEAD_OFFER}|Поставка оборудования для ООО «Ромашка»|150000|First contact"
        f"|{seed.STATUS_INCOMING}"
    )
    assert lines["pipeline"] == "Sales|responsible: Мария Менеджер <maria.manager@example.com>"
    assert lines["tags"] == f"VIP|url: https://mailerdemo.kommo.com/leads/detail/{seed.LEAD_OFFER}"
    assert lines["cf"] == "Mailer Pro, annual plan|12|Courier|Email marketing, Analytics"
    assert lines["cf2"] == "24.12.2025|Да|13"
    assert lines["contact"] == "Иван Петров|Иван|Петров|ivan.petrov@example.com"
    assert lines["contact2"] == "+7 495 123-45-67|Директор по закупкам|Директор по закупкам|masc"
    assert (
        lines["contacts"]
        == "Иван <ivan.petrov@example.com>,Olga <olga.smirnova@example.com; olga.home@example.org>,"
    )
    assert (
        lines["company"] == "ООО «Ромашка»|+7 495 000-11-22|office@example.com|https://romashka.example.com"
    )
    assert lines["manager"] == "Мария Менеджер|maria.manager@example.com|+7 495 111-22-33|Мария Менеджер"
    assert lines["message"] == "preview|Offer for Иван|Да"
    assert lines["today"] == "Да|account: mailerdemo"
    assert lines["legacy"] == "Offer for Иван|preview"
    assert shown["subject"] == "Offer for Иван"


@pytest.mark.usefixtures("mailbox", "kommo")
def test_variables_without_a_value_are_listed_and_render_empty(manager: ApiClient) -> None:
    shown = preview(
        manager,
        subject="{{ contact.first_name }} {{ lead.cf['Delivery date'] }}",
        html="<p>{{ lead.cf['Discount'] }}{{ company.name }}{{ unknown.thing }}{{ lead.cf[999] }}</p>",
        entity={"type": "leads", "id": seed.LEAD_CONSULTING},  # no company, no custom fields
    )
    assert shown["subject"] == "Мария"
    assert shown["html"].startswith("<p></p>")
    assert shown["missing"] == [
        "lead.cf['Delivery date']",
        "lead.cf['Discount']",
        "company.name",
        "unknown.thing",
        "lead.cf[999]",
    ]


@pytest.mark.usefixtures("mailbox", "kommo")
def test_a_contact_and_a_company_can_be_the_entity(manager: ApiClient) -> None:
    shown = preview(
        manager,
        subject="{{ contact.name }} / {{ company.name }}",
        html="-",
        entity={"type": "contacts", "id": seed.CONTACT_OLGA},
    )
    assert shown["subject"] == "Olga Smirnova / ООО «Ромашка»"
    shown = preview(
        manager,
        subject="{{ company.name }}: {{ contacts|length }}",
        html="-",
        entity={"type": "companies", "id": seed.COMPANY_ROMASHKA},
    )
    assert shown["subject"] == "ООО «Ромашка»: 2"


@pytest.mark.usefixtures("mailbox")
def test_disabling_the_signature_and_placing_it_by_hand(manager: ApiClient, kommo: KommoStandIn) -> None:
    template = manager.post("/v1/templates", {**OFFER, "disable_signature": True}).json()
    assert "Мария Менеджер, +7" not in preview(manager, template_id=template["id"], entity=LEAD)["html"]
    placed = preview(manager, subject="x", html="<div>{{ manager.signature }}</div><p>P.S.</p>")
    assert placed["html"].count("+7 495 111-22-33") == 1
    assert placed["html"].index("+7 495") < placed["html"].index("P.S.")


@pytest.mark.usefixtures("mailbox")
def test_a_public_template_shows_the_senders_own_signature(
    manager: ApiClient, colleague: ApiClient, sample: Seed, request: Any
) -> None:
    # the colleague is a Kommo user who may see every lead (Kommo's rights are honoured)
    add_kommo_user(sample, COLLEAGUE_ID, "Пётр Коллега", "petr@example.com")
    request.getfixturevalue("kommo")
    public = manager.post("/v1/templates", {**OFFER, "is_public": True}).json()
    colleague.post(
        "/v1/mailboxes", mailbox_body(sender_name="Пётр Коллега", signature="<p>Пётр, отдел продаж</p>")
    )
    shown = preview(colleague, template_id=public["id"], entity=LEAD)
    assert "Пётр, отдел продаж" in shown["html"] and "Мария Менеджер" not in shown["html"]


@pytest.mark.usefixtures("mailbox")
def test_css_is_inlined_and_pasted_images_stay_visible(manager: ApiClient) -> None:
    html = (
        "<html><head><style>p { color: #c00 }</style></head><body><p>Hi</p>"
        '<img src="data:image/png;base64,iVBORw0KGgo="></body></html>'
    )
    shown = preview(manager, subject="x", html=html)
    assert '<p style="color: #c00;">Hi</p>' in shown["html"]
    assert "data:image/png;base64" in shown["html"]


@pytest.mark.usefixtures("mailbox", "kommo")
def test_a_preview_costs_a_few_kommo_requests(manager: ApiClient, kommo: KommoStandIn) -> None:
    variables.forget_account_data()
    before = len(kommo.requests)
    preview(manager, **{k: v for k, v in OFFER.items() if k in ("subject", "html")}, entity=LEAD)
    # A request the stand-in refused with 429 (its one-second window under a loaded machine) and
    # the client retried is one call, not two.
    paths = [r.path for r in kommo.requests[before:] if r.status != 429]
    # the manager's rights (entity_rights), the lead (with contact links), its contacts, its
    # company; users, pipelines, account once
    assert len(paths) <= 7, paths
    again = len(kommo.requests)
    preview(manager, subject="again", html="{{ lead.name }}", entity=LEAD)
    fresh = [r.path for r in kommo.requests[again:] if r.status != 429]
    # fresh CRM data for every preview; users, pipelines and the account are kept a while
    assert sorted(fresh) == ["/api/v4/companies", "/api/v4/contacts", "/api/v4/leads"], fresh


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"html": "{{ lead.price|in_words(currency='XYZ') }}", "subject": "x"}, 422, "html"),
        ({"html": "ok", "subject": "{{ broken"}, 422, "subject"),
        ({"html": "x"}, 200, None),
        ({}, 422, "template_id"),
        ({"template_id": "01NOSUCHTEMPLATE0000000000"}, 404, "template_id"),
        ({"subject": "x", "html": "x", "entity": {"type": "leads", "id": 24999999}}, 404, None),
        ({"subject": "x", "html": "x", "mailbox_id": "nope"}, 422, "mailbox_id"),
        ({"subject": "x", "html": "x", "colour": "red"}, 422, "colour"),
    ],
)
@pytest.mark.usefixtures("mailbox", "kommo")
def test_preview_errors_name_the_field(
    manager: ApiClient, body: dict[str, Any], status: int, field: str | None
) -> None:
    body.setdefault("entity", LEAD)
    reply = manager.post("/v1/messages/preview", body)
    assert reply.status == status, reply.body
    if field:
        assert reply.json()["field"] == field


@pytest.mark.parametrize("name", ["Offer\r\nBcc: victim@example.com", "<script>alert(1)</script>"])
@pytest.mark.usefixtures("mailbox")
def test_crm_data_cannot_inject_headers_or_markup(
    manager: ApiClient, sample: Seed, name: str, request: Any
) -> None:
    sample.leads[0]["name"] = name
    request.getfixturevalue("kommo")
    shown = preview(manager, subject="Re: {{ lead.name }}", html="<p>{{ lead.name }}</p>", entity=LEAD)
    assert "\n" not in shown["subject"] and "\r" not in shown["subject"]
    assert "<script>" not in shown["html"]


@pytest.mark.usefixtures("mailbox")
def test_kommos_rights_decide_whose_lead_a_manager_may_preview_and_mail(
    manager: ApiClient, sample: Seed, request: Any
) -> None:
    # GIVEN Kommo lets the manager see only their own leads (view "M"), and the offer's lead is
    # the administrator's
    sample.leads[0]["responsible_user_id"] = seed.ADMIN_USER_ID
    request.getfixturevalue("kommo")
    body = {"subject": "Hi {{ lead.name }}", "html": "<p>{{ lead.price }}</p>", "entity": LEAD}
    # WHEN the manager previews it, or mails it
    seen = manager.post("/v1/messages/preview", body)
    mailed = manager.post("/v1/messages", {**body, "to": ["client@example.com"]})
    # THEN both answer as for a lead that does not exist, and nothing of it is shown
    assert (seen.status, seen.json()["field"]) == (404, "entity")
    assert (mailed.status, mailed.json()["field"]) == (404, "entity")
    assert sample.leads[0]["name"] not in seen.body
    # AND their own lead (another of the demo's) previews as before
    own = {**body, "entity": {"type": "leads", "id": sample.leads[1]["id"]}}
    assert manager.post("/v1/messages/preview", own).status == 200


@pytest.mark.usefixtures("mailbox")
def test_a_manager_kommo_lets_see_every_lead_previews_any(
    manager: ApiClient, sample: Seed, request: Any
) -> None:
    sample.leads[0]["responsible_user_id"] = seed.ADMIN_USER_ID
    manager_user = next(u for u in sample.users if u["id"] == seed.MANAGER_USER_ID)
    manager_user["rights"]["leads"] = {**manager_user["rights"]["leads"], "view": "A"}
    request.getfixturevalue("kommo")
    assert (
        manager.post(
            "/v1/messages/preview", {"subject": "x", "html": "{{ lead.name }}", "entity": LEAD}
        ).status
        == 200
    )

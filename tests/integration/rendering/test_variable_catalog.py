"""GET /v1/variables: the editor's variables from the account's real Kommo fields
(docs/letters.md#variables)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mailer_core.rendering import variable_catalog

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.api_client import ApiClient


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    variable_catalog.forget()
    yield
    variable_catalog.forget()


def test_every_custom_field_is_listed_by_name_id_and_code_with_its_modifiers(
    manager: ApiClient, kommo: KommoStandIn
) -> None:
    reply = manager.get("/v1/variables")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["custom_fields_error"] is None
    leads = {f["name"]: f for f in body["custom_fields"]["lead"]}
    assert set(leads) == {
        "Product",
        "Quantity",
        "Delivery",
        "Interests",
        "Offer valid until",
        "Newsletter consent",
    }
    delivery = leads["Delivery"]
    assert delivery["by_name"] == '{{ lead.cf["Delivery"] }}'
    assert delivery["by_id"] == f"{{{{ lead.cf[{seed.FIELD_DELIVERY}] }}}}"
    assert delivery["values"] == ["Pickup", "Courier", "Post"]
    assert "money" in leads["Quantity"]["modifiers"] and leads["Interests"]["modifiers"] == ["join_values"]
    email = next(f for f in body["custom_fields"]["contact"] if f["code"] == "EMAIL")
    assert email["by_code"] == '{{ contact.cf["EMAIL"] }}'
    assert body["custom_fields"]["company"]
    standard = {v["variable"] for group in body["standard"].values() for v in group}
    assert {
        "{{ lead.name }}",
        "{{ contact.first_name }}",
        "{{ manager.email }}",
        "{{ company.name }}",
    } <= standard
    assert "in_words" in body["modifiers"] and "{triggerlink:N}" in body["placeholders"]
    assert "{template}" in body["placeholders"]


def test_every_listed_variable_renders_in_a_preview(manager: ApiClient, kommo: KommoStandIn) -> None:
    from tests.support.fixtures.templates import mailbox_body

    manager.post("/v1/mailboxes", mailbox_body())
    body = manager.get("/v1/variables").json()
    names = [f["by_name"] for group in body["custom_fields"].values() for f in group]
    names += [v["variable"] for group in body["standard"].values() for v in group]
    html = "<p>" + "|".join(names) + "</p>"
    preview = manager.post(
        "/v1/messages/preview",
        {"subject": "s", "html": html, "entity": {"type": "leads", "id": seed.LEAD_OFFER}},
    )
    assert preview.status == 200, preview.body


def test_the_fields_are_read_once_a_minute_not_on_every_opening(
    manager: ApiClient, kommo: KommoStandIn
) -> None:
    manager.get("/v1/variables")
    manager.get("/v1/variables")
    reads = [r for r in kommo.requests if r.path.endswith("/custom_fields")]
    assert len(reads) == 3  # leads, contacts, companies: once


def test_an_account_without_kommo_gets_the_standard_variables_and_the_reason(manager: ApiClient) -> None:
    body = manager.get("/v1/variables").json()
    assert body["custom_fields"] == {"lead": [], "contact": [], "company": []}
    assert "not connected" in body["custom_fields_error"]
    assert body["standard"]["lead"]

"""The client's API v4 calls against the stand-in: reads, and every write a trigger needs, read back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.kommo.client import KommoClient, NewNote, NewTask
from mailer_core.kommo.fields import by_id, current_value, field_value

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed, custom_field
from devstack.kommo_standin.server import KommoStandIn
from tests.support.kommo_helpers import TOKEN, Api

NOTES = 560101
CHANNEL = 560102
BUDGET = 560103
CALL_AT = 560104
BIRTHDAY = 560105
LANDING = 560106
ADDRESS = 560107


@pytest.fixture
def rich(sample: Seed, clock: FakeClock) -> Iterator[tuple[KommoStandIn, KommoClient]]:
    """The demo account with a lead field of every other type the trigger supports."""
    sample.custom_fields["leads"] += [
        custom_field(NOTES, "leads", "Notes", "textarea"),
        custom_field(
            CHANNEL, "leads", "Channel", "radiobutton", enums=[(593001, "Email"), (593002, "Phone")]
        ),
        custom_field(BUDGET, "leads", "Budget", "price"),
        custom_field(CALL_AT, "leads", "Call at", "date_time"),
        custom_field(BIRTHDAY, "leads", "Birthday", "birthday"),
        custom_field(LANDING, "leads", "Landing page", "url"),
        custom_field(ADDRESS, "leads", "Address", "streetaddress"),
    ]
    with KommoStandIn(sample, clock=clock) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        yield standin, KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock)


def values_of(entity: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    return {fv["field_id"]: fv["values"] for fv in entity.get("custom_fields_values") or []}


def test_reads_account_users_fields_lead_and_companies(client: KommoClient) -> None:
    account = client.account(with_=("task_types",))
    assert account["id"] == seed.ACCOUNT_ID
    assert [t["id"] for t in account["_embedded"]["task_types"]] == [1, 2]
    assert {u["id"] for u in client.users()} == {seed.ADMIN_USER_ID, seed.MANAGER_USER_ID}
    assert [f["code"] for f in client.custom_fields("contacts")] == ["PHONE", "EMAIL", "POSITION"]
    lead = client.get_lead(seed.LEAD_OFFER)
    assert [(c["id"], c["is_main"]) for c in lead["_embedded"]["contacts"]] == [
        (seed.CONTACT_IVAN, True),
        (seed.CONTACT_OLGA, False),
    ]
    assert [c["id"] for c in lead["_embedded"]["companies"]] == [seed.COMPANY_ROMASHKA]
    assert list(client.companies_by_ids([seed.COMPANY_ROMASHKA, 999])) == [seed.COMPANY_ROMASHKA]


def test_custom_field_values_of_every_type_are_written_and_read_back(
    rich: tuple[KommoStandIn, KommoClient],
) -> None:
    standin, client = rich
    fields = client.custom_fields("leads")
    lead = client.get_lead(seed.LEAD_OFFER)

    def set_(field_id: int, value: Any) -> dict[str, Any]:
        return field_value(by_id(fields, field_id), value, current=current_value(lead, field_id))

    client.set_custom_fields(
        "leads",
        seed.LEAD_OFFER,
        [
            set_(seed.FIELD_PRODUCT, "Mailer Enterprise"),
            set_(seed.FIELD_QUANTITY, "1 000,5"),
            set_(seed.FIELD_DELIVERY, "Post"),
            set_(seed.FIELD_INTERESTS, "CRM integration"),
            set_(seed.FIELD_OFFER_VALID_UNTIL, "2026-12-31"),
            set_(seed.FIELD_NEWSLETTER, "0"),
            set_(NOTES, "Line one\nLine two"),
            set_(CHANNEL, "Phone"),
            set_(BUDGET, "2500"),
            set_(CALL_AT, "2026-12-01 15:30"),
            set_(BIRTHDAY, "1990-05-17"),
            set_(LANDING, "https://example.com/offer"),
            set_(ADDRESS, "Tverskaya 1, Moscow"),
        ],
    )
    back = values_of(client.get_lead(seed.LEAD_OFFER))
    assert back[seed.FIELD_PRODUCT] == [{"value": "Mailer Enterprise"}]
    assert back[seed.FIELD_QUANTITY] == [{"value": "1000.5"}]
    assert back[seed.FIELD_DELIVERY] == [{"value": "Post", "enum_id": 591003, "enum_code": None}]
    # a multiselect value is added to the chosen ones
    assert [v["value"] for v in back[seed.FIELD_INTERESTS]] == [
        "Email marketing",
        "Analytics",
        "CRM integration",
    ]
    assert back[seed.FIELD_OFFER_VALID_UNTIL] == [
        {"value": int(datetime(2026, 12, 31, tzinfo=UTC).timestamp())}
    ]
    assert back[seed.FIELD_NEWSLETTER] == [{"value": False}]
    assert back[NOTES] == [{"value": "Line one\nLine two"}]
    assert back[CHANNEL] == [{"value": "Phone", "enum_id": 593002, "enum_code": None}]
    assert back[BUDGET] == [{"value": "2500"}]
    assert back[CALL_AT] == [{"value": int(datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp())}]
    assert back[BIRTHDAY] == [{"value": int(datetime(1990, 5, 17, tzinfo=UTC).timestamp())}]
    assert back[LANDING] == [{"value": "https://example.com/offer"}]
    assert back[ADDRESS] == [{"value": "Tverskaya 1, Moscow"}]
    assert [c.method for c in standin.changes] == ["PATCH"]


def test_reset_clears_any_field_and_switches_a_checkbox_off(client: KommoClient) -> None:
    fields = client.custom_fields("leads")
    client.set_custom_fields(
        "leads",
        seed.LEAD_OFFER,
        [
            field_value(by_id(fields, f), "{reset}")
            for f in (seed.FIELD_PRODUCT, seed.FIELD_INTERESTS, seed.FIELD_DELIVERY, seed.FIELD_NEWSLETTER)
        ],
    )
    back = values_of(client.get_lead(seed.LEAD_OFFER))
    assert (
        seed.FIELD_PRODUCT not in back
        and seed.FIELD_INTERESTS not in back
        and seed.FIELD_DELIVERY not in back
    )
    assert back[seed.FIELD_NEWSLETTER] == [{"value": False}]
    assert back[seed.FIELD_QUANTITY] == [{"value": "12"}]  # the others are untouched


def test_a_contacts_email_and_phone_are_added_and_a_companys_url_replaced(client: KommoClient) -> None:
    contact = client.get_entity("contacts", seed.CONTACT_IVAN)
    fields = client.custom_fields("contacts")
    email = by_id(fields, seed.FIELD_EMAIL)
    phone = by_id(fields, seed.FIELD_PHONE)
    client.set_custom_fields(
        "contacts",
        seed.CONTACT_IVAN,
        [
            field_value(
                email, "ivan@home.example", enum_code="PRIV", current=current_value(contact, seed.FIELD_EMAIL)
            ),
            field_value(
                phone, "+7 900 000-00-00", enum_code="MOB", current=current_value(contact, seed.FIELD_PHONE)
            ),
        ],
    )
    back = values_of(client.get_entity("contacts", seed.CONTACT_IVAN))
    assert [(v["value"], v["enum_code"]) for v in back[seed.FIELD_EMAIL]] == [
        ("ivan.petrov@example.com", "WORK"),
        ("ivan@home.example", "PRIV"),
    ]
    assert [v["enum_code"] for v in back[seed.FIELD_PHONE]] == ["WORK", "MOB"]
    web = by_id(client.custom_fields("companies"), seed.FIELD_COMPANY_WEB)
    client.set_custom_fields(
        "companies", seed.COMPANY_ROMASHKA, [field_value(web, "https://romashka.example/new")]
    )
    company = client.get_entity("companies", seed.COMPANY_ROMASHKA)
    assert values_of(company)[seed.FIELD_COMPANY_WEB] == [{"value": "https://romashka.example/new"}]


@pytest.mark.parametrize(
    ("entity_type", "entity_id"),
    [("leads", seed.LEAD_OFFER), ("contacts", seed.CONTACT_JOHN), ("companies", seed.COMPANY_ROMASHKA)],
)
def test_tags_are_added_and_removed_without_touching_the_others(
    client: KommoClient, entity_type: Any, entity_id: int
) -> None:
    client.change_tags(entity_type, entity_id, add=["Opened", "Clicked"])
    client.change_tags(entity_type, entity_id, delete=["clicked"])
    names = [t["name"] for t in client.get_entity(entity_type, entity_id)["_embedded"]["tags"]]
    assert names == (["VIP", "Opened"] if entity_type == "leads" else ["Opened"])


def test_a_lead_moves_stage_and_pipeline(client: KommoClient) -> None:
    client.move_lead(seed.LEAD_OFFER, status_id=seed.STATUS_OFFER_SENT)
    assert client.get_lead(seed.LEAD_OFFER)["status_id"] == seed.STATUS_OFFER_SENT
    client.move_lead(seed.LEAD_OFFER, status_id=seed.STATUS_WON, pipeline_id=seed.PIPELINE_ID)
    lead = client.get_lead(seed.LEAD_OFFER)
    assert (lead["status_id"], lead["pipeline_id"]) == (142, seed.PIPELINE_ID) and lead["closed_at"]


def test_tasks_and_notes_are_created(standin: KommoStandIn, client: KommoClient) -> None:
    [task_id] = client.add_tasks(
        [
            NewTask(
                "Call the client",
                1795600000,
                "leads",
                seed.LEAD_OFFER,
                responsible_user_id=seed.MANAGER_USER_ID,
            )
        ]
    )
    [task] = standin.tasks
    assert (task["id"], task["text"], task["responsible_user_id"]) == (
        task_id,
        "Call the client",
        seed.MANAGER_USER_ID,
    )
    note_ids = client.add_notes("leads", [NewNote(seed.LEAD_OFFER, "The email was opened")])
    assert [n["id"] for n in standin.notes("leads")] == note_ids
    assert standin.notes("leads")[0]["params"] == {"text": "The email was opened"}


def test_a_lead_is_created_with_a_new_contact_or_for_an_existing_one(client: KommoClient) -> None:
    email = {"field_code": "EMAIL", "values": [{"value": "nina@example.com", "enum_code": "WORK"}]}
    [created, for_john] = client.create_leads_complex(
        [
            {
                "name": "Opened the offer",
                "price": 100,
                "_embedded": {
                    "contacts": [{"first_name": "Nina", "custom_fields_values": [email]}],
                    "tags": [{"name": "mailer"}],
                },
            },
            {"name": "Clicked the link", "_embedded": {"contacts": [{"id": seed.CONTACT_JOHN}]}},
        ]
    )
    assert created["merged"] is False and created["company_id"] is None
    lead = client.get_lead(created["id"])
    assert lead["_embedded"]["contacts"][0]["id"] == created["contact_id"]
    assert [t["name"] for t in lead["_embedded"]["tags"]] == ["mailer"]
    [nina] = client.entity_contacts("leads", created["id"])
    assert (nina.name, nina.emails, nina.is_main) == ("Nina", ("nina@example.com",), True)
    assert for_john["contact_id"] == seed.CONTACT_JOHN
    assert [c.id for c in client.entity_contacts("leads", for_john["id"])] == [seed.CONTACT_JOHN]


def test_a_contact_is_linked_to_a_lead_once_and_can_become_main(
    client: KommoClient, api: Api, clock: FakeClock
) -> None:
    client.link_lead(seed.LEAD_REDESIGN, contact_id=seed.CONTACT_OLGA)
    client.link_lead(seed.LEAD_REDESIGN, contact_id=seed.CONTACT_OLGA)  # linking twice is one link
    assert [(c.id, c.is_main) for c in client.entity_contacts("leads", seed.LEAD_REDESIGN)] == [
        (seed.CONTACT_JOHN, True),
        (seed.CONTACT_OLGA, False),
    ]
    client.link_lead(seed.LEAD_REDESIGN, contact_id=seed.CONTACT_OLGA, is_main=True)
    assert [(c.id, c.is_main) for c in client.entity_contacts("leads", seed.LEAD_REDESIGN)] == [
        (seed.CONTACT_OLGA, True),
        (seed.CONTACT_JOHN, False),
    ]
    clock.advance(1)  # a new second for the stand-in's rate window
    links = api("GET", f"/api/v4/leads/{seed.LEAD_REDESIGN}/links")
    assert links.status == 200 and links.content_type.startswith("application/hal+json")
    assert [(link["to_entity_id"], link["metadata"]) for link in links.body["_embedded"]["links"]] == [
        (seed.CONTACT_JOHN, {"main_contact": False}),
        (seed.CONTACT_OLGA, {"main_contact": True}),
    ]

"""Every trigger type against the Kommo stand-in, and the entity each one acts on.

The runner is called the way the actions function calls it, with a message as the send worker
leaves it (sent from a lead, a contact or a company).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from mailer_core.automation import runner as automation
from mailer_core.base.clock import Clock, FakeClock
from mailer_core.events import jobs
from mailer_core.store.models import MessageModel, TriggerModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.fixtures.automation import SENT, events_of, runs, sent_from


def run(kind: str, params: dict[str, Any], message: MessageModel, *, clock: FakeClock | None = None) -> str:
    trigger = TriggerModel(
        seed.ACCOUNT_ID,
        f"T{next(runs):025d}",
        name=f"a {kind}",
        type=kind,
        params=params,
        delay_seconds=0,
        user_id=seed.ADMIN_USER_ID,
        created_at=SENT,
        updated_at=SENT,
    )
    trigger.save()
    job = jobs.RunJob(
        seed.ACCOUNT_ID,
        message.message_id,
        trigger.trigger_id,
        "sent",
        automation.run_id_for(message.message_id, "sent", trigger.trigger_id),
        int(SENT.timestamp() * 1000),
    )
    return automation.Runner(clock=clock or Clock()).run(job)  # real time: Kommo's rate limit is real


def cf(entity: dict[str, Any] | None, field_id: int) -> list[dict[str, Any]] | None:
    assert entity is not None
    for item in entity.get("custom_fields_values") or []:
        if item["field_id"] == field_id:
            return list(item["values"])
    return None


@pytest.fixture
def lead_message(aws_stack: StackResources, kommo: KommoStandIn) -> MessageModel:
    return sent_from("leads", seed.LEAD_OFFER)


def test_set_task_for_the_leads_responsible_user_with_the_deadline_and_variables(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    clock = FakeClock(current=SENT + timedelta(hours=2))
    outcome = run(
        "task",
        {"text": "Call: {subject} sent {sended_at}", "deadline_seconds": 3600, "task_type_id": 2},
        lead_message,
        clock=clock,
    )
    assert outcome == "done"
    (task,) = kommo.tasks
    assert task["entity_type"] == "leads" and task["entity_id"] == seed.LEAD_OFFER
    assert task["text"] == "Call: Коммерческое предложение sent 2026-11-24 12:30"  # Moscow time
    assert task["complete_till"] == int(clock.now().timestamp()) + 3600
    assert task["task_type_id"] == 2
    assert task["responsible_user_id"] == kommo.lead(seed.LEAD_OFFER)["responsible_user_id"]  # type: ignore[index]


def test_set_task_for_a_chosen_user(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    run("task", {"text": "Check", "responsible": seed.ADMIN_USER_ID, "deadline_seconds": 0}, lead_message)
    assert kommo.tasks[0]["responsible_user_id"] == seed.ADMIN_USER_ID


def test_a_note_on_the_leads_main_contact(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    run("note", {"text": "Email {id}", "entity": "contact"}, lead_message)
    notes = kommo.notes("contacts")
    assert [(n["entity_id"], n["params"]["text"]) for n in notes] == [
        (seed.CONTACT_IVAN, f"Email {lead_message.message_id}")
    ]


def test_change_stage_within_and_across_pipelines(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    run("stage", {"status_id": seed.STATUS_FAMILIAR}, lead_message)
    assert kommo.lead(seed.LEAD_OFFER)["status_id"] == seed.STATUS_FAMILIAR  # type: ignore[index]
    run("stage", {"status_id": seed.STATUS_WON, "pipeline_id": seed.PIPELINE_ID}, lead_message)
    lead = kommo.lead(seed.LEAD_OFFER)
    assert lead is not None and (lead["status_id"], lead["pipeline_id"]) == (
        seed.STATUS_WON,
        seed.PIPELINE_ID,
    )


@pytest.mark.parametrize(
    ("field_id", "value", "expected"),
    [
        (seed.FIELD_PRODUCT, "Model {subject}", [{"value": "Model Коммерческое предложение"}]),
        (seed.FIELD_QUANTITY, "42", [{"value": "42"}]),
        (seed.FIELD_DELIVERY, "Courier", [{"enum_id": 591002}]),
        (seed.FIELD_NEWSLETTER, "1", [{"value": True}]),
        (seed.FIELD_NEWSLETTER, "0", [{"value": False}]),
        (seed.FIELD_OFFER_VALID_UNTIL, "2026-12-31", None),
    ],
)
def test_change_field_by_its_type(
    lead_message: MessageModel, kommo: KommoStandIn, field_id: int, value: str, expected: Any
) -> None:
    assert run("field", {"field_id": field_id, "value": value}, lead_message) == "done"
    got = cf(kommo.lead(seed.LEAD_OFFER), field_id)
    if expected is None:  # a date: that day's midnight in the message's zone (Moscow)
        assert got is not None
        assert datetime.fromtimestamp(got[0]["value"], UTC).date() in (date(2026, 12, 30), date(2026, 12, 31))
    else:
        assert got is not None and [{k: v[k] for k in expected[0]} for v in got] == expected


def test_a_multiselect_value_is_added_to_the_chosen_ones(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    run("field", {"field_id": seed.FIELD_INTERESTS, "value": "Analytics"}, lead_message)
    run("field", {"field_id": seed.FIELD_INTERESTS, "value": "Email marketing"}, lead_message)
    got = cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_INTERESTS)
    assert got is not None and sorted(v["enum_id"] for v in got) == [592001, 592003]


def test_date_takes_today_and_reset_clears_any_field(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    run("field", {"field_id": seed.FIELD_OFFER_VALID_UNTIL, "value": "{date}"}, lead_message)
    assert cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_OFFER_VALID_UNTIL)
    run("field", {"field_id": seed.FIELD_PRODUCT, "value": "x"}, lead_message)
    run("field", {"field_id": seed.FIELD_PRODUCT, "value": "{reset}"}, lead_message)
    run("field", {"field_id": seed.FIELD_OFFER_VALID_UNTIL, "value": "{reset}"}, lead_message)
    assert not cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_PRODUCT)
    assert not cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_OFFER_VALID_UNTIL)
    run("field", {"field_id": seed.FIELD_NEWSLETTER, "value": "{reset}"}, lead_message)
    assert cf(kommo.lead(seed.LEAD_OFFER), seed.FIELD_NEWSLETTER) == [{"value": False}]


def test_a_value_the_field_cannot_take_fails_the_run_with_the_reason_and_is_not_retried(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    assert run("field", {"field_id": seed.FIELD_DELIVERY, "value": "Teleport"}, lead_message) == "failed"
    (failure,) = [d for e, d in events_of(lead_message.message_id) if e == "trigger_failed"]
    assert "Delivery" in failure and "Teleport" in failure


def test_tags_are_added_and_removed_on_the_company(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    run("tags", {"entity": "company", "add": ["opened", "hot"]}, lead_message)
    run("tags", {"entity": "company", "remove": ["hot"]}, lead_message)
    company = kommo.company(seed.COMPANY_ROMASHKA)
    assert company is not None
    assert [t["name"] for t in company["_embedded"]["tags"]] == ["opened"]


def test_create_lead_for_the_contact_the_email_went_to(
    aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    message = sent_from("contacts", seed.CONTACT_JOHN)
    run("lead", {"name": "From email: {subject}", "status_id": seed.STATUS_QUALIFIED}, message)
    newest = max(kommo.state()["leads"], key=lambda lead: lead["id"])  # type: ignore[index]
    assert newest["name"] == "From email: Коммерческое предложение"
    assert newest["status_id"] == seed.STATUS_QUALIFIED
    assert [c["id"] for c in newest["_embedded"]["contacts"]] == [seed.CONTACT_JOHN]


def test_from_a_contact_a_lead_trigger_acts_on_the_contacts_newest_lead(
    aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    message = sent_from("contacts", seed.CONTACT_JOHN)
    run("lead", {"name": "Newer"}, message)
    newest = max(kommo.state()["leads"], key=lambda lead: lead["id"])  # type: ignore[index]
    run("stage", {"status_id": seed.STATUS_NEGOTIATION}, message)
    assert kommo.lead(newest["id"])["status_id"] == seed.STATUS_NEGOTIATION  # type: ignore[index]
    assert kommo.lead(seed.LEAD_REDESIGN)["status_id"] == seed.STATUS_INCOMING  # type: ignore[index]


def test_from_a_company_a_contact_trigger_acts_on_its_first_contact(
    aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    message = sent_from("companies", seed.COMPANY_ROMASHKA)
    run("note", {"text": "hello", "entity": "contact"}, message)
    staff = sorted(
        c["id"]
        for c in kommo.state()["contacts"]  # type: ignore[index]
        if any(link["id"] == seed.COMPANY_ROMASHKA for link in c["_embedded"].get("companies", []))
    )
    assert [n["entity_id"] for n in kommo.notes("contacts")] == staff[:1]


def test_no_entity_of_the_kind_is_recorded_not_retried(
    aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    message = sent_from("contacts", seed.CONTACT_JOHN)  # John works for no company
    assert run("tags", {"entity": "company", "add": ["x"]}, message) == "failed"
    assert any(e == "trigger_failed" and "has no company" in d for e, d in events_of(message.message_id))


def test_contact_and_company_fields_a_phone_is_added_and_a_web_address_replaced(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    before = cf(kommo.contact(seed.CONTACT_IVAN), seed.FIELD_PHONE) or []
    run(
        "field",
        {"entity": "contact", "field_id": seed.FIELD_PHONE, "value": "+7 999 000-00-01"},
        lead_message,
    )
    after = cf(kommo.contact(seed.CONTACT_IVAN), seed.FIELD_PHONE) or []
    assert [v["value"] for v in after] == [*(v["value"] for v in before), "+7 999 000-00-01"]
    run(
        "field",
        {"entity": "company", "field_id": seed.FIELD_COMPANY_WEB, "value": "https://new.example"},
        lead_message,
    )
    assert cf(kommo.company(seed.COMPANY_ROMASHKA), seed.FIELD_COMPANY_WEB) == [
        {"value": "https://new.example"}
    ]


def test_texts_take_the_templates_variables_with_fresh_crm_data(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    run("note", {"text": "{{ contact.first_name }}, {{ lead.name }}: {subject}"}, lead_message)
    lead = kommo.lead(seed.LEAD_OFFER)
    assert lead is not None
    [note] = kommo.notes("leads")
    assert note["params"]["text"] == f"Иван, {lead['name']}: Коммерческое предложение"


def test_a_text_whose_variables_do_not_render_fails_the_run_with_the_reason(
    lead_message: MessageModel, kommo: KommoStandIn
) -> None:
    assert run("note", {"text": "{{ lead.name | no_such_filter }}"}, lead_message) == "failed"
    assert kommo.notes("leads") == []
    assert any(e == "trigger_failed" for e, _ in events_of(lead_message.message_id))


def test_template_in_a_text_gives_the_templates_name(lead_message: MessageModel, kommo: KommoStandIn) -> None:
    from mailer_core.store.models import TemplateModel

    TemplateModel(
        seed.ACCOUNT_ID,
        "01TEMPLATE0000000000000001",
        name="Price list",
        user_id=seed.MANAGER_USER_ID,
        created_at=SENT,
        updated_at=SENT,
    ).save()
    lead_message.update(actions=[MessageModel.template_id.set("01TEMPLATE0000000000000001")])
    run("note", {"text": "Sent {template} ({template_id})"}, lead_message)
    TemplateModel(seed.ACCOUNT_ID, "01TEMPLATE0000000000000001").delete()
    run("task", {"text": "Deleted: {template}", "deadline_seconds": 0}, lead_message)
    [note] = kommo.notes("leads")
    assert note["params"]["text"] == "Sent Price list (01TEMPLATE0000000000000001)"
    assert kommo.tasks[0]["text"] == "Deleted: 01TEMPLATE0000000000000001"

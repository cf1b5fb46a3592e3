"""The pipeline function: a queued digital pipeline event becomes one composed email, or a reason."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from mailer_core.adapters.sqs import SendJob
from mailer_core.base import clock as clock_module
from mailer_core.store.models import MessageModel, TemplateModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import LambdaContext, load_handler
from tests.support.fixtures.pipeline import (
    ADMIN_LOGIN,
    caller,
    fact,
    form_fields,
    mailbox_body,
    messages,
    post_hook,
    run_pipeline,
)
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import receive_batch, sqs_event

DP = "/hooks/kommo/dp"
SETTING = "action[settings][widget][settings][{}]"


def stage_change(template_id: str, **settings: str) -> dict[str, Any]:
    """Post a captured-form stage change with these action settings; the hook's answer."""
    changes = {SETTING.format(k): v for k, v in settings.items()}
    reply = post_hook(DP, "&".join(f"{k}={v}" for k, v in form_fields(template_id, **changes)))
    assert reply.status == 202, reply.body
    return dict(reply.json())


def only_message() -> MessageModel:
    found = messages()
    assert len(found) == 1, [m.message_id for m in found]
    return found[0]


def test_given_a_stage_change_then_the_lead_is_re_read_and_its_main_contact_gets_the_template(
    aws_stack: StackResources,
    kommo: KommoStandIn,
    manager_mailbox: dict[str, Any],
    template: dict[str, Any],
) -> None:
    accepted = stage_change(template["id"])

    run_pipeline(aws_stack)

    message = only_message()
    assert message.message_id == accepted["message_id"]
    assert (message.entity_type, int(message.entity_id)) == ("leads", seed.LEAD_OFFER)
    assert list(message.to) == ["ivan.petrov@example.com"]  # the template's client: the main contact
    assert message.mailbox_id == manager_mailbox["id"]  # the responsible user's default mailbox
    assert int(message.user_id) == seed.MANAGER_USER_ID
    assert message.template_id == template["id"]
    assert list(message.attachment_links or []) == ["https://files.example.com/offer.pdf"]
    assert message.status == "queued"
    assert fact_of(accepted).state == "composed"
    # the lead was read through the API, not taken from the hook
    assert any(r.path == f"/api/v4/leads/{seed.LEAD_OFFER}" for r in kommo.requests)

    jobs = [SendJob.from_body(raw["Body"]) for raw in receive_batch(aws_stack.refs["SendQueue"])]
    assert [(j.message_id, j.entity) for j in jobs] == [(message.message_id, f"leads:{seed.LEAD_OFFER}")]


def fact_of(accepted: dict[str, Any]) -> Any:
    """The event's fact, found through the message id it recorded."""
    from mailer_core.store.models import AutomationFactModel

    for item in AutomationFactModel.query(seed.ACCOUNT_ID, consistent_read=True):
        if item.fact_key.startswith("dp#") and accepted["message_id"] in (item.detail or ""):
            return fact(item.fact_key)
    raise AssertionError("no fact for the event")


@pytest.fixture
def admin_responsible(sample: Seed) -> Seed:
    """The sample with the administrator responsible for the offer lead."""
    for lead in sample.leads:
        if lead["id"] == seed.LEAD_OFFER:
            lead["responsible_user_id"] = seed.ADMIN_USER_ID
    return sample


def test_given_no_mailbox_in_the_action_then_the_responsible_users_default_mailbox_sends(
    aws_stack: StackResources,
    admin_responsible: Seed,
    kommo: KommoStandIn,
    template: dict[str, Any],
    smtp: SmtpTestServer,
) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).post(
        "/v1/mailboxes", mailbox_body(smtp, sender_email=ADMIN_LOGIN, sender_name="Anna Admin")
    )
    assert reply.status == 201, reply.body

    stage_change(template["id"])
    run_pipeline(aws_stack)

    message = only_message()
    assert message.mailbox_id == reply.json()["id"]
    assert int(message.user_id) == seed.ADMIN_USER_ID


def test_given_the_responsible_user_has_no_default_mailbox_then_nothing_is_sent_and_the_reason_is_kept(
    aws_stack: StackResources, admin_responsible: Seed, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    accepted = stage_change(template["id"])

    results = run_pipeline(aws_stack)

    assert messages() == []
    assert results[0]["batchItemFailures"] == []  # not retried: retrying cannot help
    assert "no default mailbox" in str(fact_of_skipped().detail)
    assert str(seed.ADMIN_USER_ID) in str(fact_of_skipped().detail)
    assert accepted["message_id"]


def fact_of_skipped() -> Any:
    from mailer_core.store.models import AutomationFactModel

    skipped = [f for f in AutomationFactModel.query(seed.ACCOUNT_ID) if f.state == "skipped"]
    assert len(skipped) == 1
    return skipped[0]


def test_given_a_mailbox_in_the_action_then_it_sends_whoever_is_responsible(
    aws_stack: StackResources,
    admin_responsible: Seed,
    kommo: KommoStandIn,
    manager_mailbox: dict[str, Any],
    template: dict[str, Any],
) -> None:
    stage_change(template["id"], mailbox_id=manager_mailbox["id"])
    run_pipeline(aws_stack)

    message = only_message()
    assert message.mailbox_id == manager_mailbox["id"]
    assert int(message.user_id) == seed.ADMIN_USER_ID  # the lead's responsible user owns it


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("boss%40example.com", ["boss@example.com"]),
        ("a%40example.com%2C+b%40example.com", ["a@example.com", "b@example.com"]),
        ("%7B%7B+company.email+%7D%7D", ["office@example.com"]),  # {{ company.email }}, filled now
    ],
)
def test_given_a_recipient_in_the_action_then_it_replaces_the_leads_contacts(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any], to: str, expected: list[str]
) -> None:
    stage_change(template["id"], to=to)
    run_pipeline(aws_stack)

    assert list(only_message().to) == expected


def test_given_a_delay_then_the_email_is_scheduled_that_long_after_the_hook(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    before = datetime.now().astimezone()
    stage_change(template["id"], delay="600")
    after = datetime.now().astimezone()
    run_pipeline(aws_stack)

    message = only_message()
    assert message.status == "scheduled"
    assert message.send_at is not None
    assert before + timedelta(seconds=600) <= message.send_at <= after + timedelta(seconds=600)


def test_given_a_delay_over_fifteen_minutes_then_a_one_time_schedule_releases_it(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    stage_change(template["id"], delay=str(2 * 86400))
    run_pipeline(aws_stack)

    message = only_message()
    assert message.status == "scheduled" and message.schedule_name
    schedule = boto3.client("scheduler").get_schedule(
        Name=message.schedule_name, GroupName=aws_stack.refs["ScheduleGroup"]
    )
    assert schedule["ScheduleExpression"].startswith("at(")


def test_given_the_lead_was_deleted_in_kommo_then_nothing_is_composed_and_the_job_is_done(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    stage_change(template["id"])
    kommo.remove_entity("leads", seed.LEAD_OFFER)

    results = run_pipeline(aws_stack)

    assert messages() == []
    assert results[0]["batchItemFailures"] == []
    assert "any more" in str(fact_of_skipped().detail)


def test_given_the_template_was_deleted_then_nothing_is_composed_and_the_reason_names_it(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    stage_change(template["id"])
    TemplateModel(seed.ACCOUNT_ID, template["id"]).delete()

    run_pipeline(aws_stack)

    assert messages() == []
    assert "template_id" in str(fact_of_skipped().detail)


def test_given_kommo_is_down_then_the_job_stays_on_the_queue_and_composes_once_it_is_back(
    aws_stack: StackResources,
    kommo: KommoStandIn,
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock_module.SYSTEM_CLOCK, "sleep", lambda seconds: None)  # no real backoff
    stage_change(template["id"])
    handler = load_handler("pipeline")
    queue_arn = aws_stack.attrs[("PipelineQueue", "Arn")]
    kommo.fail_next(503, count=5)  # the first try and the client's four retries

    batch = receive_batch(aws_stack.refs["PipelineQueue"])
    failed = handler.lambda_handler(sqs_event(batch, queue_arn), LambdaContext())
    again = handler.lambda_handler(sqs_event(batch, queue_arn), LambdaContext())  # the redelivery
    once_more = handler.lambda_handler(sqs_event(batch, queue_arn), LambdaContext())  # and a duplicate

    assert failed["batchItemFailures"] == [{"itemIdentifier": batch[0]["MessageId"]}]
    assert again["batchItemFailures"] == [] and once_more["batchItemFailures"] == []
    assert len(messages()) == 1


def test_given_a_job_for_an_account_that_was_removed_then_it_is_dropped(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    from mailer_core.store.models import AccountModel

    stage_change(template["id"])
    AccountModel(seed.ACCOUNT_ID).delete()

    results = run_pipeline(aws_stack)

    assert results[0]["batchItemFailures"] == [] and messages() == []

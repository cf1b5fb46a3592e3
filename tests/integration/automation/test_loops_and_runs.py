"""Loop guards (save time and run time) and the run's once-only, retry and dead-letter rules."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mailer_core.automation import runner as automation
from mailer_core.base.clock import Clock, FakeClock
from mailer_core.events import jobs
from mailer_core.kommo.errors import KommoError
from mailer_core.store.models import AutomationFactModel, MessageModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import events_of, sent_from, trigger


def template(client: ApiClient, name: str, **extra: Any) -> str:
    reply = client.post("/v1/templates", {"name": name, "subject": name, "html": "<p>x</p>", **extra})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def test_a_template_whose_not_opened_trigger_sends_itself_is_refused_with_the_loop_spelled_out(
    aws_stack: StackResources, admin: ApiClient
) -> None:
    offer = template(admin, "Offer")
    again = trigger(admin, "Send Offer again", "email", template_id=offer)
    reply = admin.patch(
        f"/v1/templates/{offer}", {"triggers": {"not_opened": [again]}, "not_opened_after": 3600}
    )
    assert reply.status == 422
    assert reply.json()["field"] == "triggers"
    assert "«Offer» → (not opened: «Send Offer again») → «Offer»" in reply.json()["message"]
    # nothing of the refused change was stored
    assert admin.get(f"/v1/templates/{offer}").json()["triggers"] == {}


def test_a_loop_through_two_templates_is_refused_when_the_trigger_closing_it_is_saved(
    aws_stack: StackResources, admin: ApiClient
) -> None:
    first, second = template(admin, "First"), template(admin, "Second")
    to_second = trigger(admin, "To second", "email", template_id=second)
    assert admin.patch(f"/v1/templates/{first}", {"triggers": {"opened": [to_second]}}).status == 200
    placeholder = template(admin, "Placeholder")
    to_first = trigger(admin, "To first", "email", template_id=placeholder)
    assert admin.patch(f"/v1/templates/{second}", {"triggers": {"opened": [to_first]}}).status == 200
    # WHEN the trigger is changed to send «First», which closes First → Second → First
    reply = admin.patch(f"/v1/triggers/{to_first}", {"params": {"template_id": first}})
    assert reply.status == 422
    assert reply.json()["field"] == "params.template_id"
    message = reply.json()["message"]
    assert "«First»" in message and "«Second»" in message and "«To first»" in message
    assert admin.get(f"/v1/triggers/{to_first}").json()["params"]["template_id"] == placeholder


def test_a_loop_marked_as_intentionally_repeating_is_saved(
    aws_stack: StackResources, admin: ApiClient
) -> None:
    drip = template(admin, "Drip", repeat_max=3)
    again = trigger(admin, "Drip again", "email", template_id=drip)
    reply = admin.patch(
        f"/v1/templates/{drip}", {"triggers": {"not_opened": [again]}, "not_opened_after": 86400}
    )
    assert reply.status == 200, reply.body
    assert reply.json()["repeat_max"] == 3


def follow_up_job(message: MessageModel, trigger_id: str, event: str = "not_opened") -> jobs.RunJob:
    return jobs.RunJob(
        seed.ACCOUNT_ID,
        message.message_id,
        trigger_id,
        event,
        automation.run_id_for(message.message_id, event, trigger_id),
        int(message.created_at.timestamp() * 1000),
    )


def test_an_entity_gets_at_most_the_daily_number_of_automatic_emails_from_one_template(
    aws_stack: StackResources, admin: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    follow_up = template(admin, "Follow-up", is_public=True)
    send = trigger(admin, "Send follow-up", "email", template_id=follow_up)
    outcomes = []
    for _ in range(4):  # four different emails to the same lead, each not opened
        message = sent_from("leads", seed.LEAD_OFFER, mailbox_id=mailbox)
        outcomes.append(automation.Runner(clock=Clock()).run(follow_up_job(message, send)))
    assert outcomes == ["done", "done", "done", "suppressed"]
    assert any(
        e == "trigger_suppressed" and "3 automatic emails" in d for e, d in events_of(message.message_id)
    )
    composed = [m for m in MessageModel.query(seed.ACCOUNT_ID) if m.origin == "trigger"]
    assert len(composed) == 3


def test_an_intentional_chain_stops_at_its_maximum(
    aws_stack: StackResources, admin: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    drip = template(admin, "Drip", repeat_max=2, is_public=True)
    again = trigger(admin, "Drip again", "email", template_id=drip)
    message = sent_from("leads", seed.LEAD_REDESIGN, mailbox_id=mailbox, chain_depth=2, template_id=drip)
    assert automation.Runner(clock=Clock()).run(follow_up_job(message, again)) == "suppressed"
    assert any("limit of 2" in d for e, d in events_of(message.message_id) if e == "trigger_suppressed")


def test_a_redelivered_run_runs_once(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    note = trigger(admin, "Note", "note", text="once")
    message = sent_from("leads", seed.LEAD_OFFER)
    job = follow_up_job(message, note, "sent")
    runner = automation.Runner(clock=Clock())
    assert [runner.run(job), runner.run(job), runner.run(job, attempt=2)] == [
        "done",
        "duplicate",
        "duplicate",
    ]
    assert len(kommo.notes("leads")) == 1


def test_kommo_errors_are_retried_with_backoff_then_recorded_with_kommos_words(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    note = trigger(admin, "Note", "note", text="later")
    message = sent_from("leads", seed.LEAD_OFFER)
    job = follow_up_job(message, note, "sent")
    runner = automation.Runner(clock=Clock())
    waits = []
    for attempt in range(1, automation.MAX_ATTEMPTS):
        kommo.fail_next(503, count=1)
        with pytest.raises(automation.RetryLater) as retry:
            runner.run(job, attempt=attempt)
        waits.append(retry.value.seconds)
    assert waits == sorted(waits) and waits[0] >= automation.BACKOFF_BASE_SECONDS
    fact = AutomationFactModel.get(seed.ACCOUNT_ID, f"run#{job.run_id}")
    assert fact.state == "retry" and int(fact.tally) == automation.MAX_ATTEMPTS - 1
    # the last attempt fails for good: the timeline says why, and the job goes to the DLQ
    kommo.fail_next(503, count=1)
    with pytest.raises(KommoError):
        runner.run(job, attempt=automation.MAX_ATTEMPTS)
    failures = [d for e, d in events_of(message.message_id) if e == "trigger_failed"]
    assert len(failures) == 1 and "503" in failures[0] and "gave up after 5 attempts" in failures[0]
    # an operator's redrive from the DLQ runs it again once Kommo is back
    assert runner.run(job, attempt=1) == "done"
    assert len(kommo.notes("leads")) == 1


def test_a_429_asking_for_minutes_puts_the_run_back_that_long_after_one_request(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    note = trigger(admin, "Note", "note", text="later")
    message = sent_from("leads", seed.LEAD_OFFER)
    job = follow_up_job(message, note, "sent")
    runner = automation.Runner(clock=FakeClock())
    seen = len(kommo.requests)
    kommo.fail_next(429, body={"title": "Too Many Requests", "status": 429, "retry_after": 300})
    # WHEN the run meets Kommo's 429 with retry_after 300
    with pytest.raises(automation.RetryLater) as retry:
        runner.run(job)
    # THEN Kommo was asked once, and the job comes back after Kommo's wait, not before
    assert [r.status for r in kommo.requests[seen:]] == [429]
    assert retry.value.seconds >= 300
    # AND a run of the same account meanwhile sends nothing and is put back for what is left
    other = follow_up_job(sent_from("leads", seed.LEAD_OFFER), note, "sent")
    with pytest.raises(automation.RetryLater) as paused:
        runner.run(other)
    assert paused.value.seconds >= 299 and len(kommo.requests) == seen + 1
    assert kommo.notes("leads") == []


def test_a_retried_job_comes_back_after_its_backoff_through_the_queue(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    from tests.support.fixtures.automation import drain_actions

    note = trigger(admin, "Note", "note", text="via queue")
    message = sent_from("leads", seed.LEAD_OFFER)
    job = follow_up_job(message, note, "sent")
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=aws_stack.refs["ActionsQueue"], MessageBody=job.to_body())
    kommo.fail_next(503, count=1)
    drain_actions(aws_stack)
    # the job failed and is invisible for its backoff, not the queue's six minutes
    attrs = sqs.get_queue_attributes(QueueUrl=aws_stack.refs["ActionsQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert kommo.notes("leads") == []


def test_a_switched_off_account_runs_no_trigger(
    aws_stack: StackResources, admin: ApiClient, kommo: KommoStandIn
) -> None:
    from mailer_core.store.models import AccountModel

    note = trigger(admin, "Note", "note", text="never")
    message = sent_from("leads", seed.LEAD_OFFER)
    AccountModel(seed.ACCOUNT_ID).update(actions=[AccountModel.status.set("disabled")])
    assert automation.Runner(clock=Clock()).run(follow_up_job(message, note, "sent")) == "suppressed"
    assert kommo.notes("leads") == []
    assert any(e == "trigger_suppressed" and "disabled" in d for e, d in events_of(message.message_id))

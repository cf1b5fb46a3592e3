"""The worked example's automation, event by event: sent, opened, not opened, replied, failed.

A template chooses triggers for each event; an email composed from it is sent to a real SMTP
server; the actions function (fed from the actions queue as Lambda would) runs the triggers
against the Kommo stand-in.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mailer_core.automation import runner as automation
from mailer_core.events import timers
from mailer_core.tracking import record as tracking
from mailer_core.tracking import tokens as tracking_tokens

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import (
    LEAD,
    actions_jobs,
    drain_actions,
    events_of,
    schedules,
    send_queued,
    stored,
    trigger,
)
from tests.support.fixtures.templates import mailbox_body
from tests.support.smtp_servers import SmtpTestServer

DAY = 86400


def offer_template(admin: ApiClient, **triggers: Any) -> str:
    body: dict[str, Any] = {"name": "Offer", "subject": "Offer for {{ lead.name }}", "html": "<p>Hello</p>"}
    body.update(triggers)
    reply = admin.post("/v1/templates", {**body, "is_public": True})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def compose(client: ApiClient, **body: Any) -> str:
    reply = client.post("/v1/messages", {"entity": LEAD, **body})
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def test_after_sending_the_lead_moves_and_a_not_opened_timer_is_set(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    # GIVEN the template «Offer» whose "sent" trigger moves the lead to «Offer sent», with a
    # 24-hour not-opened timer that sends a follow-up
    moved = trigger(admin, "Change stage to Offer sent", "stage", status_id=seed.STATUS_OFFER_SENT)
    follow_up = offer_template(admin)
    resend = trigger(admin, "Resend email", "email", template_id=follow_up)
    offer = offer_template(admin, triggers={"sent": [moved], "not_opened": [resend]}, not_opened_after=DAY)
    # WHEN a manager sends it to the lead and the queues run
    message_id = compose(manager, template_id=offer)
    assert send_queued(aws_stack) == 1
    drain_actions(aws_stack)
    # THEN the lead is in «Offer sent», the run is in the timeline, and the timer waits a day
    lead = kommo.lead(seed.LEAD_OFFER)
    assert lead is not None and lead["status_id"] == seed.STATUS_OFFER_SENT
    history = events_of(message_id)
    assert any(e == "trigger" and "Change stage to Offer sent" in d for e, d in history), history
    timer = automation.not_opened_schedule_name(seed.ACCOUNT_ID, message_id)
    assert schedules()[timer] == {
        "kind": "not_opened",
        "account_id": seed.ACCOUNT_ID,
        "message_id": message_id,
    }
    assert stored(message_id).triggers.as_dict() == {"sent": [moved], "not_opened": [resend]}  # type: ignore[union-attr]


def test_an_open_runs_the_opened_triggers_and_cancels_the_timer_and_a_late_timer_does_nothing(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    task = trigger(admin, "Set task", "task", text="Call the client: {subject}", deadline_seconds=3600)
    follow_up = offer_template(admin)
    resend = trigger(admin, "Resend email", "email", template_id=follow_up)
    offer = offer_template(admin, triggers={"opened": [task], "not_opened": [resend]}, not_opened_after=DAY)
    message_id = compose(manager, template_id=offer)
    send_queued(aws_stack)
    drain_actions(aws_stack)
    timer = automation.not_opened_schedule_name(seed.ACCOUNT_ID, message_id)
    assert timer in schedules()
    # WHEN the client opens the email: the track route records the first open (one write)
    message = stored(message_id)
    token = tracking_tokens.TrackingToken(
        "o", seed.ACCOUNT_ID, message_id, int(message.created_at.timestamp())
    )
    assert tracking.record_open(token, machine=False, when=message.sent_at)  # type: ignore[arg-type]
    drain_actions(aws_stack)
    # THEN the responsible manager has the task, and the timer is gone
    tasks = [t for t in kommo.tasks if t.get("entity_id") == seed.LEAD_OFFER]
    assert len(tasks) == 1
    assert tasks[0]["text"] == "Call the client: Offer for " + kommo.lead(seed.LEAD_OFFER)["name"]  # type: ignore[index]
    assert tasks[0]["responsible_user_id"] == seed.MANAGER_USER_ID
    assert timer not in schedules()
    # WHEN the timer fires anyway (it was already on its way)
    assert (
        timers.fire({"kind": "not_opened", "account_id": seed.ACCOUNT_ID, "message_id": message_id})
        == "queued"
    )
    drain_actions(aws_stack)
    # THEN nothing was sent again
    assert send_queued(aws_stack) == 0
    assert not any(e == "trigger" and "Resend" in d for e, d in events_of(message_id))


def test_a_reply_runs_the_replied_triggers_once_and_stops_the_not_opened_timer(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    from mailer_core.bounces import replies
    from mailer_core.store.models import MailboxModel

    # GIVEN an email whose "replied" trigger sets a task, with a not-opened follow-up in a day
    task = trigger(admin, "Call back", "task", text="The client answered: {subject}", deadline_seconds=3600)
    follow_up = offer_template(admin)
    resend = trigger(admin, "Resend email", "email", template_id=follow_up)
    offer = offer_template(admin, triggers={"replied": [task], "not_opened": [resend]}, not_opened_after=DAY)
    message_id = compose(manager, template_id=offer)
    send_queued(aws_stack)
    drain_actions(aws_stack)
    timer = automation.not_opened_schedule_name(seed.ACCOUNT_ID, message_id)
    assert timer in schedules()
    # WHEN the client answers twice (the pixel blocked: no open was ever seen)
    sent = stored(message_id)
    box = MailboxModel.get(seed.ACCOUNT_ID, mailbox)
    for n in (1, 2):
        headers = (
            f"From: client@example.com\r\nSubject: Re: Offer\r\nIn-Reply-To: {sent.header_message_id}\r\n"
            f"Message-ID: <answer-{n}@example.com>\r\n\r\n"
        ).encode()
        assert replies.record(box, headers, now=sent.sent_at) == "replied"  # type: ignore[arg-type]
    drain_actions(aws_stack)
    # THEN one task, no timer; and when the timer fires anyway, no follow-up goes out
    tasks = [t for t in kommo.tasks if t.get("entity_id") == seed.LEAD_OFFER]
    assert [t["text"] for t in tasks] == [
        "The client answered: Offer for " + kommo.lead(seed.LEAD_OFFER)["name"]
    ]  # type: ignore[index]
    assert timer not in schedules()
    timers.fire({"kind": "not_opened", "account_id": seed.ACCOUNT_ID, "message_id": message_id})
    drain_actions(aws_stack)
    assert send_queued(aws_stack) == 0
    assert stored(message_id).replies == 2


def test_an_unopened_email_sends_the_follow_up_once_even_when_the_timer_fires_twice(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    follow_up = offer_template(admin)
    resend = trigger(admin, "Resend email", "email", template_id=follow_up)
    offer = offer_template(admin, triggers={"not_opened": [resend]}, not_opened_after=DAY)
    message_id = compose(manager, template_id=offer)
    send_queued(aws_stack)
    drain_actions(aws_stack)
    # WHEN the day passes unopened, and the scheduler delivers its event twice
    payload = {"kind": "not_opened", "account_id": seed.ACCOUNT_ID, "message_id": message_id}
    timers.fire(payload)
    timers.fire(payload)
    drain_actions(aws_stack)
    # THEN one follow-up is composed from the follow-up template, linked to the first email
    follow_ups = [m for m in type(stored(message_id)).query(seed.ACCOUNT_ID) if m.origin == "trigger"]
    assert len(follow_ups) == 1
    assert follow_ups[0].template_id == follow_up
    assert follow_ups[0].parent_message_id == message_id
    assert send_queued(aws_stack) == 1
    assert stored(follow_ups[0].message_id).status == "sent"
    assert [e for e, _ in events_of(message_id)].count("not_opened") == 1


def test_a_failed_email_runs_its_failed_triggers(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, smtp: SmtpTestServer, kommo: KommoStandIn
) -> None:
    # GIVEN a mailbox whose server refuses the login, and a "failed" trigger that adds a note
    reply = manager.post("/v1/mailboxes", mailbox_body(smtp, smtp_password="wrong", rate_per_second=100))
    assert reply.status == 201, reply.body
    note = trigger(admin, "Note the failure", "note", text="Email subject: {subject}; email ID: {id}")
    message_id = compose(manager, subject="Hi", html="<p>Hi</p>", triggers={"failed": [note]})
    # WHEN the send fails for good
    send_queued(aws_stack)
    assert stored(message_id).status == "failed"
    drain_actions(aws_stack)
    # THEN a note with the subject and id hangs on the lead, and nothing is left to do
    notes = kommo.notes("leads")
    assert [n["params"]["text"] for n in notes if n["entity_id"] == seed.LEAD_OFFER] == [
        f"Email subject: Hi; email ID: {message_id}"
    ]
    assert not actions_jobs(aws_stack)


def test_a_delayed_trigger_waits_on_the_queue_or_on_a_schedule(
    aws_stack: StackResources, admin: ApiClient, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    # GIVEN two "sent" triggers: one 30 seconds late (an SQS delay), one an hour late (a schedule)
    soon = trigger(admin, "Soon", "note", delay=30, text="half a minute later")
    later = trigger(admin, "Later", "note", delay=3600, text="an hour later")
    message_id = compose(manager, subject="Hi", html="<p>Hi</p>", triggers={"sent": [soon, later]})
    send_queued(aws_stack)
    drain_actions(aws_stack)  # the "sent" event: both runs are queued, neither is due
    assert kommo.notes("leads") == []
    runs = [p for p in schedules().values() if p.get("kind") == "run"]
    assert [(p["trigger_id"], p["event"]) for p in runs] == [(later, "sent")]
    # WHEN the hour has passed and the schedule fires (the timers function queues the run)
    assert timers.fire(runs[0]) == "queued"
    drain_actions(aws_stack)
    # THEN the late note is there; the 30-second one is still waiting on the queue
    assert [n["params"]["text"] for n in kommo.notes("leads")] == ["an hour later"]
    sqs_attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws_stack.refs["ActionsQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert sqs_attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert any(e == "trigger" and "«Later»" in d for e, d in events_of(message_id))


def test_a_replayed_automatic_compose_queues_a_message_its_first_compose_left_unqueued(
    aws_stack: StackResources, manager: ApiClient, mailbox: str, kommo: KommoStandIn
) -> None:
    from mailer_core.accounts.actors import Actor
    from mailer_core.messages import compose as messages
    from mailer_core.messages.requests import ComposeRequest

    # GIVEN an automatic compose (Mailer for the manager, as a trigger's "send email" does)
    actor = Actor.automatic(seed.ACCOUNT_ID, seed.MANAGER_USER_ID)
    request = ComposeRequest.of(entity=(LEAD["type"], LEAD["id"]), subject="Hi", html="<p>Hi</p>")
    messages.compose(request, actor, message_id="01MREPLAY00000000000000000", origin="trigger")
    # GIVEN the first compose died after saving and before its job reached the queue
    boto3.client("sqs").purge_queue(QueueUrl=aws_stack.refs["SendQueue"])
    # WHEN the event is replayed
    with pytest.raises(messages.AlreadyComposed):  # never a second message
        messages.compose(request, actor, message_id="01MREPLAY00000000000000000", origin="trigger")
    # THEN the stored message is queued again and sent once
    assert send_queued(aws_stack) == 1
    assert stored("01MREPLAY00000000000000000").status == "sent"
    assert send_queued(aws_stack) == 0

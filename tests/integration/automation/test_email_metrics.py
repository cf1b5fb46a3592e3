"""An email's life in CloudWatch: sent, opened and bounced, each counted once for its account
and mailbox (base.metrics' EMF lines, as the functions print them to their logs)."""

from __future__ import annotations

import pytest
from mailer_core.bounces import reading, reports
from mailer_core.events import message_events
from mailer_core.store.models import MailboxModel
from mailer_core.tracking import record as tracking
from mailer_core.tracking import tokens as tracking_tokens

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import LEAD, drain_actions, send_queued, sent_from, stored
from tests.support.metrics import counted


def bounce(message_id: str, report_id: str) -> list[str]:
    """A permanent delivery report about the email, as the bounce poller records it."""
    message = stored(message_id)
    failure = reading.RecipientFailure(
        str(message.to[0]).lower(), "user_unknown", True, "5.1.1", "550 5.1.1 no such user"
    )
    mailbox = MailboxModel.get(seed.ACCOUNT_ID, message.mailbox_id)
    return list(reports.record(mailbox, reading.Report("bounce", report_id, (), (message_id,), (failure,))))


def test_an_email_is_counted_sent_opened_and_bounced_once_each_for_its_account_and_mailbox(
    aws_stack: StackResources, manager: ApiClient, mailbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = manager.post("/v1/messages", {"entity": LEAD, "subject": "Offer", "html": "<p>Hello</p>"})
    assert reply.status == 202, reply.body
    message_id = str(reply.json()["id"])
    capsys.readouterr()
    # WHEN it is sent, the client opens it twice, and its report comes back twice
    assert send_queued(aws_stack) == 1
    drain_actions(aws_stack)
    message = stored(message_id)
    token = tracking_tokens.TrackingToken(
        "o", seed.ACCOUNT_ID, message_id, int(message.created_at.timestamp())
    )
    assert tracking.record_open(token, machine=False, when=message.sent_at)  # type: ignore[arg-type]
    assert not tracking.record_open(token, machine=False, when=message.sent_at)  # type: ignore[arg-type]
    drain_actions(aws_stack)
    assert bounce(message_id, "<report-1@mx.example>") == ["bounced"]
    assert bounce(message_id, "<report-2@mx.example>") == ["duplicate"]
    # THEN each event was counted once, for the account and the mailbox, and nothing failed
    account = str(seed.ACCOUNT_ID)
    assert counted(capsys.readouterr().out) == [
        ("sent", account, mailbox),
        ("opened", account, mailbox),
        ("bounced", account, mailbox),
    ]


def test_a_failure_counts_as_failed_a_bounce_as_bounced_and_a_complaint_not_at_all(
    aws_stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    message = sent_from("leads", seed.LEAD_OFFER, mailbox_id="01JMAILBOX")
    capsys.readouterr()

    message_events.on_message_failed(message, "permanent: 550 5.7.1 rejected as spam")
    message_events.on_message_failed(message, "bounced: ivan@example.com: user_unknown: 5.1.1")
    message_events.on_message_failed(message, "complained: ivan@example.com: abuse")  # no failure to send

    account = str(seed.ACCOUNT_ID)
    assert counted(capsys.readouterr().out) == [
        ("failed", account, "01JMAILBOX"),
        ("bounced", account, "01JMAILBOX"),
    ]

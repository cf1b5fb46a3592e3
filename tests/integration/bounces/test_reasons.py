"""What a report's reason does, end to end through a real inbox: who is suppressed, who is told.

Reports are built from the Postfix one in dsn/ with another status and other words, or written
here whole where their shape differs (a complaint, a text-only report from the null sender).
"""

from __future__ import annotations

from datetime import timedelta

from mailer_core.base.clock import FakeClock
from mailer_core.store.models import SuppressionModel

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.bounce_helpers import CLOCK, filled, green_mailbox, poll, report, sent_message
from tests.support.fixtures.imap import ACCOUNT, SENDER
from tests.support.imap_helpers import compose, events, message, send_queued
from tests.support.imap_servers import ImapUser, append
from tests.support.smtp_servers import SmtpTestServer

CLIENT, COLLEAGUE = "client@gmail.example", "colleague@gmail.example"


def postfix(status: str, words: str, *, message_id: str, recipient: str) -> bytes:
    """The Postfix report of dsn/ with another status and the remote server's other words."""
    raw = report("postfix-hard-5.1.1", message_id=message_id, recipient=recipient).decode()
    raw = raw.replace("5.1.1", status).replace("Recipient address rejected:", words[:60])
    return (
        raw.replace("User unknown in virtual mailbox table", words[60:] or "-")
        .replace("User unknown in", words[60:] or "-")
        .encode()
    )


def suppressed() -> dict[str, str]:
    return {s.address: str(s.state) for s in SuppressionModel.query(ACCOUNT)}


def test_a_dmarc_refusal_tells_the_mailbox_and_suppresses_no_one(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    failed_hooks: list[tuple[str, str]],
) -> None:
    mailbox_id = green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[CLIENT])
    words = "Unauthenticated email from example.com is not accepted due to domain's DMARC policy"
    append(imap_special, special_user, "INBOX", postfix("5.7.26", words, message_id=header, recipient=CLIENT))

    [result] = poll()

    assert result.outcomes == {"bounced": 1}
    assert suppressed() == {}  # the address is fine: the sender's domain is not
    [bounce] = message(message_id).bounces or []
    assert (bounce.reason, bounce.status, bounce.permanent) == ("sender_auth", "5.7.26", True)
    assert [m for m, _ in failed_hooks] == [message_id]  # the email did not arrive all the same
    problem = user.get(f"/v1/mailboxes/{mailbox_id}").json()["delivery_problem"]
    assert problem["cause"] == "gmail.example refuses your mail: your domain fails DMARC " + (
        "(its DMARC policy, SPF and DKIM disagree)"
    )
    assert (problem["reason"], problem["domain"], problem["status"]) == (
        "sender_auth",
        "gmail.example",
        "5.7.26",
    )
    # a later email to the same client still goes out
    compose(user, to=[CLIENT])
    assert send_queued(aws_stack) == ["sent"]


def test_a_full_mailbox_suppresses_only_on_its_third_report_within_a_week(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    full = "552 5.2.2 Mailbox full: quota exceeded"
    when = CLOCK.now()
    for day in (0, 2, 4):
        _, header = sent_message(user, aws_stack, to=[CLIENT])
        append(
            imap_special, special_user, "INBOX", postfix("5.2.2", full, message_id=header, recipient=CLIENT)
        )
        poll(FakeClock(when + timedelta(days=day)))
        expected = "suppressed" if day == 4 else "watching"
        assert suppressed() == {CLIENT: expected}, day
        rows = user.get("/v1/suppressions?state=all").json()["items"]
        assert [(r["reason"], r["reports"]) for r in rows] == [("mailbox_full", day // 2 + 1)]

    skipped = compose(user, to=[CLIENT])
    assert send_queued(aws_stack) == ["failed"]
    assert "mailbox_full" in (message(skipped).last_error or "")


def test_full_mailbox_reports_further_apart_than_a_week_never_add_up(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    for day in (0, 8, 16):
        _, header = sent_message(user, aws_stack, to=[CLIENT])
        full = postfix("5.2.2", "Mailbox full", message_id=header, recipient=CLIENT)
        append(imap_special, special_user, "INBOX", full)
        poll(FakeClock(CLOCK.now() + timedelta(days=day)))
    assert suppressed() == {CLIENT: "watching"}


ARF = """\
From: Mail.example Feedback Loop <fbl@mail.example>
To: {sender}
Subject: FW: complaint about your message
Message-ID: <fbl-20261125-1@mail.example>
Date: Wed, 25 Nov 2026 09:30:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="fbl"

--fbl
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 198.51.100.7.

--fbl
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: MailExampleFBL/1.0
Version: 1
Original-Mail-From: <{sender}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Wed, 25 Nov 2026 09:00:00 +0000
Source-IP: 198.51.100.7

--fbl
Content-Type: text/rfc822-headers

From: {sender}
To: {recipient}
Subject: Offer
Message-ID: {message_id}

--fbl--
"""


def test_a_complaint_suppresses_the_address_and_runs_failed_triggers_only_when_the_account_says(
    user: ApiClient,
    admin: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    failed_hooks: list[tuple[str, str]],
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    first, header = sent_message(user, aws_stack, to=[CLIENT])
    append(imap_special, special_user, "INBOX", filled(ARF, message_id=header, recipient=CLIENT))
    [result] = poll()
    assert result.outcomes == {"complained": 1}
    assert suppressed() == {CLIENT: "suppressed"}
    assert SuppressionModel.get(ACCOUNT, CLIENT).reason == "complained"
    assert events(first)[-1] == "complained" and failed_hooks == []

    assert admin.patch("/v1/settings", {"complaints_run_failed": True}).status == 200
    second, header = sent_message(user, aws_stack, to=[COLLEAGUE])
    append(imap_special, special_user, "INBOX", filled(ARF, message_id=header, recipient=COLLEAGUE))
    poll()
    assert [m for m, _ in failed_hooks] == [second]


QMAIL_NULL_SENDER = """\
Return-Path: <>
From: MAILER-DAEMON <>
To: {sender}
Subject: failure notice
Message-ID: <qmail-20261125-7@relay.example.net>
Date: Wed, 25 Nov 2026 09:10:00 +0000

Hi. This is the qmail-send program at relay.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
203.0.113.25 does not like recipient.
Remote host said: 550 5.1.1 <{recipient}>... User unknown
Giving up on 203.0.113.25.

--- Below this line is a copy of the message.

Return-Path: <{sender}>
From: {sender}
To: {recipient}
Subject: Offer
Message-ID: {message_id}

Hello
"""


def test_a_text_report_from_the_null_sender_is_read_and_suppresses_an_unknown_user(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[CLIENT])
    append(
        imap_special, special_user, "INBOX", filled(QMAIL_NULL_SENDER, message_id=header, recipient=CLIENT)
    )

    [result] = poll()

    assert result.outcomes == {"bounced": 1}
    assert suppressed() == {CLIENT: "suppressed"}
    [bounce] = message(message_id).bounces or []
    assert (bounce.reason, bounce.status) == ("user_unknown", "5.1.1")


def test_a_report_about_an_address_the_email_never_went_to_changes_nothing(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    failed_hooks: list[tuple[str, str]],
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[CLIENT])
    forged = report("exim-hard-5.1.1", message_id=header, recipient=COLLEAGUE)
    append(imap_special, special_user, "INBOX", forged)

    [result] = poll()

    assert result.outcomes == {"unknown_recipient": 1}
    assert suppressed() == {} and message(message_id).bounces is None and failed_hooks == []


def test_a_reply_is_counted_once_and_an_out_of_office_answer_not_at_all(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    replied_hooks: list[str],
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[CLIENT])
    head = f"From: Client <{CLIENT}>\r\nTo: {SENDER}\r\nDate: Wed, 25 Nov 2026 11:00:00 +0000\r\n"
    vacation = (
        f"{head}Subject: Automatic reply: Offer\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: {header}\r\n"
        "Message-ID: <ooo-1@gmail.example>\r\n\r\nI am away until Monday.\r\n"
    )
    answer = (
        f"{head}Subject: Re: Offer\r\nIn-Reply-To: {header}\r\nReferences: {header}\r\n"
        "Message-ID: <answer-1@gmail.example>\r\n\r\nYes, let's talk tomorrow.\r\n"
    )
    second = answer.replace("answer-1", "answer-2")
    for text in (vacation, answer, second):
        append(imap_special, special_user, "INBOX", text.encode())

    [result] = poll()

    assert result.replies == 2 and result.outcomes == {"replied": 2}  # the vacation answer: nothing
    stored = message(message_id)
    assert stored.replies == 2 and stored.first_reply_at == CLOCK.now()
    assert replied_hooks == [message_id]  # the first reply only
    assert events(message_id)[-2:] == ["replied", "replied"]
    assert poll()[0].outcomes == {}  # read again: nothing new

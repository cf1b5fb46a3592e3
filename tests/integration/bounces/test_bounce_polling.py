"""Bounce polling against a real Dovecot inbox holding delivery reports of four MTAs."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from mailer_core.store.models import MailboxModel, SuppressionModel

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.bounce_helpers import CLOCK, green_mailbox, poll, report, sent_message
from tests.support.fixtures.imap import ACCOUNT, SENDER
from tests.support.imap_helpers import compose, events, mailbox, message, send_queued
from tests.support.imap_servers import ImapUser, append, new_user, read_folder
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

MTAS = ["postfix", "exim", "exchange", "gmail"]
HARD, SOFT = "gone@client.example", "full@client.example"


@pytest.mark.parametrize("mta", MTAS)
def test_hard_bounces_suppress_and_fail_soft_ones_are_only_recorded(
    mta: str,
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    failed_hooks: list[tuple[str, str]],
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[HARD, SOFT])
    append(
        imap_special, special_user, "INBOX", report(f"{mta}-soft-4.2.2", message_id=header, recipient=SOFT)
    )
    append(
        imap_special, special_user, "INBOX", report(f"{mta}-hard-5.1.1", message_id=header, recipient=HARD)
    )

    [result] = poll()

    assert result.error is None and result.reports == 2
    assert result.outcomes == {"delayed": 1, "bounced": 1}
    stored = message(message_id)
    assert stored.status == "sent"  # the other recipient may still get it
    by_address = {b.address: b for b in stored.bounces}
    assert by_address[HARD].permanent and by_address[HARD].status == "5.1.1"
    assert not by_address[SOFT].permanent and by_address[SOFT].status == "4.2.2"
    assert "5.1" in (by_address[HARD].diagnostic or "") or "550" in (by_address[HARD].diagnostic or "")
    assert events(message_id)[-2:] == ["delayed", "bounced"]
    assert [s.address for s in SuppressionModel.query(ACCOUNT)] == [HARD]
    assert failed_hooks == [(message_id, f"bounced: {stored.history[-1].detail}")]
    view = user.get(f"/v1/messages/{message_id}").json()
    assert {b["address"]: b["permanent"] for b in view["bounces"]} == {HARD: True, SOFT: False}


def test_a_poll_that_runs_twice_processes_nothing_twice_and_marks_nothing_read(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    failed_hooks: list[tuple[str, str]],
) -> None:
    mailbox_id = green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[HARD])
    append(imap_special, special_user, "INBOX", report("gmail-hard-5.1.1", message_id=header, recipient=HARD))
    # The same report delivered twice (a second copy in the inbox) counts once.
    append(imap_special, special_user, "INBOX", report("gmail-hard-5.1.1", message_id=header, recipient=HARD))

    first = poll()
    history = events(message_id)
    second = poll()

    assert first[0].outcomes == {"bounced": 1, "duplicate": 1}
    assert second[0].looked_at == 0 and second[0].outcomes == {}
    assert events(message_id) == history and history.count("bounced") == 1
    assert len(failed_hooks) == 1
    inbox = read_folder(imap_special, special_user, "INBOX")
    assert len(inbox) == 2 and all("\\Seen" not in mail.flags for mail in inbox)
    assert mailbox(mailbox_id).imap_last_uid == inbox[-1].uid

    # The server renumbered the inbox (UIDVALIDITY changed): recent mail is read again,
    # and recording it again changes nothing.
    MailboxModel(ACCOUNT, mailbox_id).update(actions=[MailboxModel.imap_uidvalidity.set(1)])
    [again] = poll()

    assert again.looked_at == 2 and again.outcomes == {"duplicate": 2}
    assert events(message_id) == history and len(failed_hooks) == 1
    assert mailbox(mailbox_id).imap_uidvalidity != 1


def test_a_reply_quoting_an_error_is_a_reply_and_a_report_about_other_mail_is_left_alone(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[HARD])
    reply = (
        f"From: Client <{HARD}>\r\nTo: {SENDER}\r\nSubject: Re: Offer\r\nIn-Reply-To: {header}\r\n"
        f"Message-ID: <reply-1@client.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Thanks! Your last email said 550 5.1.1 User unknown for my colleague, though.\r\n"
    ).encode()
    append(imap_special, special_user, "INBOX", reply)
    stranger = "<01JDX0000000000000000000ZZ@example.com>"
    append(
        imap_special, special_user, "INBOX", report("postfix-hard-5.1.1", message_id=stranger, recipient=HARD)
    )

    [result] = poll()

    assert (result.looked_at, result.reports, result.replies) == (2, 1, 1)
    assert result.outcomes == {"unmatched": 1, "replied": 1}
    assert message(message_id).bounces is None and message(message_id).replies == 1
    assert list(SuppressionModel.query(ACCOUNT)) == []


def test_a_suppressed_address_is_skipped_and_an_administrator_lifts_it(
    user: ApiClient,
    admin: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user)
    _, header = sent_message(user, aws_stack, to=[HARD])
    append(imap_special, special_user, "INBOX", report("exim-hard-5.1.1", message_id=header, recipient=HARD))
    poll()
    smtp.messages.clear()

    both = compose(user, to=["Gone@Client.example", "other@client.example"])
    only = compose(user, to=[HARD])
    assert send_queued(aws_stack) == ["sent", "failed"]

    [received] = smtp.messages
    assert received.rcpt_tos == ("other@client.example",)
    assert events(both) == ["queued", "sending", "skipped", "sent", "filed"]
    assert "Gone@Client.example (user_unknown)" in (message(both).history[2].detail or "")
    assert message(only).status == "failed"
    assert "every recipient is suppressed" in (message(only).last_error or "")

    listed = user.get("/v1/suppressions").json()  # every user may see the list
    assert [(s["address"], s["reason"], s["status"], s["state"]) for s in listed["items"]] == [
        (HARD, "user_unknown", "5.1.1", "suppressed")
    ]
    assert listed["next_cursor"] is None
    assert user.delete(f"/v1/suppressions/{quote(HARD)}").status == 403
    assert admin.delete(f"/v1/suppressions/{quote(HARD)}").status == 204
    assert admin.delete(f"/v1/suppressions/{quote(HARD)}").status == 404
    assert user.get("/v1/suppressions").json()["items"] == []
    [lifted] = user.get("/v1/suppressions?state=lifted").json()["items"]
    assert lifted["lifted_by"] == admin.user_id and lifted["reports"] == 1
    row = user.get(f"/v1/suppressions/{quote(HARD)}").json()
    assert [line["what"] for line in row["history"]] == ["reported", "suppressed", "lifted"]
    assert "No such user here" in row["history"][0]["words"]

    again = compose(user, to=[HARD])
    assert send_queued(aws_stack) == ["sent"]
    assert message(again).status == "sent"


def test_suppressions_are_listed_a_page_at_a_time(admin: ApiClient, aws_stack: StackResources) -> None:
    from mailer_core.messages import suppressions

    def gone(account_id: int, address: str) -> None:
        report = suppressions.Report(f"r-{address}", "user_unknown", "suppress", CLOCK.now(), "5.1.1")
        assert suppressions.record(account_id, address, report)

    for n in range(5):
        gone(ACCOUNT, f"a{n}@client.example")
    gone(ACCOUNT + 1, "elsewhere@client.example")

    first = admin.get("/v1/suppressions?limit=3").json()
    rest = admin.get(f"/v1/suppressions?limit=3&cursor={first['next_cursor']}").json()

    assert [s["address"] for s in first["items"] + rest["items"]] == [
        f"a{n}@client.example" for n in range(5)
    ]
    assert admin.get("/v1/suppressions?cursor=bm9wZQ").status == 400
    for key in (
        {"account_id": {"N": str(ACCOUNT)}, "address": {"N": "5"}},  # an address that is a number
        {"account_id": {"N": str(ACCOUNT + 1)}, "address": {"S": "a0@client.example"}},  # another account's
    ):
        wrong = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()
        answer = admin.get(f"/v1/suppressions?cursor={wrong}")
        assert (answer.status, answer.json()["field"]) == (400, "cursor")


def test_a_bounce_names_the_message_in_the_envelope_sender_when_the_mailbox_allows_it(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    green_mailbox(user, smtp, imap_special, special_user, envelope_token=True)
    message_id, _ = sent_message(user, aws_stack, to=[HARD])
    token_sender = smtp.messages[0].mail_from
    assert token_sender == f"anna+mlr-{message_id.lower()}@example.com"
    # A report that returns no headers of the message, only the address it was sent to.
    bare = (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.client.example\r\nTo: {token_sender}\r\n"
        f"Subject: failure notice\r\nMessage-ID: <bare-1@mx.client.example>\r\n"
        f"X-Failed-Recipients: {HARD}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"A message that you sent could not be delivered to one or more of its recipients.\r\n\r\n"
        f"  {HARD}\r\n    550 5.1.1 User unknown\r\n"
    ).encode()
    append(imap_special, special_user, "INBOX", bare)

    [result] = poll()

    assert result.outcomes == {"bounced": 1}
    assert message(message_id).bounces[0].address == HARD


def test_the_schedule_queues_a_job_per_mailbox_each_job_polls_one_and_a_refused_login_turns_it_gray(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    aws_stack: StackResources,
) -> None:
    imap_user = new_user(imap_special, "polled")
    mailbox_id = green_mailbox(user, smtp, imap_special, imap_user)
    _, header = sent_message(user, aws_stack, to=[HARD])
    append(imap_special, imap_user, "INBOX", report("exchange-hard-5.1.1", message_id=header, recipient=HARD))
    handler = load_handler("bounces")
    queue = aws_stack.refs["BouncePollQueue"], aws_stack.attrs[("BouncePollQueue", "Arn")]

    assert handler.lambda_handler({}, LambdaContext()) == {"queued": 1}
    assert handler.lambda_handler({}, LambdaContext()) == {"queued": 0}  # its job is on its way
    result = deliver(handler, *queue)

    assert result["batchItemFailures"] == [] and result["polls"][0]["reports"] == 1
    MailboxModel(ACCOUNT, mailbox_id).update(actions=[MailboxModel.imap_password_ciphertext.remove()])
    # Now the SMTP password is tried for IMAP, and refused.
    assert handler.lambda_handler({}, LambdaContext()) == {"queued": 1}
    assert deliver(handler, *queue)["polls"][0]["error"].startswith("auth")
    shown = user.get(f"/v1/mailboxes/{mailbox_id}").json()
    assert shown["status"] == "gray"
    assert shown["last_check"]["source"] == "bounce polling"
    assert shown["last_check"]["imap"]["cause"] == "auth"
    assert shown["last_check"]["smtp"]["ok"]
    assert shown["bounce_polling"]["failures"] == 1
    assert handler.lambda_handler({}, LambdaContext()) == {"queued": 0}  # gray: not polled


def test_a_report_that_cannot_be_read_is_skipped_and_the_rest_still_count(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailer_core.bounces import reading

    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[HARD])
    append(
        imap_special, special_user, "INBOX", report("postfix-soft-4.2.2", message_id=header, recipient=HARD)
    )
    append(
        imap_special, special_user, "INBOX", report("postfix-hard-5.1.1", message_id=header, recipient=HARD)
    )
    real_parse, calls = reading.parse, []

    def breaks_once(raw: bytes) -> reading.Report | None:
        calls.append(raw)
        if len(calls) == 1:
            raise ValueError("a detector tripped over this one")
        return real_parse(raw)

    monkeypatch.setattr(reading, "parse", breaks_once)

    [result] = poll()

    assert result.error is None and result.outcomes == {"unreadable": 1, "bounced": 1}
    assert events(message_id)[-1] == "bounced"

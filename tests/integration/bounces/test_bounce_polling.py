"""Bounce polling against a real Dovecot inbox holding delivery reports of four MTAs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.bounces import poller as bounce_poller
from mailer_core.events import message_events
from mailer_core.store.models import MailboxModel, SuppressionModel

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.fixtures.imap import ACCOUNT, SENDER, mailbox_body
from tests.support.imap_helpers import compose, events, mailbox, message, send_queued
from tests.support.imap_servers import ImapUser, append, new_user, read_folder
from tests.support.smtp_servers import SmtpTestServer

DSN = Path(__file__).parent / "dsn"
MTAS = ["postfix", "exim", "exchange", "gmail"]
HARD, SOFT = "gone@client.example", "full@client.example"
CLOCK = FakeClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))


def report(name: str, *, message_id: str, recipient: str, sender: str = SENDER) -> bytes:
    """A delivery report from dsn/, about our message and recipient, with CRLF line ends."""
    text = (DSN / f"{name}.eml").read_text(encoding="utf-8")
    text = text.replace("{message_id}", message_id).replace("{recipient}", recipient)
    return text.replace("{sender}", sender).replace("\n", "\r\n").encode()


@pytest.fixture
def failed_hooks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        message_events, "on_message_failed", lambda m, reason: calls.append((m.message_id, reason))
    )
    return calls


def green_mailbox(
    user: ApiClient, smtp: SmtpTestServer, imap: DovecotServer, imap_user: ImapUser, **kw: Any
) -> str:
    reply = user.post("/v1/mailboxes", mailbox_body(smtp, imap, imap_user, **kw))
    assert reply.status == 201 and reply.json()["status"] == "green", reply.body
    return str(reply.json()["id"])


def sent_message(user: ApiClient, stack: StackResources, **body: Any) -> tuple[str, str]:
    """(message id, Message-ID header) of a message sent for real."""
    message_id = compose(user, **body)
    assert send_queued(stack) == ["sent"]
    return message_id, message(message_id).header_message_id


def poll() -> list[bounce_poller.MailboxPoll]:
    return bounce_poller.poll_all(clock=CLOCK)


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


def test_replies_and_reports_about_other_mail_are_left_alone(
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

    assert result.looked_at == 2 and result.reports == 1
    assert result.outcomes == {"unmatched": 1}
    assert message(message_id).bounces is None
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
    assert "Gone@Client.example (bounced)" in (message(both).history[2].detail or "")
    assert message(only).status == "failed"
    assert "every recipient is suppressed" in (message(only).last_error or "")

    listed = user.get("/v1/suppressions").json()  # every user may see the list
    assert [(s["address"], s["reason"], s["status"]) for s in listed["items"]] == [(HARD, "bounced", "5.1.1")]
    assert listed["next_cursor"] is None
    assert user.delete(f"/v1/suppressions/{quote(HARD)}").status == 403
    assert admin.delete(f"/v1/suppressions/{quote(HARD)}").status == 204
    assert admin.delete(f"/v1/suppressions/{quote(HARD)}").status == 404
    assert user.get("/v1/suppressions").json()["items"] == []

    again = compose(user, to=[HARD])
    assert send_queued(aws_stack) == ["sent"]
    assert message(again).status == "sent"


def test_suppressions_are_listed_a_page_at_a_time(admin: ApiClient, aws_stack: StackResources) -> None:
    from mailer_core.messages import suppressions

    for n in range(5):
        suppressions.add(ACCOUNT, f"a{n}@client.example", reason="bounced", when=CLOCK.now())
    suppressions.add(ACCOUNT + 1, "elsewhere@client.example", reason="bounced", when=CLOCK.now())

    first = admin.get("/v1/suppressions?limit=3").json()
    rest = admin.get(f"/v1/suppressions?limit=3&cursor={first['next_cursor']}").json()

    assert [s["address"] for s in first["items"] + rest["items"]] == [
        f"a{n}@client.example" for n in range(5)
    ]
    assert admin.get("/v1/suppressions?cursor=bm9wZQ").status == 400


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


def test_the_bounce_function_polls_on_its_schedule_and_a_refused_login_turns_the_mailbox_gray(
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

    result = handler.lambda_handler({}, LambdaContext())

    assert result["mailboxes"] == 1 and result["reports"] == 1
    MailboxModel(ACCOUNT, mailbox_id).update(actions=[MailboxModel.imap_password_ciphertext.remove()])
    # Now the SMTP password is tried for IMAP, and refused.
    result = handler.lambda_handler({}, LambdaContext())
    assert result["polls"][0]["error"].startswith("auth")
    shown = user.get(f"/v1/mailboxes/{mailbox_id}").json()
    assert shown["status"] == "gray"
    assert shown["last_check"]["source"] == "bounce polling"
    assert shown["last_check"]["imap"]["cause"] == "auth"
    assert shown["last_check"]["smtp"]["ok"]
    assert handler.lambda_handler({}, LambdaContext())["mailboxes"] == 0  # gray: not polled


def test_a_report_that_cannot_be_read_is_skipped_and_the_rest_still_count(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailer_core.bounces import reports as bounces

    green_mailbox(user, smtp, imap_special, special_user)
    message_id, header = sent_message(user, aws_stack, to=[HARD])
    append(
        imap_special, special_user, "INBOX", report("postfix-soft-4.2.2", message_id=header, recipient=HARD)
    )
    append(
        imap_special, special_user, "INBOX", report("postfix-hard-5.1.1", message_id=header, recipient=HARD)
    )
    real_parse, calls = bounces.parse, []

    def breaks_once(raw: bytes) -> bounces.Bounce | None:
        calls.append(raw)
        if len(calls) == 1:
            raise ValueError("a detector tripped over this one")
        return real_parse(raw)

    monkeypatch.setattr(bounces, "parse", breaks_once)

    [result] = poll()

    assert result.error is None and result.outcomes == {"unreadable": 1, "bounced": 1}
    assert events(message_id)[-1] == "bounced"

"""Every sent email is filed into the mailbox's Sent folder over IMAP, exactly as it was sent."""

from __future__ import annotations

from typing import Any

from mailer_core.adapters import imap
from mailer_core.base.clock import FakeClock
from mailer_core.mailboxes.sent_folder import SentFiler
from mailer_core.sending.worker import SendWorker

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.imap import mailbox_body
from tests.support.imap_helpers import compose, events, mailbox, message, send_queued
from tests.support.imap_servers import (
    ImapUser,
    create_folder,
    date_header,
    new_user,
    read_folder,
    require_dovecot,
)
from tests.support.smtp_servers import SmtpTestServer


def create_mailbox(user: ApiClient, body: dict[str, Any], status: str = "green") -> str:
    reply = user.post("/v1/mailboxes", body)
    assert reply.status == 201 and reply.json()["status"] == status, reply.body
    return str(reply.json()["id"])


def test_a_sent_email_is_appended_to_the_special_use_sent_folder_exactly_and_seen(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    create_mailbox(user, mailbox_body(smtp, imap_special, special_user))
    message_id = compose(user, bcc=["hidden@example.com"])

    assert send_queued(aws_stack) == ["sent"]

    [received] = smtp.messages
    [filed] = read_folder(imap_special, special_user, "Sent")
    assert filed.data == received.data  # the very bytes that went out over SMTP
    assert b"hidden@example.com" not in filed.data
    assert "\\Seen" in filed.flags
    assert filed.internal_date == date_header(filed.data)  # dated like the email itself
    assert read_folder(imap_special, special_user, "INBOX") == []
    assert events(message_id) == ["queued", "sending", "sent", "filed"]
    assert message(message_id).history[-1].detail == "copied to “Sent”"


def test_a_cyrillic_sent_folder_on_a_server_without_special_use_is_found_by_name(
    user: ApiClient, smtp: SmtpTestServer, imap_russian: DovecotServer, aws_stack: StackResources
) -> None:
    imap_user = new_user(imap_russian, "russian")
    mailbox_id = create_mailbox(user, mailbox_body(smtp, imap_russian, imap_user))
    assert mailbox(mailbox_id).sent_folder == "Отправленные"
    compose(user)

    assert send_queued(aws_stack) == ["sent"]

    # Dovecot named the folder itself: its wire name is Dovecot's modified UTF-7.
    [filed] = read_folder(imap_russian, imap_user, "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")
    assert filed.data == smtp.messages[0].data
    assert mailbox(mailbox_id).last_append_error is None


def test_sent_items_is_found_by_name_and_a_missing_sent_folder_is_created(
    user: ApiClient, smtp: SmtpTestServer, imap_bare: DovecotServer, aws_stack: StackResources
) -> None:
    outlook_like = new_user(imap_bare, "items")
    create_folder(imap_bare, outlook_like, "Sent Items")
    create_folder(imap_bare, outlook_like, "Drafts")
    nothing = new_user(imap_bare, "nothing")

    first = create_mailbox(user, mailbox_body(smtp, imap_bare, outlook_like, is_default=False))
    second = create_mailbox(user, mailbox_body(smtp, imap_bare, nothing, is_default=False))
    assert mailbox(first).sent_folder == "Sent Items"
    assert mailbox(second).sent_folder is None  # the check found none and created nothing
    compose(user, mailbox_id=first)
    created = compose(user, mailbox_id=second)
    assert send_queued(aws_stack) == ["sent", "sent"]

    assert len(read_folder(imap_bare, outlook_like, "Sent Items")) == 1
    assert len(read_folder(imap_bare, nothing, "Sent")) == 1  # created with the first email
    assert message(created).history[-1].detail == "copied to “Sent” (created by Mailer)"
    assert mailbox(second).sent_folder == "Sent"


def test_one_imap_session_serves_a_whole_batch(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    create_mailbox(user, mailbox_body(smtp, imap_special, special_user))
    for n in range(3):
        compose(user, subject=f"n{n}")
    logins: list[str] = []

    def counting(settings: imap.ImapSettings) -> imap.ImapSession:
        logins.append(settings.login)
        return imap.open_session(settings)

    worker = SendWorker(clock=FakeClock(), filer=SentFiler(pool=imap.ImapPool(connect=counting)))

    assert send_queued(aws_stack, worker) == ["sent"] * 3
    assert len(read_folder(imap_special, special_user, "Sent")) == 3
    assert logins == [special_user.login]


def test_a_failed_append_neither_fails_nor_repeats_the_send(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    require_dovecot()
    with DovecotServer() as short_lived:  # green when checked, gone when the emails go out
        imap_user = new_user(short_lived)
        mailbox_id = create_mailbox(user, mailbox_body(smtp, short_lived, imap_user))
        short_lived.stop(wait=False)
    first, second = compose(user), compose(user)

    assert send_queued(aws_stack) == ["sent", "sent"]

    assert len(smtp.messages) == 2  # each sent once
    for message_id in (first, second):
        stored = message(message_id)
        assert stored.status == "sent" and stored.last_error is None
        assert [h.event for h in stored.history][-2:] == ["sent", "not_filed"]
    assert "connection" in (message(first).history[-1].detail or "")
    assert "a moment ago" in (message(second).history[-1].detail or "")  # not tried again at once
    box = mailbox(mailbox_id)
    assert (box.last_append_error or "").startswith("connection: ")  # refused, or reset while it stops
    assert box.last_append_error_at is not None
    shown = user.get(f"/v1/mailboxes/{mailbox_id}").json()
    assert shown["last_append_error"] == box.last_append_error


def test_nothing_is_filed_where_the_provider_files_smtp_mail_itself(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    create_mailbox(user, mailbox_body(smtp, imap_special, special_user, append_to_sent=False))
    message_id = compose(user)

    assert send_queued(aws_stack) == ["sent"]

    assert read_folder(imap_special, special_user, "Sent") == []
    assert events(message_id) == ["queued", "sending", "sent"]

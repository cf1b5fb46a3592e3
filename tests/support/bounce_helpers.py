"""Delivery reports in a real inbox, for the bounce poller's tests: a sent email and its reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailer_core.base.clock import Clock, FakeClock
from mailer_core.bounces import poller as bounce_poller

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.imap import SENDER, mailbox_body
from tests.support.imap_helpers import compose, message, send_queued
from tests.support.imap_servers import ImapUser
from tests.support.smtp_servers import SmtpTestServer

ROOT = Path(__file__).resolve().parents[1]
DSN = ROOT / "integration" / "bounces" / "dsn"
CORPUS = ROOT / "support" / "bounce_corpus"
CLOCK = FakeClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))


def filled(text: str, *, message_id: str, recipient: str, sender: str = SENDER, other: str = "") -> bytes:
    """A report's text with its placeholders filled in, with CRLF line ends."""
    for name, value in (("message_id", message_id), ("recipient", recipient), ("sender", sender)):
        text = text.replace("{" + name + "}", value)
    text = text.replace("{other}", other or "other@client.example")
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def report(name: str, *, message_id: str, recipient: str, sender: str = SENDER) -> bytes:
    """A delivery report from dsn/, about our message and recipient."""
    text = (DSN / f"{name}.eml").read_text(encoding="utf-8")
    return filled(text, message_id=message_id, recipient=recipient, sender=sender)


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


def poll(clock: Clock = CLOCK) -> list[bounce_poller.MailboxPoll]:
    return bounce_poller.poll_all(clock=clock)

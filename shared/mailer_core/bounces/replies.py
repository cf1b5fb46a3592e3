"""Replies: a client's answer to one of our emails, read from the inbox the bounce poller reads.

An inbox message is a reply to our email when its In-Reply-To or References name our
Message-ID (`<{message id}@{sender domain}>`, mime.make_message_id) of a message this mailbox
sent. Its headers are enough: the body is never fetched. Automatic answers (RFC 3834
`Auto-Submitted`, vacation and out-of-office messages: reading.is_auto_reply), delivery
reports and the mailbox's own mail are no replies. Each reply is counted once on the message
(keyed by its own Message-ID); the first one sets `first_reply_at` and announces the
"replied" event: the message's "replied" triggers run and its not-opened timer stops.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.message import Message
from email.utils import parseaddr
from typing import Literal

from pynamodb.exceptions import UpdateError

from mailer_core.bounces import reading
from mailer_core.bounces.reports import find_message
from mailer_core.events import message_events
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel, MessageModel

Outcome = Literal["replied", "duplicate", "unmatched", "auto_reply", "own"]
_ANGLE_ID = re.compile(r"<[^<>\s]+>")


def referenced_ids(headers: bytes) -> tuple[str, ...]:
    """The Message-IDs a message answers (In-Reply-To first, then References, newest last)."""
    parsed = reading.parse_headers(headers)
    found = _ANGLE_ID.findall(str(parsed.get("In-Reply-To") or ""))
    found += reversed(_ANGLE_ID.findall(str(parsed.get("References") or "")))
    return tuple(dict.fromkeys(found))


def looks_like_reply(headers: bytes) -> bool:
    """Cheap, on headers only: it answers some email and is neither a report nor an auto-reply."""
    if not referenced_ids(headers) or reading.is_candidate(headers):
        return False
    return not reading.is_auto_reply(headers)


def record(mailbox: MailboxModel, headers: bytes, *, now: datetime) -> Outcome:
    """Count a reply on the message it answers, once; the first one announces "replied"."""
    parsed = reading.parse_headers(headers)
    if reading.is_auto_reply(parsed):
        return "auto_reply"
    sender = parseaddr(str(parsed.get("From") or ""))[1].lower()
    if sender and sender == str(mailbox.sender_email).lower():
        return "own"  # the manager's own answer in the thread
    message = find_message(mailbox, referenced_ids(headers))
    if message is None:
        return "unmatched"
    key = f"reply#{_reply_key(parsed, headers)}"
    subject = " ".join(reading.decoded(parsed.get("Subject")).split())
    detail = f"{sender or 'unknown sender'}: {subject}"[: timeline.DETAIL_CHARS]
    try:
        message.update(
            actions=[
                MessageModel.replies.set((MessageModel.replies | 0) + 1),
                MessageModel.first_reply_at.set(MessageModel.first_reply_at | now),
                MessageModel.bounce_keys.add({key}),
                timeline.history_append(timeline.entry(now, "replied", detail)),
                MessageModel.updated_at.set(now),
            ],
            condition=~MessageModel.bounce_keys.contains(key),
        )
    except UpdateError as error:
        if is_condition_failure(error):
            return "duplicate"
        raise
    if int(message.replies or 0) == 1:  # this update counted the first reply
        message_events.on_message_replied(message, now)
    return "replied"


def _reply_key(parsed: Message, headers: bytes) -> str:
    own = str(parsed.get("Message-ID") or "").strip()
    return own[:200] if own else hashlib.sha256(headers).hexdigest()[:32]

"""Bounce polling: read each green mailbox's new inbox mail; act on reports and replies.

A recurring schedule runs `poll_all`. For every green mailbox with IMAP, oldest poll first and
while time is left, the inbox is opened read-only (EXAMINE) and the messages after the last
UID seen are looked at: headers first, then the whole message (BODY.PEEK, so nothing is
marked read, moved or deleted) when the headers say it is a report (`reading`, acted on by
`reports`); a reply to one of our emails is counted from its headers alone (`replies`). The
place in the inbox (UIDVALIDITY, last UID) is stored after each
chunk, with a condition so that it only moves forward.

When the inbox's UIDVALIDITY changed (the server renumbered it), the UIDs seen before mean
nothing: mail since the day before the last poll is read again, which is safe because
recording a report is idempotent. A mailbox checked for the first time starts at the mail
that arrives after the check (mailbox_check stores the place). A refused IMAP login turns
the mailbox gray with the reason; other IMAP failures are left for the next run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from pynamodb.exceptions import UpdateError

from mailer_core.adapters import imap
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.bounces import reading, replies, reports
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel

MAX_MESSAGES_PER_POLL = 500
CHUNK = 50
MAX_REPORT_BYTES = 5 * 1024 * 1024  # a report with the whole original attached stays below this
SAFETY_SECONDS = 20.0  # no new mailbox is started with less time left than this


@dataclass
class MailboxPoll:
    account_id: int
    mailbox_id: str
    looked_at: int = 0
    reports: int = 0
    replies: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def view(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "mailbox_id": self.mailbox_id,
            "looked_at": self.looked_at,
            "reports": self.reports,
            "replies": self.replies,
            "outcomes": dict(self.outcomes),
            "error": self.error,
        }


def poll_all(
    *,
    clock: Clock = SYSTEM_CLOCK,
    time_left: Callable[[], float] = lambda: math.inf,
    connect: Callable[[imap.ImapSettings], imap.ImapSession] = imap.open_session,
) -> list[MailboxPoll]:
    """Poll every green mailbox that has IMAP, least recently polled first, while time lasts."""
    due = [m for m in MailboxModel.scan(MailboxModel.status == "green") if m.imap_host]
    due.sort(key=lambda m: (m.imap_polled_at is not None, m.imap_polled_at or clock.now()))
    results: list[MailboxPoll] = []
    for mailbox in due:
        if time_left() < SAFETY_SECONDS:
            logger.warning(
                "bounce polling ran out of time", extra={"left_for_next_run": len(due) - len(results)}
            )
            break
        try:
            results.append(poll_mailbox(mailbox, clock=clock, connect=connect))
        except Exception as error:  # one mailbox's trouble does not stop the others
            logger.exception("bounce polling of a mailbox failed")
            failed = MailboxPoll(
                int(mailbox.account_id), mailbox.mailbox_id, error=f"{type(error).__name__}: {error}"
            )
            results.append(failed)
    return results


def poll_mailbox(
    mailbox: MailboxModel,
    *,
    clock: Clock = SYSTEM_CLOCK,
    connect: Callable[[imap.ImapSettings], imap.ImapSession] = imap.open_session,
    max_messages: int = MAX_MESSAGES_PER_POLL,
) -> MailboxPoll:
    poll = MailboxPoll(int(mailbox.account_id), mailbox.mailbox_id)
    logger.append_keys(account_id=poll.account_id, mailbox_id=poll.mailbox_id)
    settings = mailbox_connection.imap_settings(mailbox)
    if settings is None:
        return poll
    try:
        session = connect(settings)
    except imap.ImapFailure as failure:
        poll.error = f"{failure.kind}: {failure}"
        if failure.kind == "auth":
            mailbox_check.mark_imap_refused_login(mailbox, failure, clock=clock)
        logger.warning("bounce polling could not log in", extra={"reason": poll.error})
        return poll
    try:
        _poll_session(mailbox, session, poll, clock, max_messages)
    except imap.ImapFailure as failure:
        poll.error = f"{failure.kind}: {failure}"
        logger.warning("bounce polling stopped", extra={"reason": poll.error})
    finally:
        session.close()
    return poll


def _poll_session(
    mailbox: MailboxModel, session: imap.ImapSession, poll: MailboxPoll, clock: Clock, max_messages: int
) -> None:
    inbox = session.examine("INBOX")
    start_here = max(0, (inbox.uidnext or 1) - 1)
    if mailbox.imap_uidvalidity is None or mailbox.imap_last_uid is None:
        _save_place(mailbox, inbox.uidvalidity, start_here, clock)  # never checked: start from now
        return
    if int(mailbox.imap_uidvalidity) == inbox.uidvalidity:
        uids = session.uids_after(int(mailbox.imap_last_uid))
    else:
        since = (mailbox.imap_polled_at or clock.now()) - timedelta(days=1)
        logger.info("the inbox's UIDVALIDITY changed; reading mail since %s again", since.date())
        uids = session.uids_since(since.date())
    uids = uids[:max_messages]
    if not uids:
        _save_place(mailbox, inbox.uidvalidity, int(mailbox.imap_last_uid), clock, force_validity=True)
        return
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start : start + CHUNK]
        for mail in session.headers(chunk):
            poll.looked_at += 1
            kind, outcomes = _read_one(mailbox, session, mail, clock)
            poll.reports += kind == "report"
            poll.replies += kind == "reply"
            for outcome in outcomes:
                poll.outcomes[outcome] = poll.outcomes.get(outcome, 0) + 1
        _save_place(mailbox, inbox.uidvalidity, chunk[-1], clock, force_validity=True)


def _read_one(
    mailbox: MailboxModel, session: imap.ImapSession, mail: imap.NewMail, clock: Clock
) -> tuple[str | None, list[str]]:
    """What one inbox message is to us: a report (read whole), a reply (headers only) or nothing."""
    if replies.looks_like_reply(mail.headers):
        return "reply", [replies.record(mailbox, mail.headers, now=clock.now())]
    if mail.size > MAX_REPORT_BYTES or not reading.is_candidate(mail.headers):
        return None, []
    raw = session.message(mail.uid)
    try:
        report = reading.parse(raw)
    except Exception:  # a malformed report must not stop the mailbox's polling
        logger.exception("a delivery report could not be read", extra={"uid": mail.uid})
        return None, ["unreadable"]
    if report is None:
        return None, []
    return "report", list(reports.record(mailbox, report, clock=clock))


def _save_place(
    mailbox: MailboxModel, uidvalidity: int, last_uid: int, clock: Clock, *, force_validity: bool = False
) -> None:
    """Move the place forward (never back), or set it in a renumbered inbox."""
    moves_forward = (
        MailboxModel.imap_last_uid.does_not_exist()
        | (MailboxModel.imap_uidvalidity != uidvalidity)
        | (MailboxModel.imap_last_uid < last_uid)
    )
    condition = MailboxModel.mailbox_id.exists() & (
        moves_forward | (MailboxModel.imap_last_uid == last_uid) if force_validity else moves_forward
    )
    try:
        mailbox.update(
            actions=[
                MailboxModel.imap_uidvalidity.set(uidvalidity),
                MailboxModel.imap_last_uid.set(last_uid),
                MailboxModel.imap_polled_at.set(clock.now()),
            ],
            condition=condition,
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise
        logger.info("another poll moved this mailbox's place further; kept it")

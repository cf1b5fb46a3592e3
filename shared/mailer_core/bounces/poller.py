"""Bounce polling: read each green mailbox's new inbox mail; act on reports and replies.

Every 5 minutes the schedule runs `dispatch`: each green mailbox with IMAP whose next poll is
due gets a lease (a conditional write, so a mailbox is never polled twice at once) and one job
on the bounce-poll queue; the bounce function takes the jobs one at a time (`poll_job`), so one
mailbox's trouble costs only its own invocation. A poll has `MAILBOX_SECONDS` in all (the IMAP
session is cut at that time, whatever the server does) and reads at most `MAX_MESSAGES_PER_POLL`
messages; literals larger than the adapter's limits are refused.

A poll opens the inbox read-only (EXAMINE) and looks at the messages after the last UID seen:
headers first, then the whole message (BODY.PEEK, so nothing is marked read, moved or deleted)
when the headers say it is a report (`reading`, acted on by `reports`); a reply to one of our
emails is counted from its headers alone (`replies`). The place in the inbox (UIDVALIDITY, last
UID) is stored after each chunk, with a condition so that it only moves forward.

When the inbox's UIDVALIDITY changed (the server renumbered it), the UIDs seen before mean
nothing: mail since the day before the last poll is read again, which is safe because
recording a report is idempotent. A mailbox checked for the first time starts at the mail
that arrives after the check (mailbox_check stores the place). A refused IMAP login turns
the mailbox gray with the reason. Any failed poll is recorded on the mailbox with its words
and backs off (5 minutes, doubling, at most 6 hours); after `QUARANTINE_AFTER` failures in a
row the mailbox is polled once a day until a poll succeeds. `poll_all` polls every due mailbox
in this process, one after another (tests and operators).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.update import Action

from mailer_core.adapters import imap, sqs
from mailer_core.base import backoff
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.bounces import reading, replies, reports
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.mailboxes import health
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel

MAX_MESSAGES_PER_POLL = 500
CHUNK = 50
MAX_REPORT_BYTES = 5 * 1024 * 1024  # a report with the whole original attached stays below this
MAILBOX_SECONDS = 60.0  # one mailbox's poll, connect to logout
LEASE_SECONDS = 15 * 60  # a dispatched job that never ran frees its mailbox after this
RETRY_BASE_SECONDS, RETRY_CAP_SECONDS = 5 * 60, 6 * 3600
QUARANTINE_SECONDS = 24 * 3600
QUARANTINE_AFTER = health.QUARANTINE_AFTER


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


def due(now: datetime) -> list[MailboxModel]:
    """Green mailboxes with IMAP whose next poll is due, least recently polled first."""
    found = [
        m
        for m in MailboxModel.scan(MailboxModel.status == "green")
        if m.imap_host and (m.imap_next_poll_at is None or m.imap_next_poll_at <= now)
    ]
    found.sort(key=lambda m: (m.imap_polled_at is not None, m.imap_polled_at or now))
    return found


def dispatch(*, clock: Clock = SYSTEM_CLOCK) -> int:
    """One poll job per due mailbox on the bounce-poll queue, each mailbox leased once."""
    now = clock.now()
    jobs = []
    for mailbox in due(now):
        if _lease(mailbox, now):
            jobs.append(json.dumps({"account_id": int(mailbox.account_id), "mailbox_id": mailbox.mailbox_id}))
    sqs.enqueue_bounce_polls(jobs)
    return len(jobs)


def _lease(mailbox: MailboxModel, now: datetime) -> bool:
    epoch = int(now.timestamp())
    try:
        mailbox.update(
            actions=[MailboxModel.imap_poll_lease_until.set(epoch + LEASE_SECONDS)],
            condition=MailboxModel.mailbox_id.exists()
            & (
                MailboxModel.imap_poll_lease_until.does_not_exist()
                | (MailboxModel.imap_poll_lease_until < epoch)
            ),
        )
    except UpdateError as error:
        if is_condition_failure(error):
            return False  # a job for it is on its way
        raise
    return True


def poll_job(
    body: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    connect: Callable[[imap.ImapSettings], imap.ImapSession] = imap.open_session,
) -> MailboxPoll | None:
    """A job from the bounce-poll queue: poll its mailbox if it is still green and has IMAP."""
    job = json.loads(body)
    try:
        mailbox = MailboxModel.get(int(job["account_id"]), str(job["mailbox_id"]), consistent_read=True)
    except DoesNotExist:
        return None
    if mailbox.status != "green" or not mailbox.imap_host:
        _release(mailbox)
        return None
    return poll_mailbox(mailbox, clock=clock, connect=connect)


def poll_all(
    *,
    clock: Clock = SYSTEM_CLOCK,
    time_left: Callable[[], float] = lambda: math.inf,
    connect: Callable[[imap.ImapSettings], imap.ImapSession] = imap.open_session,
    seconds: float = MAILBOX_SECONDS,
) -> list[MailboxPoll]:
    """Poll every due mailbox here, one after another, each within `seconds`, while time lasts."""
    pending = due(clock.now())
    results: list[MailboxPoll] = []
    for mailbox in pending:
        if time_left() < seconds + 10:
            logger.warning(
                "bounce polling ran out of time", extra={"left_for_next_run": len(pending) - len(results)}
            )
            break
        results.append(poll_mailbox(mailbox, clock=clock, connect=connect, seconds=seconds))
    return results


def poll_mailbox(
    mailbox: MailboxModel,
    *,
    clock: Clock = SYSTEM_CLOCK,
    connect: Callable[[imap.ImapSettings], imap.ImapSession] = imap.open_session,
    max_messages: int = MAX_MESSAGES_PER_POLL,
    seconds: float = MAILBOX_SECONDS,
) -> MailboxPoll:
    """Poll one mailbox within `seconds`; the outcome (and any failure's back-off) is recorded on it."""
    poll = MailboxPoll(int(mailbox.account_id), mailbox.mailbox_id)
    logger.append_keys(account_id=poll.account_id, mailbox_id=poll.mailbox_id)
    started = time.monotonic()
    try:
        _poll(mailbox, poll, clock, connect, max_messages, seconds)
    except Exception as error:  # one mailbox's trouble is its own: recorded, never raised
        logger.exception("bounce polling of a mailbox failed")
        poll.error = f"{type(error).__name__}: {error}"
    _settle(mailbox, poll, clock.now())
    logger.info("mailbox polled", extra={**poll.view(), "seconds": round(time.monotonic() - started, 3)})
    return poll


def _poll(
    mailbox: MailboxModel,
    poll: MailboxPoll,
    clock: Clock,
    connect: Callable[[imap.ImapSettings], imap.ImapSession],
    max_messages: int,
    seconds: float,
) -> None:
    settings = mailbox_connection.imap_settings(mailbox)
    if settings is None:
        return
    try:
        session = connect(dataclasses.replace(settings, time_limit=seconds))
    except imap.ImapFailure as failure:
        poll.error = f"{failure.kind}: {failure}"
        if failure.kind == "auth":
            mailbox_check.mark_imap_refused_login(mailbox, failure, clock=clock)
        logger.warning("bounce polling could not log in", extra={"reason": poll.error})
        return
    try:
        _poll_session(mailbox, session, poll, clock, max_messages)
    except imap.ImapFailure as failure:
        poll.error = f"{failure.kind}: {failure}"
        logger.warning("bounce polling stopped", extra={"reason": poll.error})
    finally:
        session.close()


def _settle(mailbox: MailboxModel, poll: MailboxPoll, now: datetime) -> None:
    """Record how the poll went: a success clears the failures, a failure backs off (or quarantines)."""
    actions: list[Action]
    if poll.error is None:
        actions = [
            MailboxModel.imap_poll_failures.remove(),
            MailboxModel.imap_poll_error.remove(),
            MailboxModel.imap_next_poll_at.remove(),
        ]
    else:
        failures = int(mailbox.imap_poll_failures or 0) + 1  # the lease makes this poll the only one
        wait = backoff.exponential(failures, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS, first_attempt=1)
        if failures >= QUARANTINE_AFTER:
            wait = QUARANTINE_SECONDS
        actions = [
            MailboxModel.imap_poll_failures.set(failures),
            MailboxModel.imap_poll_error.set(poll.error[:1000]),
            MailboxModel.imap_next_poll_at.set(now + timedelta(seconds=wait)),
            MailboxModel.imap_polled_at.set(now),  # a failed poll goes to the back of the line too
        ]
    try:
        mailbox.update(
            actions=[*actions, MailboxModel.imap_poll_lease_until.remove()],
            condition=MailboxModel.mailbox_id.exists(),
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise  # the mailbox was deleted meanwhile: nothing to record


def _release(mailbox: MailboxModel) -> None:
    try:
        mailbox.update(
            actions=[MailboxModel.imap_poll_lease_until.remove()], condition=MailboxModel.mailbox_id.exists()
        )
    except UpdateError as error:
        if not is_condition_failure(error):
            raise


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

"""What becomes of a message in the send worker's hands: claimed, sent, retried, failed,
canceled, released. Each is one conditional transition (`store.message_state`), so a repeated
job or a second worker changes nothing twice; "sent" and "failed" are announced once
(`events.message_events`), by the write that made them true.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters import s3, sqs
from mailer_core.adapters.smtp import SmtpFailure
from mailer_core.base import backoff
from mailer_core.base.clock import Clock
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import campaign_state, message_events
from mailer_core.files.attachments import AttachmentFailure
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.store import message_state as state
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel, MessageModel

Outcome = Literal[
    "sent",
    "failed",
    "retrying",
    "deferred",
    "skipped",
    "interrupted",
    "not_found",
    "canceled",
    "held",
]
CLAIM_LEASE = timedelta(minutes=5)
RETRY_BASE_SECONDS = 30
SCHEDULE_SLACK_SECONDS = 1.0
INTERRUPTED = (
    "interrupted during SMTP: the worker stopped before the result was recorded; "
    "not re-sent automatically to avoid a duplicate. Check the Sent folder, then send it again"
)
ANSWER_LOST = (
    "interrupted during SMTP: the connection was lost after the whole email went out and before "
    "the server answered ({words}); the server may have it, so it is not re-sent automatically "
    "to avoid a duplicate. Check the Sent folder, then send it again"
)


def claim(job: sqs.SendJob, clock: Clock) -> MessageModel | Outcome:
    """Take the message for sending: one conditional UpdateItem that returns it.

    Only a queued message, or a scheduled one whose time has come, can be claimed. When
    the claim fails the message is read to tell why (the slow path).
    """
    now = clock.now()
    message = MessageModel(job.account_id, job.message_id)
    due = MessageModel.send_at.does_not_exist() | (
        MessageModel.send_at <= now + timedelta(seconds=SCHEDULE_SLACK_SECONDS)
    )
    claimed = state.transition(
        message,
        to=state.SENDING,
        when=now,
        event="sending",
        allowed_from=(state.QUEUED, state.SCHEDULED),
        condition=due,
        extra=[
            MessageModel.attempts.add(1),
            MessageModel.claim_expires_at.set(now + CLAIM_LEASE),
            MessageModel.waiting_reason.remove(),
            MessageModel.waiting_until.remove(),
        ],
    )
    if claimed:
        return message
    try:
        current = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
    except DoesNotExist:
        logger.warning("send job for a message that does not exist")
        return "not_found"
    if current.status == state.SENDING:
        return _left_sending(current, clock)
    if current.status in (state.SCHEDULED, state.QUEUED) and current.send_at and current.send_at > now:
        # Early: an SQS delay, or a schedule that fired seconds before send_at (60 s precision).
        early = (current.send_at - now).total_seconds()
        sqs.enqueue_send(job, delay_seconds=math.ceil(early))
        return "deferred"
    return "skipped"  # sent, failed, canceled or a draft: nothing to do


def _left_sending(current: MessageModel, clock: Clock) -> Outcome:
    """A job met its message `sending`: another worker holds the claim, or one that died did
    (its lease has passed). That one is marked interrupted now: this job may be the last one
    the message has, and a job done without it would leave it `sending` for ever."""
    if current.claim_expires_at and current.claim_expires_at > clock.now():
        return "skipped"  # another worker holds the claim; its own job comes back if it dies
    fail(current, INTERRUPTED, from_=(state.SENDING,), clock=clock)
    return "interrupted"


def _not_moved(account_id: int, message_id: str, clock: Clock) -> Outcome:
    """A job's conditional transition (wait, fail, cancel, hold) found its message elsewhere:
    it left `queued` meanwhile (sent, failed, canceled), or a worker holds it, or held it and
    died (`_left_sending`: this job may be the message's last, so it settles that now). Every
    path that gives up on a message whose transition failed ends here."""
    try:
        current = MessageModel.get(account_id, message_id, consistent_read=True)
    except DoesNotExist:
        return "not_found"
    return _left_sending(current, clock) if current.status == state.SENDING else "skipped"


def without_mailbox(job: sqs.SendJob, clock: Clock) -> Outcome:
    """The job's mailbox was deleted: the message fails with that reason (once)."""
    try:
        message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
    except DoesNotExist:
        return "not_found"
    reason = "the mailbox of this message no longer exists"
    failed = state.transition(
        message,
        to=state.FAILED,
        when=clock.now(),
        event="failed",
        detail=reason,
        allowed_from=(state.QUEUED, state.SCHEDULED),
        extra=[MessageModel.last_error.set(reason)],
    )
    if failed:
        message_events.on_message_failed(message, reason)
        return "failed"
    return _not_moved(job.account_id, job.message_id, clock)


def failed_for_refused_login(message: MessageModel, mailbox: MailboxModel, clock: Clock) -> bool:
    """Fail a claimed message whose mailbox's login was refused: trying the same password
    again only counts failed logins against the account."""
    refused = mailbox_check.refused_login_reason(mailbox)
    if refused:
        reason = f"auth: {refused}; check the mailbox, then send again"
        if fail(message, reason, from_=(state.SENDING,), clock=clock):
            _login_refused(message, reason)
    return bool(refused)


def after_refused_login(
    job: sqs.SendJob, message: MessageModel, failure: SmtpFailure, clock: Clock
) -> Outcome:
    """The server refused the mailbox's login (5xx) while this email was being handed over: it
    fails with the server's words (the caller has turned the mailbox red)."""
    reason = f"{failure.kind}: {failure}"
    if fail(message, reason, from_=(state.SENDING,), clock=clock):
        _login_refused(message, reason)
    return "failed"


def _login_refused(message: MessageModel, reason: str) -> None:
    """A campaign's email failed on a refused login: the campaign hears of it (once per email)."""
    if message.lane == "bulk" and message.campaign_id:
        try:
            message_events.on_mailbox_login_refused(message, reason)
        except Exception:  # the failure is recorded; the campaign's own checks catch up
            logger.exception("on_mailbox_login_refused failed")


def wait(
    job: sqs.SendJob, reason: str, next_try: datetime, clock: Clock, *, claimed: MessageModel | None = None
) -> Outcome:
    """Not sent now (the mailbox's rate, daily cap or a hold): the message says why and when it
    is tried next, and its job goes back to the queue with a delay (at most SQS's 15 minutes,
    then it looks again). One write per re-queue, none when the job already carried the same
    wait (a daily cap re-checked every 15 minutes); `claimed`: a message this worker holds,
    given back to `queued` in the same write."""
    now = clock.now()
    delay = back_in(reason, (next_try - now).total_seconds())
    mark = f"{reason}@{int(next_try.timestamp())}"
    notes = [MessageModel.waiting_reason.set(reason), MessageModel.waiting_until.set(next_try)]
    if claimed is not None:
        given_back = state.transition(
            claimed,
            to=state.QUEUED,
            when=now,
            event="waiting",
            detail=f"{state.WAITING_WORDS.get(reason, reason)}; next try at {next_try:%Y-%m-%d %H:%M:%S} UTC",
            allowed_from=(state.SENDING,),
            # waiting for a turn is no attempt: the attempts bound the retries of failures
            extra=[MessageModel.claim_expires_at.remove(), MessageModel.attempts.add(-1), *notes],
            refresh=False,
        )
        if not given_back:
            return "skipped"
    elif job.waiting != mark:
        try:
            MessageModel(job.account_id, job.message_id).update(
                actions=[*notes, MessageModel.updated_at.set(now)],
                condition=state.in_status(state.QUEUED, state.SCHEDULED),
            )
        except UpdateError as error:
            if not is_condition_failure(error):
                raise
            # not queued: sent, failed, canceled, or claimed
            return _not_moved(job.account_id, job.message_id, clock)
    sqs.enqueue_send(replace(job, waiting=mark), delay_seconds=delay)
    logger.info("waiting for the mailbox; re-queued", extra={"reason": reason, "delay": delay})
    return "deferred"


def back_in(reason: str, seconds: float) -> int:
    """The SQS delay (whole seconds, 1 to 15 minutes) of a job whose next try is `seconds`
    away. A job waiting for its mailbox's turn (the rate, or a manager's email first) comes
    back up to `max_rate_wait_seconds` early and sleeps the rest in its container: a delay
    rounded up would bring it back after its turn, and a rate bucket does not keep a turn no
    one took. Any other wait (a daily cap, a hold) comes back at its time."""
    early = get_settings().max_rate_wait_seconds if reason in ("rate", "priority") else 0.0
    return max(1, min(math.ceil(seconds - early), sqs.MAX_DELAY_SECONDS))


def record_sent(message: MessageModel, detail: str, when: datetime, subject: str = "") -> None:
    """The "sent" record (the server's words), announced once."""
    recorded = state.transition(
        message,
        to=state.SENT,
        when=when,
        event="sent",
        detail=detail,
        allowed_from=(state.SENDING,),
        extra=[
            MessageModel.sent_at.set(when),
            MessageModel.claim_expires_at.remove(),
            MessageModel.last_error.remove(),
            MessageModel.sent_subject.set(subject[:998]),  # as rendered: triggers' {subject}
        ],
        refresh=False,  # the hooks read what the claim returned; the fields set here are set below
    )
    if recorded:  # once: a repeated record finds the message sent already
        message.sent_at, message.sent_subject = when, subject[:998]
        message_events.on_message_sent(message, when)


def keep_body(message: MessageModel, subject: str, html: str, text: str, when: datetime) -> None:
    """The body as it went out, for the message's own view (messages.sent_bodies); a failure
    to keep it costs the view only, never the send."""
    body = {"subject": subject, "html": html, "text": text, "sent_at": when.isoformat()}
    try:
        s3.put_text(
            s3.sent_body_key(int(message.account_id), message.message_id),
            json.dumps(body, ensure_ascii=False),
            "application/json; charset=utf-8",
        )
    except Exception:
        logger.warning("could not keep the sent body", exc_info=True)


def after_failure(
    job: sqs.SendJob, message: MessageModel, failure: SmtpFailure | AttachmentFailure, clock: Clock
) -> Outcome:
    """A retryable failure goes back on the queue with backoff (until the attempts run out);
    any other fails the message with the server's words. A connection lost after the whole
    email went out and before the server's answer fails it as interrupted: the server may
    have it, and sending it again could deliver it twice (as a worker that dies there)."""
    attempts = int(message.attempts or 0)
    words = str(failure)
    if isinstance(failure, SmtpFailure) and failure.outcome_unknown:
        fail(message, ANSWER_LOST.format(words=words), from_=(state.SENDING,), clock=clock)
        return "interrupted"
    if failure.retryable and attempts < get_settings().max_send_attempts:
        delay = backoff.exponential(
            attempts, base=RETRY_BASE_SECONDS, cap=sqs.MAX_DELAY_SECONDS, first_attempt=1
        )
        state.transition(
            message,
            to=state.QUEUED,
            when=clock.now(),
            event="retrying",
            detail=f"{failure.kind}: {words}; next attempt in {delay} s",
            allowed_from=(state.SENDING,),
            extra=[MessageModel.last_error.set(words), MessageModel.claim_expires_at.remove()],
        )
        sqs.enqueue_send(job, delay_seconds=delay)
        return "retrying"
    fail(message, f"{failure.kind}: {words}", from_=(state.SENDING,), clock=clock)
    return "failed"


def fail(message: MessageModel, reason: str, *, from_: tuple[str, ...], clock: Clock) -> bool:
    failed = state.transition(
        message,
        to=state.FAILED,
        when=clock.now(),
        event="failed",
        detail=reason,
        allowed_from=from_,
        extra=[MessageModel.last_error.set(reason), MessageModel.claim_expires_at.remove()],
    )
    logger.warning("message failed", extra={"reason": reason})
    if failed:
        message_events.on_message_failed(message, reason)
    return failed


def cancel(
    message: MessageModel,
    reason: str,
    *,
    clock: Clock,
    from_: tuple[str, ...] = (state.QUEUED, state.SCHEDULED),
) -> Outcome:
    """Mailer was switched off for the account: its emails are canceled, not sent."""
    canceled = state.transition(
        message,
        to=state.CANCELED,
        when=clock.now(),
        event="canceled",
        detail=reason,
        allowed_from=from_,
        extra=[MessageModel.last_error.set(reason), MessageModel.claim_expires_at.remove()],
    )
    if not canceled:
        return _not_moved(int(message.account_id), message.message_id, clock)
    logger.info("message canceled: the account is switched off", extra={"reason": reason})
    return "canceled"


def campaign_gate(job: sqs.SendJob, clock: Clock) -> Outcome | None:
    """A campaign's email goes out only while its campaign sends (its status read at most every
    few seconds): while paused or interrupted it is held until a resume, once canceled it is
    canceled. None: go on and send it."""
    if not job.campaign:
        return None
    status = campaign_state.status_of(job.account_id, job.campaign)
    if status in (None, campaign_state.SENDING):
        return None
    now = clock.now()
    message = MessageModel(job.account_id, job.message_id, campaign_id=job.campaign)
    if status == campaign_state.CANCELED:
        if state.transition(
            message,
            to=state.CANCELED,
            when=now,
            event="canceled",
            detail="the campaign was canceled",
            allowed_from=(state.QUEUED,),
            refresh=False,
        ):
            campaign_state.count_safely(message, "canceled", now)
            return "canceled"
        return _not_moved(job.account_id, job.message_id, clock)
    held = state.transition(
        message,
        to=state.HELD,
        when=now,
        event="held",
        detail=f"the campaign is {status}",
        allowed_from=(state.QUEUED,),
        refresh=False,
    )
    return "held" if held else _not_moved(job.account_id, job.message_id, clock)


def release(message: MessageModel, clock: Clock) -> None:
    """Give the claim back after a failure before SMTP: the job will be retried by SQS."""
    state.transition(
        message,
        to=state.QUEUED,
        when=clock.now(),
        event="released",
        detail="error before sending; will retry",
        allowed_from=(state.SENDING,),
        extra=[MessageModel.claim_expires_at.remove()],
    )

"""The send worker's rules: claim, rate, render, SMTP, record.

The guarantee, exactly:

1. A message is handed to SMTP only by the worker that moved it from queued/scheduled to
   `sending` with a conditional write (the claim). SQS redeliveries, Lambda retries and
   concurrent workers lose the claim and do nothing, so they never send it twice.
2. The claim is taken after the rate token and right before SMTP. Any failure before the
   message is handed to the server (render error, SMTP connect/login failure) releases the
   claim or records the failure; nothing is left in `sending`.
3. SMTP 4xx replies and connection errors put the message back to `queued` and re-queue it
   with backoff (30 s, 60 s, 120 s … capped at 15 min) until `max_send_attempts`; 5xx and
   authentication failures fail it at once, keeping the server's words.
4. If the worker dies between handing the message to SMTP and recording the result (a
   crash or timeout inside the SMTP transaction), the message stays `sending` until its
   claim lease runs out. The next delivery of its job then marks it `failed` with the reason
   "interrupted during SMTP", and does NOT send it again, because the server may have accepted
   it: Mailer prefers a visible failure the user can resend over a silent duplicate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pynamodb.exceptions import DoesNotExist

from mailer_core import bodies, mailboxes, queues, rate_limit
from mailer_core import message_state as state
from mailer_core.clock import SYSTEM_CLOCK, Clock
from mailer_core.logs import logger
from mailer_core.mime import OutgoingEmail, build_message, envelope_recipients
from mailer_core.models import MailboxModel, MessageModel
from mailer_core.settings import get_settings
from mailer_core.smtp import SmtpFailure, SmtpPool, SmtpSettings

Outcome = Literal[
    "sent",
    "failed",
    "retrying",
    "deferred",
    "skipped",
    "interrupted",
    "not_found",
]
CLAIM_LEASE = timedelta(minutes=5)
RETRY_BASE_SECONDS = 30
SCHEDULE_SLACK_SECONDS = 1.0


@dataclass
class SendWorker:
    """Processes send jobs; one instance per batch so the SMTP pool spans the batch."""

    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    pool: SmtpPool = field(default_factory=SmtpPool)
    take_token: Callable[..., rate_limit.RateDecision] = rate_limit.take
    _mailboxes: dict[str, tuple[MailboxModel, SmtpSettings] | None] = field(default_factory=dict)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> SendWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, job: queues.SendJob) -> Outcome:
        logger.append_keys(account_id=job.account_id, message_id=job.message_id, mailbox_id=job.mailbox_id)
        try:
            message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
        except DoesNotExist:
            logger.warning("send job for a message that does not exist")
            return "not_found"
        outcome = self._process(job, message)
        logger.info("send job done", extra={"outcome": outcome})
        return outcome

    def _process(self, job: queues.SendJob, message: MessageModel) -> Outcome:
        now = self.clock.now()
        if message.status in state.FINAL or message.status == state.DRAFT:
            return "skipped"
        if message.status == state.SENDING:
            if message.claim_expires_at and message.claim_expires_at > now:
                return "skipped"  # another worker holds the claim
            return self._resolve_interrupted(message)
        if message.status == state.SCHEDULED and message.send_at:
            early = (message.send_at - now).total_seconds()
            if early > SCHEDULE_SLACK_SECONDS:
                queues.enqueue_send(job, delay_seconds=math.ceil(early))
                return "deferred"

        loaded = self._mailbox(job.account_id, message.mailbox_id)
        if loaded is None:
            self._fail(
                message, "the mailbox of this message no longer exists", from_=(state.QUEUED, state.SCHEDULED)
            )
            return "failed"
        mailbox, smtp_settings = loaded

        if not self._wait_for_token(job, mailbox):
            return "deferred"

        attempts_seen = int(message.attempts or 0)
        claimed = state.transition(
            message,
            to=state.SENDING,
            when=self.clock.now(),
            event="sending",
            detail=f"attempt {attempts_seen + 1}",
            allowed_from=(state.QUEUED, state.SCHEDULED),
            condition=(MessageModel.attempts == attempts_seen) | MessageModel.attempts.does_not_exist(),
            extra=[
                MessageModel.attempts.set(attempts_seen + 1),
                MessageModel.claim_expires_at.set(self.clock.now() + CLAIM_LEASE),
            ],
        )
        if not claimed:
            return "skipped"

        try:
            email = self._render(message, mailbox)
            mime = build_message(email)
        except Exception:
            self._release(message)
            raise

        try:
            result = self.pool.send(
                mailbox.mailbox_id, smtp_settings, mime, mailbox.sender_email, envelope_recipients(email)
            )
        except SmtpFailure as failure:
            return self._after_failure(job, message, failure)

        detail = result.reply or "accepted"
        if result.refused:
            detail += "; refused: " + ", ".join(f"{a} ({why})" for a, why in result.refused.items())
        state.transition(
            message,
            to=state.SENT,
            when=self.clock.now(),
            event="sent",
            detail=detail,
            allowed_from=(state.SENDING,),
            extra=[
                MessageModel.sent_at.set(self.clock.now()),
                MessageModel.claim_expires_at.remove(),
                MessageModel.last_error.remove(),
            ],
        )
        return "sent"

    # -- steps -------------------------------------------------------------------------

    def _mailbox(self, account_id: int, mailbox_id: str) -> tuple[MailboxModel, SmtpSettings] | None:
        if mailbox_id not in self._mailboxes:
            mailbox = mailboxes.find(account_id, mailbox_id)
            self._mailboxes[mailbox_id] = (mailbox, mailboxes.smtp_settings(mailbox)) if mailbox else None
        return self._mailboxes[mailbox_id]

    def _wait_for_token(self, job: queues.SendJob, mailbox: MailboxModel) -> bool:
        """Take a rate token, waiting in-process for short waits; else re-queue with a delay."""
        max_wait = get_settings().max_rate_wait_seconds
        key = f"mailbox#{job.account_id}#{mailbox.mailbox_id}"
        for _ in range(5):
            decision = self.take_token(
                key,
                rate_per_second=float(mailbox.rate_per_second),
                daily_cap=int(mailbox.daily_cap),
                now=self.clock.timestamp(),
            )
            if decision.allowed:
                return True
            if decision.retry_after > max_wait:
                break
            self.clock.sleep(decision.retry_after)
        delay = math.ceil(decision.retry_after)
        queues.enqueue_send(job, delay_seconds=delay)
        logger.info("rate limited; re-queued", extra={"reason": decision.reason, "delay": delay})
        return False

    def _render(self, message: MessageModel, mailbox: MailboxModel) -> OutgoingEmail:
        html = message.html if message.html is not None else bodies.get_html(message.html_s3_key or "")
        return OutgoingEmail(
            sender_name=mailbox.sender_name,
            sender_email=mailbox.sender_email,
            to=_strings(message.to),
            cc=_strings(message.cc),
            bcc=_strings(message.bcc),
            subject=message.subject,
            html=html or "",
            message_id=message.header_message_id,
            date=self.clock.now(),
        )

    def _after_failure(self, job: queues.SendJob, message: MessageModel, failure: SmtpFailure) -> Outcome:
        attempts = int(message.attempts or 0)
        words = str(failure)
        if failure.retryable and attempts < get_settings().max_send_attempts:
            delay = min(queues.MAX_DELAY_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1))
            state.transition(
                message,
                to=state.QUEUED,
                when=self.clock.now(),
                event="retrying",
                detail=f"{failure.kind}: {words}; next attempt in {delay} s",
                allowed_from=(state.SENDING,),
                extra=[MessageModel.last_error.set(words), MessageModel.claim_expires_at.remove()],
            )
            queues.enqueue_send(job, delay_seconds=delay)
            return "retrying"
        self._fail(message, f"{failure.kind}: {words}", from_=(state.SENDING,))
        return "failed"

    def _fail(self, message: MessageModel, reason: str, *, from_: tuple[str, ...]) -> None:
        state.transition(
            message,
            to=state.FAILED,
            when=self.clock.now(),
            event="failed",
            detail=reason,
            allowed_from=from_,
            extra=[MessageModel.last_error.set(reason), MessageModel.claim_expires_at.remove()],
        )
        logger.warning("message failed", extra={"reason": reason})

    def _release(self, message: MessageModel) -> None:
        """Give the claim back after a failure before SMTP: the job will be retried by SQS."""
        state.transition(
            message,
            to=state.QUEUED,
            when=self.clock.now(),
            event="released",
            detail="error before sending; will retry",
            allowed_from=(state.SENDING,),
            extra=[MessageModel.claim_expires_at.remove()],
        )

    def _resolve_interrupted(self, message: MessageModel) -> Outcome:
        reason = (
            "interrupted during SMTP: the worker stopped before the result was recorded; "
            "not re-sent automatically to avoid a duplicate. Check the Sent folder, then send it again"
        )
        self._fail(message, reason, from_=(state.SENDING,))
        return "interrupted"


def _strings(values: object) -> tuple[str, ...]:
    """A stored list attribute as a tuple of addresses."""
    return tuple(str(v) for v in (values or ()))  # type: ignore[attr-defined]

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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


_MAILBOX_CACHE_SECONDS = 60.0
# Mailboxes with their decrypted SMTP settings, shared by the batches a warm container
# handles: a changed mailbox is seen within a minute.
_mailbox_cache: dict[tuple[int, str], tuple[float, tuple[MailboxModel, SmtpSettings] | None]] = {}


@dataclass
class SendWorker:
    """Processes send jobs. The SMTP pool may outlive the worker (the handler keeps one per
    container); `close` waits for the records still being written and closes a pool it made.
    """

    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    pool: SmtpPool = field(default_factory=SmtpPool)
    # False when the pool belongs to the caller (the handler keeps one per container).
    close_pool: bool = True
    take_token: Callable[..., rate_limit.RateDecision] = rate_limit.take
    _writer: ThreadPoolExecutor | None = None
    _pending: list[Future[None]] = field(default_factory=list)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.close_pool:
                self.pool.close()
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def flush(self) -> None:
        """Wait until every result recorded in the background is stored."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> SendWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, job: queues.SendJob) -> Outcome:
        logger.append_keys(account_id=job.account_id, message_id=job.message_id, mailbox_id=job.mailbox_id)
        outcome = self._process(job)
        logger.info("send job done", extra={"outcome": outcome})
        return outcome

    def _process(self, job: queues.SendJob) -> Outcome:
        loaded = self._mailbox(job.account_id, job.mailbox_id)
        if loaded is None:
            return self._without_mailbox(job)
        mailbox, smtp_settings = loaded
        if not self._wait_for_token(job, mailbox):
            return "deferred"
        message = self._claim(job)
        if isinstance(message, str):
            return message
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
        self._in_background(self._record_sent, message, detail, self.clock.now())
        return "sent"

    def _record_sent(self, message: MessageModel, detail: str, when: datetime) -> None:
        state.transition(
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
            ],
        )

    def _in_background(self, work: Callable[..., None], *args: object) -> None:
        """Record a result while the next email is being sent; `flush` waits for it.

        Only writes after SMTP go here: a write lost with the container leaves the message
        `sending`, which the claim lease resolves (guarantee 4 above), never a duplicate.
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send-record")
        self._pending.append(self._writer.submit(work, *args))

    # -- steps -------------------------------------------------------------------------

    def _claim(self, job: queues.SendJob) -> MessageModel | Outcome:
        """Take the message for sending: one conditional UpdateItem that returns it.

        Only a queued message, or a scheduled one whose time has come, can be claimed. When
        the claim fails the message is read to tell why (the slow path).
        """
        now = self.clock.now()
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
            extra=[MessageModel.attempts.add(1), MessageModel.claim_expires_at.set(now + CLAIM_LEASE)],
        )
        if claimed:
            return message
        try:
            current = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
        except DoesNotExist:
            logger.warning("send job for a message that does not exist")
            return "not_found"
        if current.status == state.SENDING:
            if current.claim_expires_at and current.claim_expires_at > now:
                return "skipped"  # another worker holds the claim
            return self._resolve_interrupted(current)
        if current.status == state.SCHEDULED and current.send_at:
            early = (current.send_at - now).total_seconds()
            queues.enqueue_send(job, delay_seconds=math.ceil(early))
            return "deferred"
        return "skipped"  # sent, failed, canceled or a draft: nothing to do

    def _without_mailbox(self, job: queues.SendJob) -> Outcome:
        try:
            message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
        except DoesNotExist:
            return "not_found"
        failed = state.transition(
            message,
            to=state.FAILED,
            when=self.clock.now(),
            event="failed",
            detail="the mailbox of this message no longer exists",
            allowed_from=(state.QUEUED, state.SCHEDULED),
            extra=[MessageModel.last_error.set("the mailbox of this message no longer exists")],
        )
        return "failed" if failed else "skipped"

    def _mailbox(self, account_id: int, mailbox_id: str) -> tuple[MailboxModel, SmtpSettings] | None:
        key = (account_id, mailbox_id)
        now = self.clock.timestamp()
        cached = _mailbox_cache.get(key)
        if cached is None or not 0 <= now - cached[0] < _MAILBOX_CACHE_SECONDS:
            mailbox = mailboxes.find(account_id, mailbox_id)
            cached = (now, (mailbox, mailboxes.smtp_settings(mailbox)) if mailbox else None)
            _mailbox_cache[key] = cached
        return cached[1]

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

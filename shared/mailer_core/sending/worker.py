"""The send worker's rules: claim, rate, render, SMTP, record.

The guarantee, exactly:

1. A message is handed to SMTP only by the worker that moved it from queued/scheduled to
   `sending` with a conditional write (the claim). SQS redeliveries, Lambda retries and
   concurrent workers lose the claim and do nothing, so they never send it twice.
2. The claim is one conditional UpdateItem that also returns the message, taken after the
   rate token; then the worker renders it (fresh CRM data), loads attachments, writes the
   MIME message, drops suppressed recipients and hands it to SMTP. Any failure before the
   hand-over (a render error, a download, SMTP connect/login) releases the claim or records
   the failure; nothing is left in `sending`. The "sent" record and the Sent-folder copy are
   written in the background while the next email goes out, and `close` waits for them.
3. SMTP 4xx replies and connection errors put the message back to `queued` and re-queue it
   with backoff (30 s, 60 s, 120 s … capped at 15 min) until `max_send_attempts`; 5xx and
   authentication failures fail it at once, keeping the server's words.
4. If the worker dies after the claim and before the result is recorded (a crash or timeout,
   most likely inside the SMTP transaction, but possibly while rendering), the message stays
   `sending` until its claim lease runs out. The next delivery of its job then marks it
   `failed` with the reason "interrupted during SMTP", and does NOT send it again, because the
   server may have accepted it: Mailer prefers a visible failure the user can resend over a silent duplicate.
5. Within a batch the worker looks ahead by one email: once an email's data is out and the
   worker waits for the server's answer (the longest part of a send: providers take 100 ms or
   more), the next email of the batch is prepared (token, claim, render, MIME) in the
   background, so the connection carries emails back to back. So a worker that dies during
   that wait leaves two emails `sending`: the one the server was answering and the one
   prepared behind it (most likely not sent); point 4 marks both interrupted, never sends
   either twice. The look-ahead is not started with less than `LOOK_AHEAD_MIN_SECONDS_LEFT`
   of the invocation left, so a Lambda timeout does not leave a prepared email behind; one
   prepared but not delivered (the invocation ends first) has its claim released.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from mailer_core.accounts import access
from mailer_core.adapters import s3, sqs, web_fetch
from mailer_core.adapters.mime import (
    OutgoingEmail,
    build_message,
    envelope_recipients,
    envelope_sender,
    html_to_text,
    spool,
)
from mailer_core.adapters.smtp import SmtpFailure, SmtpPool, SmtpSettings
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.files import attachments
from mailer_core.files.attachments import AttachmentFailure
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.mailboxes import sent_folder
from mailer_core.messages import suppressions
from mailer_core.rendering import trigger_link_urls
from mailer_core.sending import outcomes
from mailer_core.sending.outcomes import Outcome
from mailer_core.sending.records import BackgroundRecords
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets, timeline
from mailer_core.store.models import MailboxModel, MessageModel
from mailer_core.tracking import rewrite as tracking
from mailer_core.tracking import unsubscribe

# The next email is prepared during the current one's SMTP only while the invocation has this
# much time left: more than an SMTP timeout (30 s), so a Lambda timeout does not strand it.
LOOK_AHEAD_MIN_SECONDS_LEFT = 40.0


_MAILBOX_CACHE_SECONDS = 60.0
# Mailboxes with their decrypted SMTP settings, shared by the batches a warm container
# handles: a changed mailbox is seen within a minute.
_mailbox_cache: TtlCache[tuple[int, str], tuple[MailboxModel, SmtpSettings] | None] = TtlCache(
    _MAILBOX_CACHE_SECONDS
)


@dataclass(frozen=True)
class Ready:
    """An email claimed, rendered and built: what is left is handing it to SMTP."""

    job: sqs.SendJob
    message: MessageModel
    mailbox: MailboxModel
    smtp_settings: SmtpSettings
    email: OutgoingEmail
    mime: EmailMessage
    sender: str
    recipients: list[str]


@dataclass
class SendWorker:
    """Processes send jobs. The SMTP pool may outlive the worker (the handler keeps one per
    container); `close` waits for the records still being written and closes a pool it made.
    """

    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    pool: SmtpPool = field(default_factory=SmtpPool)
    # False when the pool belongs to the caller (the handler keeps one per container).
    close_pool: bool = True
    take_token: Callable[..., rate_buckets.RateDecision] = rate_buckets.take
    # Downloads attachments by link (the SSRF guard); tests inject one that may reach 127.0.0.1.
    fetcher: web_fetch.Fetcher = field(default_factory=web_fetch.Fetcher)
    # Files each sent email into its mailbox's Sent folder over IMAP (sessions kept for the batch).
    filer: sent_folder.SentFiler = field(default_factory=sent_folder.SentFiler)
    # Kommo data read for rendering, per account (personalization), and the rendered links.
    kommo: dict[int, Any] = field(default_factory=dict)
    rendered_links: dict[str, list[str]] = field(default_factory=dict)
    # Jobs of the current batch per rate bucket, and tokens reserved for them (usable times).
    _batch_left: dict[str, int] = field(default_factory=dict)
    # The batch's recipients checked against the suppression list in `prefetch`, per account:
    # (the addresses looked up, the suppressed ones among them).
    _suppression_reads: dict[int, tuple[set[str], dict[str, Any]]] = field(default_factory=dict)
    _reserved: dict[str, list[float]] = field(default_factory=dict)
    # The "sent" records and Sent-folder copies, written while the next email goes out.
    records: BackgroundRecords = field(default_factory=BackgroundRecords)
    # Seconds the invocation has left (the handler passes Lambda's); None: no limit.
    time_left: Callable[[], float] | None = None
    # The batch's jobs in order (`prefetch`), the next one `process` expects, and the one
    # being prepared ahead (its index in the plan and the preparation).
    _plan: list[sqs.SendJob] = field(default_factory=list)
    _cursor: int = 0
    _ahead: tuple[int, Future[Ready | Outcome]] | None = None
    _next: int | None = None  # the plan's index `_look_ahead` may prepare
    _preparer: ThreadPoolExecutor | None = None
    _batch_reads: Future[None] | None = None  # `prefetch`'s reads, until the first render waits for them

    def close(self) -> None:
        try:
            ahead, self._ahead = self._ahead, None
            if ahead is not None:
                self._settle(ahead[1])
            self._wait_for_batch_reads()
            self.flush()
        finally:
            if self.close_pool:
                self.pool.close()
            self.filer.close()
            self.records.close()
            if self._preparer is not None:
                self._preparer.shutdown(wait=True)
            self._preparer = None

    def flush(self) -> None:
        """Wait until every result recorded in the background is stored."""
        self.records.flush()

    def __enter__(self) -> SendWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, job: sqs.SendJob) -> Outcome:
        logger.append_keys(account_id=job.account_id, message_id=job.message_id, mailbox_id=job.mailbox_id)
        ready = self._take_ready(job)
        outcome = ready if isinstance(ready, str) else self._deliver(ready)
        if outcome != "sent":  # no email of this job went out: nothing to wait for
            self.records.start()
        logger.info("send job done", extra={"outcome": outcome})
        return outcome

    # -- looking ahead -----------------------------------------------------------------

    def _take_ready(self, job: sqs.SendJob) -> Ready | Outcome:
        """`job` prepared: by the look-ahead during the previous email's SMTP, or now.

        When `job` is the next one of the batch's plan (`prefetch`), the one after it may be
        prepared while `job` waits for the server's answer (`_look_ahead`).
        """
        index = self._cursor
        planned = index < len(self._plan) and self._plan[index] == job
        ahead, self._ahead = self._ahead, None
        if ahead is not None and not (planned and ahead[0] == index):
            self._settle(ahead[1])  # prepared for a job that did not come: give its claim back
            ahead = None
        self._next = index + 1 if planned else None
        if planned:
            self._cursor = index + 1
        if ahead is None or not ahead[1].done():  # this email will take a while to get to its data
            self.records.start()
        return ahead[1].result() if ahead is not None else self._prepare(job)

    def _look_ahead(self) -> None:
        """Called once the current email's data is out: prepare the plan's next one meanwhile.

        Preparing it (token, claim, render, build: tens of ms) while the server takes its
        time to answer keeps the connection busy with back-to-back emails. Started only now,
        not earlier, so that the claim is taken as late as the pipelining allows (guarantee 5).
        """
        self.records.start()
        index = self._next
        self._next = None
        if index is None or index >= len(self._plan) or self._ahead is not None:
            return
        if not self._may_look_ahead():
            return
        self._ahead = (index, self._preparing().submit(self._prepare_ahead, self._plan[index]))

    def _prepare_ahead(self, job: sqs.SendJob) -> Ready | Outcome:
        logger.thread_safe_append_keys(
            account_id=job.account_id, message_id=job.message_id, mailbox_id=job.mailbox_id
        )
        try:
            return self._prepare(job)
        finally:
            logger.thread_safe_clear_keys()

    def _may_look_ahead(self) -> bool:
        """Not near the invocation's end: a timeout would strand the claimed-ahead message."""
        return self.time_left is None or self.time_left() > LOOK_AHEAD_MIN_SECONDS_LEFT

    def _settle(self, future: Future[Ready | Outcome]) -> None:
        """Wait for a look-ahead nobody will deliver and release the claim it took."""
        try:
            ready = future.result()
        except Exception:  # it failed before SMTP and has already given its claim back
            return
        if not isinstance(ready, str):
            outcomes.release(ready.message, self.clock)

    # -- one email ---------------------------------------------------------------------

    def _prepare(self, job: sqs.SendJob) -> Ready | Outcome:
        """Everything before SMTP: rate token, claim, render, build, suppressions.

        Returns the email ready to hand over, or the outcome when there is nothing to send.
        """
        refusal = access.send_refusal(job.account_id, clock=self.clock)  # cached: one read per 30 s
        if refusal:  # Mailer was switched off for the account: its emails are canceled, not sent
            return outcomes.cancel(MessageModel(job.account_id, job.message_id), refusal, clock=self.clock)
        gated = outcomes.campaign_gate(job, self.clock)  # a paused campaign's email is held
        if gated is not None:
            return gated
        loaded = self._usable_mailbox(job)
        if loaded is None:
            return outcomes.without_mailbox(job, self.clock)
        mailbox, smtp_settings = loaded
        if not self._wait_for_token(job, mailbox):
            return "deferred"
        message = outcomes.claim(job, self.clock)
        if isinstance(message, str):
            return message
        self._wait_for_batch_reads()
        refusal = access.send_refusal(job.account_id, composed_at=message.created_at, clock=self.clock)
        if refusal:  # composed before the account was switched off (and on again since)
            return outcomes.cancel(message, refusal, from_=(state.SENDING,), clock=self.clock)
        if outcomes.failed_for_refused_login(message, mailbox, self.clock):
            return "failed"
        return self._ready(job, message, mailbox, smtp_settings)

    def _usable_mailbox(self, job: sqs.SendJob) -> tuple[MailboxModel, SmtpSettings] | None:
        """The job's mailbox and its settings; read again when the cached copy had a refused
        login (it may have been fixed since)."""
        loaded = self._mailbox(job.account_id, job.mailbox_id)
        if loaded is not None and mailbox_check.refused_login_reason(loaded[0]):
            _mailbox_cache.pop((job.account_id, job.mailbox_id))
            loaded = self._mailbox(job.account_id, job.mailbox_id)
        return loaded

    def _ready(
        self, job: sqs.SendJob, message: MessageModel, mailbox: MailboxModel, smtp_settings: SmtpSettings
    ) -> Ready | Outcome:
        """The claimed message rendered, built and checked against the suppressions."""
        try:
            email = self._render(message, mailbox)
            mime = self._build(message, email)
        except AttachmentFailure as failure:
            return outcomes.after_failure(job, message, failure, self.clock)
        except Exception as exc:
            from mailer_core.rendering.personalize import permanent_failure  # cold start: jinja2, babel

            reason = permanent_failure(exc)  # a template error or a deleted lead: retrying cannot help
            if reason is None:
                outcomes.release(message, self.clock)
                raise
            outcomes.fail(message, reason, from_=(state.SENDING,), clock=self.clock)
            return "failed"

        try:
            recipients = self._unsuppressed(message, envelope_recipients(email))
        except Exception:  # still before SMTP: give the claim back, SQS retries the job
            outcomes.release(message, self.clock)
            raise
        if not recipients:
            return "failed"
        sender = mailbox.sender_email
        if mailbox.envelope_token:  # bounces come back to an address that names the message
            sender = envelope_sender(mailbox.sender_email, message.message_id)
        return Ready(job, message, mailbox, smtp_settings, email, mime, sender, recipients)

    def _deliver(self, ready: Ready) -> Outcome:
        """Hand the prepared email to SMTP and record the result (in the background when sent)."""
        mailbox, message, email, mime = ready.mailbox, ready.message, ready.email, ready.mime
        # The email before it may have turned the mailbox red while this one was being prepared.
        if outcomes.failed_for_refused_login(message, mailbox, self.clock):
            return "failed"
        try:
            result = self.pool.send(
                mailbox.mailbox_id,
                ready.smtp_settings,
                mime,
                ready.sender,
                ready.recipients,
                on_data_sent=self._look_ahead,
            )
        except SmtpFailure as failure:
            if failure.kind == "auth" and (failure.code is None or failure.code >= 500):
                mailbox_check.mark_smtp_refused_login(mailbox, failure, clock=self.clock)
            return outcomes.after_failure(ready.job, message, failure, self.clock)

        detail = result.reply or "accepted"
        if result.refused:
            detail += "; refused: " + ", ".join(f"{a} ({why})" for a, why in result.refused.items())
        self.records.add(outcomes.record_sent, message, detail, self.clock.now(), email.subject)
        if sent_folder.wants_copy(mailbox):  # after the "sent" record: the same writer, in order
            self.records.add(self._file_sent, mailbox, message, sent_folder.sent_bytes(mime), email.date)
        return "sent"

    def _file_sent(
        self, mailbox: MailboxModel, message: MessageModel, data: bytes | None, when: datetime
    ) -> None:
        self.filer.file(mailbox, message, data, when)  # never raises: a failure goes into the history

    # -- steps -------------------------------------------------------------------------

    def _mailbox(self, account_id: int, mailbox_id: str) -> tuple[MailboxModel, SmtpSettings] | None:
        def load() -> tuple[MailboxModel, SmtpSettings] | None:
            mailbox = mailbox_connection.find(account_id, mailbox_id)
            return (mailbox, mailbox_connection.smtp_settings(mailbox)) if mailbox else None

        return _mailbox_cache.get_or_load((account_id, mailbox_id), self.clock.timestamp(), load)

    def _wait_for_token(self, job: sqs.SendJob, mailbox: MailboxModel) -> bool:
        """Take a rate token, waiting in-process for short waits; else re-queue with a delay.

        The first email of a mailbox in a batch reserves tokens for the batch's others in the
        same request, but never more than `max_rate_wait_seconds` of the mailbox's capacity, so a
        single email in the priority lane waits at most that long behind a bulk batch.
        """
        max_wait = get_settings().max_rate_wait_seconds
        key = f"mailbox#{job.account_id}#{mailbox.mailbox_id}"
        rate = float(mailbox.rate_per_second)
        left = self._batch_left.pop(key, 0)
        if left > 1:
            self._batch_left[key] = left - 1
        slots = self._reserved.get(key)
        if slots:
            wait = slots.pop(0) - self.clock.timestamp()
            if wait > 0:
                self.clock.sleep(wait)
            return True
        count = max(1, min(left, int(max_wait * rate)))
        for _ in range(5):
            now = self.clock.timestamp()
            decision = self.take_token(
                key, rate_per_second=rate, daily_cap=int(mailbox.daily_cap), now=now, count=count
            )
            if decision.allowed:
                if decision.granted > 1:
                    self._reserved[key] = [now + j * decision.interval for j in range(1, decision.granted)]
                return True
            count = 1
            if decision.retry_after > max_wait:
                break
            self.clock.sleep(decision.retry_after)
        delay = math.ceil(decision.retry_after)
        sqs.enqueue_send(job, delay_seconds=delay)
        logger.info("rate limited; re-queued", extra={"reason": decision.reason, "delay": delay})
        return False

    def _render(self, message: MessageModel, mailbox: MailboxModel) -> OutgoingEmail:
        """Subject, body and attachment links rendered now, with fresh CRM data (personalization)."""
        from mailer_core.rendering import personalize as personalization  # cold start: jinja2, babel

        html = message.html if message.html is not None else _stored_body(message.html_s3_key or "")
        now = self.clock.now()
        rendered = personalization.for_message(
            message, mailbox, html=html or "", now=now, cache=self.kommo, clock=self.clock
        )
        self.rendered_links[message.message_id] = list(rendered.attachment_links)
        if rendered.trigger_links.unknown:  # {triggerlink:N} naming no link: rendered as "#"
            trigger_link_urls.note_unknown(message, rendered.trigger_links.unknown, now)
        body, text = rendered.html, None
        if tracking.enabled():  # links through /c/, the pixel; the text part keeps the real links
            tracked = tracking.rewrite(
                body,
                account_id=int(message.account_id),
                message_id=message.message_id,
                sent_at=int(now.timestamp()),
                track_opens=message.track_opens is not False,
                trigger_links=rendered.trigger_links.targets,
            )
            tracking.store_links(message, tracked.links)  # before SMTP: a click finds its target
            # The text part keeps real links, but trigger links only work through their click URL.
            body, text = tracked.html, tracked.fill(html_to_text(rendered.html))
        else:  # no tracking: trigger links lead straight to their targets and run nothing
            body = trigger_link_urls.direct(body, rendered.trigger_links.targets)
        email = OutgoingEmail(
            sender_name=mailbox.sender_name,
            sender_email=mailbox.sender_email,
            to=_strings(message.to),
            cc=_strings(message.cc),
            bcc=_strings(message.bcc),
            subject=rendered.subject,
            html=body,
            message_id=message.header_message_id,
            date=now,
            inline_images=rendered.images,
            text=text,
            language=message.locale or "",
        )
        return unsubscribe.finish(message, email, now)  # a campaign's: its link, footer and headers

    def prefetch(self, bodies: Iterable[str]) -> None:
        """Plan a batch (its SQS bodies, in order) and start reading what its emails need at once.

        The reads (CRM data from Kommo: a few requests; the recipients' suppressions: one per
        account) run in the background while the first email takes its rate token and claim;
        rendering waits for them.
        """
        jobs = []
        for body in bodies:
            try:
                jobs.append(sqs.SendJob.from_body(body))
            except Exception:  # a bad record fails on its own in `process`
                continue
        self._plan.extend(jobs)
        for job in jobs:
            key = f"mailbox#{job.account_id}#{job.mailbox_id}"
            self._batch_left[key] = self._batch_left.get(key, 0) + 1
        if jobs:
            self._batch_reads = self._preparing().submit(self._read_batch, jobs)

    def _read_batch(self, jobs: list[sqs.SendJob]) -> None:
        from mailer_core.rendering import personalize as personalization  # cold start: jinja2, babel

        personalization.prefetch(self.kommo, jobs, clock=self.clock)
        self._read_suppressions(jobs)

    def _wait_for_batch_reads(self) -> None:
        reads, self._batch_reads = self._batch_reads, None
        if reads is not None:
            try:
                reads.result()
            except Exception:  # each email then reads its own
                logger.warning("the batch's reads failed", exc_info=True)

    def _preparing(self) -> ThreadPoolExecutor:
        """The thread that prepares ahead (and reads for the batch): one, so they never overlap."""
        if self._preparer is None:
            self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send-prepare")
        return self._preparer

    def _build(self, message: MessageModel, email: OutgoingEmail) -> EmailMessage:
        """The MIME message, written to a spool now: SMTP streams it, and the writing (with
        attachments: files read from S3, links downloaded) and its failures come before SMTP,
        during the previous email's wait when the worker looks ahead."""
        files = [attachments.AttachedFile.from_attribute(a) for a in message.attachments or []]
        links = self._attachment_links(message)
        if not files and not links and not email.attachments:
            mime = build_message(email)
            spool(mime)
            return mime
        with ExitStack() as scratch:  # downloaded files are removed once written into the spool
            loaded = attachments.load(files, links, fetcher=self.fetcher, scratch=scratch)
            mime = build_message(replace(email, attachments=email.attachments + loaded))
            spool(mime)
        return mime

    def _attachment_links(self, message: MessageModel) -> list[str]:
        """The message's links to attach. A link with a variable must be filled in by the
        renderer (with the same CRM data as the body) before it gets here."""
        rendered = self.rendered_links.pop(message.message_id, None)  # filled in by _render
        return rendered if rendered is not None else [str(link) for link in message.attachment_links or []]

    def _read_suppressions(self, jobs: list[sqs.SendJob]) -> None:
        """Look the whole batch's recipients up at once (one BatchGetItem per account), so no
        email waits for its own lookup; a failed read leaves each email to look up its own."""
        by_account: dict[int, set[str]] = {}
        for job in jobs:
            by_account.setdefault(job.account_id, set()).update(
                suppressions.normalize(a) for a in job.recipients if a.strip()
            )
        for account_id, addresses in by_account.items():
            if not addresses:
                continue
            try:
                found = suppressions.suppressed(account_id, addresses)
            except Exception:
                logger.warning("batch suppression read failed; each email reads its own", exc_info=True)
                continue
            self._suppression_reads[account_id] = (addresses, found)

    def _suppressed_among(self, account_id: int, recipients: list[str]) -> dict[str, Any]:
        checked, found = self._suppression_reads.get(account_id, (set(), {}))
        wanted = {suppressions.normalize(r) for r in recipients if r.strip()}
        if wanted <= checked:  # read at the start of this batch, seconds ago
            return {a: found[a] for a in wanted if a in found}
        return suppressions.suppressed(account_id, recipients)

    def _unsuppressed(self, message: MessageModel, recipients: list[str]) -> list[str]:
        """The recipients not on the account's suppression list; the others are noted as skipped.
        With nobody left the message fails with that reason, and nothing is sent."""
        suppressed = self._suppressed_among(int(message.account_id), recipients)
        if not suppressed:
            return recipients
        skipped = [r for r in recipients if suppressions.normalize(r) in suppressed]
        kept = [r for r in recipients if suppressions.normalize(r) not in suppressed]
        words = ", ".join(f"{r} ({suppressed[suppressions.normalize(r)].reason})" for r in skipped)
        if not kept:
            outcomes.fail(
                message, f"every recipient is suppressed: {words}", from_=(state.SENDING,), clock=self.clock
            )
            return []
        timeline.note(message, self.clock.now(), "skipped", f"suppressed: {words}")
        return kept


# A campaign's body is one S3 object for all its emails, never changed: a warm container keeps it.
_campaign_bodies: TtlCache[str, str] = TtlCache(_MAILBOX_CACHE_SECONDS * 15)


def _stored_body(key: str) -> str:
    if "/campaigns/" in key:
        return _campaign_bodies.get_or_load(key, time.monotonic(), lambda: s3.get_html(key))
    return s3.get_html(key)


def _strings(values: object) -> tuple[str, ...]:
    """A stored list attribute as a tuple of addresses."""
    return tuple(str(v) for v in (values or ()))  # type: ignore[attr-defined]

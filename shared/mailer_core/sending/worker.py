"""The send worker's rules: claim, rate, render, SMTP, record.

The guarantee, exactly:

1. A message is handed to SMTP only by the worker that moved it from queued/scheduled to
   `sending` with a conditional write (the claim). SQS redeliveries, Lambda retries and
   concurrent workers lose the claim and do nothing, so they never send it twice.
2. The claim is one conditional UpdateItem that also returns the message, taken once the
   mailbox's next turn is known to be near (point 6); then the worker renders it (fresh CRM
   data), loads attachments, writes the MIME message, drops suppressed recipients, opens the
   mailbox's SMTP session (connect, login) and only then takes the rate token, right before
   the envelope goes out. Any failure before the hand-over (a render error, a download, SMTP
   connect/login) releases the claim or records the failure; a token not granted in time
   gives the claim back (point 6); nothing is left in `sending`. The "sent" record and the
   Sent-folder copy are written in the background while the next email goes out, and
   `close` waits for them.
3. SMTP 4xx replies and connection errors put the message back to `queued` and re-queue it
   with backoff (30 s, 60 s, 120 s … capped at 15 min) until `max_send_attempts`; 5xx and
   authentication failures fail it at once, keeping the server's words. A connection lost
   after the whole message went out (the final dot) and before the server's answer (a hang-up,
   a read timeout) fails it as interrupted, as point 4 does: the server may have it.
4. If the worker dies after the claim and before the result is recorded (a crash or timeout,
   most likely inside the SMTP transaction, but possibly while rendering or waiting for its
   token), the message stays `sending` until its claim lease runs out. The next delivery of
   its job then marks it `failed` with the reason "interrupted during SMTP", and does NOT
   send it again, because the server may have accepted it: Mailer prefers a visible failure
   the user can resend over a silent duplicate.
5. Within a batch the worker looks ahead by one email: once an email's data is out and the
   worker waits for the server's answer (the longest part of a send: providers take 100 ms or
   more), the next email of the batch is prepared (claim, render, MIME) in the
   background, so the connection carries emails back to back. So a worker that dies during
   that wait leaves two emails `sending`: the one the server was answering and the one
   prepared behind it (most likely not sent); point 4 marks both interrupted, never sends
   either twice. The look-ahead is not started with less than `LOOK_AHEAD_MIN_SECONDS_LEFT`
   of the invocation left, so a Lambda timeout does not leave a prepared email behind; one
   prepared but not delivered (the invocation ends first) has its claim released.
6. Rates, mailbox by mailbox (`process_batch`): a batch's jobs are grouped by mailbox, and
   each mailbox's are worked in order in a lane of its own (a thread, with its own look-ahead
   and records), side by side with the other mailboxes', so an email waits for its own
   mailbox only. Before its claim, a job whose turn is more than `max_rate_wait_seconds`
   (2 s) after its batch arrived goes back to its queue with a delay instead of sleeping
   (what the container learnt of the bucket, or one read of it once per mailbox and
   container, says so); once claimed and built, it waits at most that long from its
   hand-over, and a longer wait gives the claim back (`queued` again, the attempt not
   counted) and re-queues it. Either way the message notes why (the
   rate, the daily cap, a provider's hold) and when it is tried next (`waiting_reason`,
   `waiting_until`), one write per re-queue and none when its job already carried the same
   wait. The token is taken right before the envelope, on a session already logged in, and
   the bucket is paced `PACING_MARGIN` (3 %) under the mailbox's rate, and one container's
   emails of a mailbox one interval apart at least from its last hand-over, so no second at
   the server ever holds more than the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
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
from mailer_core.base.errors import Busy
from mailer_core.base.logs import logger
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.files import attachments
from mailer_core.files.attachments import AttachmentFailure
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.mailboxes import sent_folder
from mailer_core.messages import suppressions
from mailer_core.pages import links as page_links
from mailer_core.rendering import trigger_link_urls
from mailer_core.sending import outcomes
from mailer_core.sending.outcomes import Outcome
from mailer_core.sending.records import BackgroundRecords
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets, timeline
from mailer_core.store.models import MailboxModel, MessageModel
from mailer_core.tracking import downloads, unsubscribe
from mailer_core.tracking import rewrite as tracking

# The next email is prepared during the current one's SMTP only while the invocation has this
# much time left: more than an SMTP timeout (30 s), so a Lambda timeout does not strand it.
LOOK_AHEAD_MIN_SECONDS_LEFT = 40.0


# Each mailbox is paced this fraction under its rate: a second's tokens span 1.03 s, so that
# the milliseconds between a token's moment and the server's receipt (the envelope's round
# trips, a token up to LATE_TOLERANCE_SECONDS late) never put more than the rate into any one
# second at the server.
PACING_MARGIN = 0.03

# What this container last learnt of each rate bucket (key -> the next turn and the daily cap
# it was learnt under): a job whose turn is far off goes back to wait without a request.
# Tokens only ever move a bucket's turn later, so a stale entry errs early and the token
# taken at the hand-over has the last word.
_turns: dict[str, tuple[rate_buckets.NextTurn, int]] = {}
_handovers: dict[str, float] = {}
_turns_lock = threading.Lock()


# A rate token is asked for a moment ahead of its use: three times what a token request
# takes in this container lately, between MIN_LEAD_SECONDS and MAX_LEAD_SECONDS (a slow
# mailbox's emails wait for their turn anyway; a fast one's lane pays the lead per email,
# which beats tokens that come back too late to use). It is used no later than
# LATE_TOLERANCE_SECONDS after its moment, else moved later or given back.
MIN_LEAD_SECONDS = 0.05
MAX_LEAD_SECONDS = 0.5
LATE_TOLERANCE_SECONDS = 0.01
_token_request_seconds = [0.0]  # this container's recent token requests, smoothed


def lead_seconds(paced: float) -> float:
    """How far ahead of its use a token of a bucket paced at `paced` per second is asked for."""
    with _turns_lock:
        typical = _token_request_seconds[0]
    return min(max(MIN_LEAD_SECONDS, 3.0 * typical), MAX_LEAD_SECONDS)


def forget_timings() -> None:
    """Drop this container's token-request timings: a test in simulated time starts from none
    (others in the same process measured real requests)."""
    with _turns_lock:
        _token_request_seconds[0] = 0.0


def _note_token_request(seconds: float) -> None:
    with _turns_lock:
        _token_request_seconds[0] = 0.8 * _token_request_seconds[0] + 0.2 * max(0.0, seconds)


def bucket_key(account_id: int, mailbox_id: str) -> str:
    """The rate bucket of a mailbox (shared by both lanes and every worker)."""
    return rate_buckets.mailbox_key(account_id, mailbox_id)


def paced_rate(rate_per_second: float) -> float:
    """The rate the bucket is paced at: a little under the mailbox's (`PACING_MARGIN`)."""
    return rate_per_second / (1.0 + PACING_MARGIN)


def _known_turn(key: str, daily_cap: int) -> rate_buckets.NextTurn | None:
    with _turns_lock:
        known = _turns.get(key)
    if known is None or (known[0].reason == "daily_cap" and known[1] != daily_cap):
        return None  # a changed cap: what was learnt under the old one says nothing
    return known[0]


def _remember(
    key: str, turn: rate_buckets.NextTurn, daily_cap: int, *, handed_over: float | None = None
) -> None:
    with _turns_lock:
        _turns[key] = (turn, daily_cap)
        if handed_over is not None:
            _handovers[key] = handed_over


def _last_handover(key: str) -> float:
    """When this container last handed an email of the bucket to SMTP (epoch seconds)."""
    with _turns_lock:
        return _handovers.get(key, float("-inf"))


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
    give_back_token: Callable[..., None] = rate_buckets.give_back
    move_token_later: Callable[..., bool] = rate_buckets.move_later
    # Downloads attachments by link (the SSRF guard); tests inject one that may reach 127.0.0.1.
    fetcher: web_fetch.Fetcher = field(default_factory=web_fetch.Fetcher)
    # Files each sent email into its mailbox's Sent folder over IMAP (sessions kept for the batch).
    filer: sent_folder.SentFiler = field(default_factory=sent_folder.SentFiler)
    # Kommo data read for rendering, per account (personalization), and the rendered links.
    kommo: dict[int, Any] = field(default_factory=dict)
    rendered_links: dict[str, list[str]] = field(default_factory=dict)
    # The batch's recipients checked against the suppression list in `prefetch`, per account:
    # (the addresses looked up, the suppressed ones among them).
    _suppression_reads: dict[int, tuple[set[str], dict[str, Any]]] = field(default_factory=dict)
    # When each planned job was received (epoch seconds): it waits for its mailbox at most
    # `max_rate_wait_seconds` from then. Jobs sent back to wait, per rate bucket, in this batch.
    _received: dict[str, float] = field(default_factory=dict)
    _waiting: dict[str, int] = field(default_factory=dict)
    # Runs `process_batch`'s lanes side by side and returns when all are done (default: a
    # thread each; tests run them in simulated time). A lane's worker logs keys per thread.
    run_lanes: Callable[[list[Callable[[], None]]], None] | None = None
    _in_lane: bool = False
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
    # The moment (epoch seconds) of the rate token the current job's email went out on, for its
    # "send job done" line: with the server's receipt it tells pacing from a slow envelope.
    _token_at: float | None = None

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
        keys = {"account_id": job.account_id, "message_id": job.message_id, "mailbox_id": job.mailbox_id}
        if self._in_lane:
            logger.thread_safe_append_keys(**keys)
        else:
            logger.append_keys(**keys)
        self._token_at = None
        ready = self._take_ready(job)
        outcome = ready if isinstance(ready, str) else self._deliver(ready)
        if outcome != "sent":  # no email of this job went out: nothing to wait for
            self.records.start()
        token: dict[str, float] = {} if self._token_at is None else {"token_at": round(self._token_at, 3)}
        logger.info("send job done", extra={"outcome": outcome, **token})
        return outcome

    def process_batch(self, bodies: list[str]) -> list[Outcome | Exception]:
        """A whole SQS batch (its bodies, in order): each record's outcome, or what it raised.

        The batch's reads start at once for all of it; then each mailbox's jobs are worked in
        order in a lane of their own, side by side with the other mailboxes', so an email waits
        for its own mailbox's rate only. A batch of one mailbox is worked on this thread.
        A record that bundles several jobs (`sqs.send_bodies`) fails when one of them does (SQS
        then delivers the bundle again, and each job's claim keeps what went out from going
        twice); else its outcome is its first job's.
        """
        records: list[list[int] | Exception] = []
        jobs: list[sqs.SendJob] = []
        for body in bodies:
            try:
                bundled = sqs.send_bodies(body)
            except Exception as exc:  # a bad record fails on its own
                records.append(exc)
                continue
            records.append(list(range(len(jobs), len(jobs) + len(bundled))))
            jobs.extend(bundled)
        self._prefetch_jobs(jobs)
        lanes: dict[tuple[int, str], list[int]] = {}
        for n, job in enumerate(jobs):
            lanes.setdefault((job.account_id, job.mailbox_id), []).append(n)
        # A job no lane got to (its lane broke down) fails its record: SQS delivers it again.
        results: list[Outcome | Exception] = [RuntimeError("not worked") for _ in jobs]

        def work(worker: SendWorker, indexes: list[int]) -> None:
            for n in indexes:
                try:
                    results[n] = worker.process(jobs[n])
                except Exception as exc:
                    logger.exception("send job failed")
                    results[n] = exc

        if len(lanes) <= 1:
            for indexes in lanes.values():
                work(self, indexes)
        else:

            def lane(indexes: list[int]) -> Callable[[], None]:
                return lambda: self._in_a_lane(work, jobs, indexes, results)

            (self.run_lanes or _side_by_side)([lane(indexes) for indexes in lanes.values()])
        return [_record_outcome(record, results) for record in records]

    def _in_a_lane(
        self,
        work: Callable[[SendWorker, list[int]], None],
        jobs: list[sqs.SendJob],
        indexes: list[int],
        results: list[Outcome | Exception],
    ) -> None:
        """One mailbox's jobs of the batch, worked by a worker of their own that shares this
        one's clock, SMTP pool, token taker, fetcher, the batch's reads and receipt times.

        When closing the lane fails (a "sent" record not stored), its sent jobs do not count
        as done, as in a batch of one lane, whose invocation fails: else the message would stay
        `sending` with no job left. Delivered again, each finds its claim and the lease decides.
        """
        lane = SendWorker(
            clock=self.clock,
            pool=self.pool,
            close_pool=False,
            take_token=self.take_token,
            give_back_token=self.give_back_token,
            move_token_later=self.move_token_later,
            fetcher=self.fetcher,
            kommo=self.kommo,
            time_left=self.time_left,
            _suppression_reads=self._suppression_reads,
            _received=self._received,
            _in_lane=True,
        )
        lane._plan = [jobs[n] for n in indexes]
        lane._batch_reads = self._batch_reads
        try:
            with lane:
                work(lane, indexes)
        except Exception as exc:
            for n in indexes:
                if results[n] == "sent":
                    results[n] = exc
            raise
        finally:
            logger.thread_safe_clear_keys()

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

        Preparing it (claim, render, build: tens of ms) while the server takes its
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
        """Everything before SMTP: the mailbox's turn not far off, claim, render, build,
        suppressions (the rate token itself is taken at the hand-over, `_take_turn`).

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
        far = self._turn_far_off(job, mailbox)
        if far is not None:
            return far
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
        except Busy as busy:  # the account's Kommo budget is taken: wait on the queue, not here
            later = self.clock.timestamp() + max(1.0, float(busy.retry_after or 0.0))
            next_try = datetime.fromtimestamp(later, tz=UTC)
            return outcomes.wait(job, "kommo", next_try, self.clock, claimed=message)
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
            # The connection and login first: the rate token is taken only when nothing but the
            # envelope and the data stand between it and the server.
            self.pool.connect(mailbox.mailbox_id, ready.smtp_settings)
            waited = self._take_turn(ready)
            if waited is not None:
                return waited
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
                return outcomes.after_refused_login(ready.job, message, failure, self.clock)
            return outcomes.after_failure(ready.job, message, failure, self.clock)

        detail = result.reply or "accepted"
        if result.refused:
            detail += "; refused: " + ", ".join(f"{a} ({why})" for a, why in result.refused.items())
        self.records.add(outcomes.record_sent, message, detail, self.clock.now(), email.subject)
        text = email.text if email.text is not None else html_to_text(email.html)
        self.records.add(outcomes.keep_body, message, email.subject, email.html, text, email.date)
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

    # -- the mailbox's rate ----------------------------------------------------------------

    def _turn_far_off(self, job: sqs.SendJob, mailbox: MailboxModel) -> Outcome | None:
        """Before the claim: when the mailbox's next turn is known to be more than
        `max_rate_wait_seconds` after the job was received, send the job back to wait (no
        claim, no rendering); None to go on. What this container last learnt of the bucket
        decides (no request), else one read of it, once per mailbox and container."""
        key, cap = bucket_key(job.account_id, mailbox.mailbox_id), int(mailbox.daily_cap)
        turn = _known_turn(key, cap)
        if turn is None:
            turn = rate_buckets.peek(key, daily_cap=cap, now=self.clock.timestamp())
            _remember(key, turn, cap)
        if turn.at - self._received_at(job) <= get_settings().max_rate_wait_seconds:
            return None
        return self._wait_later(job, mailbox, turn)

    def _take_turn(self, ready: Ready) -> Outcome | None:
        """The rate token, taken just before the envelope goes out on an open session; a short
        wait is slept, a longer one gives the claim back and sends the job back to wait.

        The token is asked for a moment ahead (`lead_seconds`: more than the request takes) and
        used at exactly that moment, never later than `LATE_TOLERANCE_SECONDS` after it: a
        token that comes back late (a slow request) is left unused and the next one taken, so
        an email reaches the server within milliseconds of its slot whatever the request took.
        With the bucket paced `PACING_MARGIN` under the mailbox's rate, no second at the server
        ever holds more than the rate. None: the token is taken, send now.
        """
        job, mailbox = ready.job, ready.mailbox
        key, cap = bucket_key(job.account_id, mailbox.mailbox_id), int(mailbox.daily_cap)
        rate = paced_rate(float(mailbox.rate_per_second))
        lead = lead_seconds(rate)
        max_wait = get_settings().max_rate_wait_seconds
        # Not before this container's last hand-over of the mailbox plus one interval: a token
        # the bucket would refuse anyway costs no request.
        turn = rate_buckets.NextTurn(max(_last_handover(key) + 1.0 / rate, self.clock.timestamp() + lead))
        for _ in range(8):
            # Claimed and built, it waits up to max_wait from now: a slow preparation (the
            # batch's reads, a login) must not cost it its claim; the lane's later jobs were
            # held to the batch's arrival before their claims (`_turn_far_off`).
            if turn.at - self.clock.timestamp() > max_wait:
                break
            self.clock.sleep(turn.at - lead - self.clock.timestamp())
            asked = self.clock.timestamp()
            at = asked + lead
            # a bulk email stands back while a manager's is pending on the mailbox
            decision = self.take_token(key, rate_per_second=rate, daily_cap=cap, now=at, lane=job.lane)
            answered = self.clock.timestamp()
            _note_token_request(answered - asked)
            if decision.allowed:
                self.clock.sleep(at - answered)
                late = self.clock.timestamp() - at  # a slow answer, or a sleep that overslept
                if late <= LATE_TOLERANCE_SECONDS:
                    self._hand_over(key, at, rate, cap)
                    return None
                lead = lead_seconds(rate)
                later = self.clock.timestamp() + lead
                if self._move_later(key, at, later, rate):  # nobody took the next one yet
                    logger.info("rate token too late to use; moved later", extra={"late": late})
                    at, answered = later, self.clock.timestamp()
                    self.clock.sleep(at - answered)
                    if self.clock.timestamp() - at <= LATE_TOLERANCE_SECONDS:
                        self._hand_over(key, at, rate, cap)
                        return None
                logger.info("rate token too late to use; given back", extra={"late": late})
                self._give_back(key, at, rate)
                turn = rate_buckets.NextTurn(self.clock.timestamp() + lead)
                continue
            turn = rate_buckets.NextTurn(at + decision.retry_after, decision.reason or "rate")
            _remember(key, turn, cap)
        return self._wait_later(job, mailbox, turn, claimed=ready.message)

    def _hand_over(self, key: str, at: float, rate: float, cap: int) -> None:
        """The token of moment `at` is used now: the container's next turn of the mailbox is one
        interval on, and the job's log line names the moment."""
        _remember(key, rate_buckets.NextTurn(at + 1.0 / rate), cap, handed_over=at)
        self._token_at = at

    def _move_later(self, key: str, at: float, to: float, rate: float) -> bool:
        try:
            return self.move_token_later(key, at=at, to=to, rate_per_second=rate)
        except Exception:
            logger.warning("could not move a rate token later", exc_info=True)
            return False

    def _give_back(self, key: str, at: float, rate: float) -> None:
        try:
            self.give_back_token(key, at=at, rate_per_second=rate)
        except Exception:  # one slot of the day lost, no more
            logger.warning("could not give a rate token back", exc_info=True)

    def _wait_later(
        self,
        job: sqs.SendJob,
        mailbox: MailboxModel,
        turn: rate_buckets.NextTurn,
        *,
        claimed: MessageModel | None = None,
    ) -> Outcome:
        """Back to the queue until its turn; the batch's later jobs of the same mailbox one
        interval further each, so they do not all come back at once."""
        key = bucket_key(job.account_id, mailbox.mailbox_id)
        ahead = self._waiting.get(key, 0)
        self._waiting[key] = ahead + 1
        at = turn.at + ahead / paced_rate(float(mailbox.rate_per_second))
        return outcomes.wait(
            job, turn.reason, datetime.fromtimestamp(at, tz=UTC), self.clock, claimed=claimed
        )

    def _received_at(self, job: sqs.SendJob) -> float:
        """When the job's batch arrived (`prefetch`); a job outside the plan: now."""
        received = self._received.get(job.message_id)
        return received if received is not None else self.clock.timestamp()

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
        # {web:N}, {formlink}, {weblink}: this email's signed URLs (a page that does not exist,
        # or no public URL configured, fails the email: never a dead link, pages.links).
        filled = page_links.Filler(int(message.account_id), message.message_id, int(now.timestamp()))
        rendered_html = filled.fill(rendered.html, legacy=False)
        body, text = rendered_html, None
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
            body, text = tracked.html, tracked.fill(html_to_text(rendered_html))
        else:  # no tracking: trigger links lead straight to their targets and run nothing
            body = trigger_link_urls.direct(body, rendered.trigger_links.targets)
        if _downloads_tracked(message):  # the uploaded files as signed download links
            block_html, block_text = downloads.links_block(message, int(now.timestamp()))
            body = f"{body}\n{block_html}"
            text = f"{text if text is not None else html_to_text(rendered.html)}\n\n{block_text}"
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
            extra_headers=_threading_headers(message),
        )
        return unsubscribe.finish(message, email, now)  # a campaign's: its link, footer and headers

    def prefetch(self, bodies: Iterable[str]) -> None:
        """Plan a batch (its SQS bodies, in order) and start reading what its emails need at once.

        The reads (CRM data from Kommo: a few requests; the recipients' suppressions: one per
        account) run in the background while the first email takes its claim;
        rendering waits for them.
        """
        jobs = []
        for body in bodies:
            try:
                jobs.extend(sqs.send_bodies(body))
            except Exception:  # a bad record fails on its own in `process_batch`
                continue
        self._prefetch_jobs(jobs)

    def _prefetch_jobs(self, jobs: list[sqs.SendJob]) -> None:
        self._plan_jobs(jobs, self.clock.timestamp())
        if jobs:
            self._batch_reads = self._preparing().submit(self._read_batch, jobs)

    def _plan_jobs(self, jobs: list[sqs.SendJob], received: float) -> None:
        self._plan.extend(jobs)
        for job in jobs:
            self._received.setdefault(job.message_id, received)

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
        if _downloads_tracked(message):  # they went into the body as download links
            files = []
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


def _side_by_side(lanes: list[Callable[[], None]]) -> None:
    """Each lane in a thread of its own; returns when all are done. A lane that broke down is
    logged; the jobs it did not get to are failed records, delivered again by SQS."""
    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="send-lane") as threads:
        running = [threads.submit(lane) for lane in lanes]
    for done in running:
        if done.exception() is not None:
            logger.error("a send lane broke down", exc_info=done.exception())


def _strings(values: object) -> tuple[str, ...]:
    """A stored list attribute as a tuple of addresses."""
    return tuple(str(v) for v in (values or ()))  # type: ignore[attr-defined]


def _downloads_tracked(message: MessageModel) -> bool:
    """Uploaded files go as download links: asked for, and tracking configured (else attached)."""
    return bool(message.track_downloads and message.attachments and tracking.enabled())


def _threading_headers(message: MessageModel) -> tuple[tuple[str, str], ...]:
    """A reply's In-Reply-To and a reply's or forward's References (messages.threads)."""
    headers = []
    if message.in_reply_to:
        headers.append(("In-Reply-To", str(message.in_reply_to)))
    if message.references:
        headers.append(("References", " ".join(str(r) for r in message.references)))
    return tuple(headers)


def _record_outcome(record: list[int] | Exception, results: list[Outcome | Exception]) -> Outcome | Exception:
    """An SQS record's outcome: what its body raised, its first failed job's error, or its first
    job's outcome."""
    if isinstance(record, Exception):
        return record
    mine = [results[n] for n in record]
    return next((r for r in mine if isinstance(r, Exception)), mine[0])

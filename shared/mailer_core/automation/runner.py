"""Automation: what an email's events set off, each trigger run once, through the actions queue.

1. An event happens: the send worker records "sent" or "failed", the track route a person's
   first open, the bounce poller a bounce, a not-opened timer comes due, a trigger link is
   clicked. The place that saw it only announces it (`announce`: one SQS message), so the
   pixel and click routes never wait for Kommo.
2. The actions function takes the event (`handle_event`): reads the message, sets the
   not-opened timer ("sent") or deletes it ("opened", counted in CloudWatch by `base.metrics`
   for the message's account and mailbox: the track route does not read the mailbox; an event
   SQS delivers again counts again), ignores a timer that comes after an open, and fans the
   event out: one run job per trigger the message chose for that event, delayed as the
   trigger says (SQS up to 15 minutes, a one-time schedule beyond).
3. The actions function runs each job (`run`): a conditional write claims the run id
   ("<message>.<event>.<trigger>"), so a redelivered job or a repeated event runs nothing
   twice; the trigger acts in Kommo through the rate-limited client (`trigger_actions`); the
   result, or the failure in Kommo's words, goes into the message's timeline. Kommo's 429,
   5xx and blocks are retried with backoff (five attempts, then the DLQ); refusals that
   retrying cannot fix are recorded at once. A run whose account's Kommo budget is not there
   within a moment (`base.errors.Busy`) is no failed attempt: it is raised to the actions
   function's `events.shares.FairBatch`, which puts the job back on the queue for the wait.

Exactly once holds for what the claim guards: a run is never started twice after it
finished. A worker that dies inside the Kommo call leaves a claim that expires after
`CLAIM_SECONDS`, and the job's next delivery runs it again: Kommo may then hold the task twice.
A "send email" trigger composes with an id derived from the run, so it never sends twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts import access
from mailer_core.accounts.actors import Actor
from mailer_core.adapters import scheduler, sqs
from mailer_core.base import backoff, metrics
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Busy, InvalidInput, MailerError, NotFound
from mailer_core.base.logs import logger
from mailer_core.events import campaign_state, template_counters
from mailer_core.events.announce import announce, chosen, wants_not_opened_timer
from mailer_core.events.jobs import EventJob, RunJob, parse_job
from mailer_core.kommo.accounts import client_for_account
from mailer_core.kommo.errors import KommoError, is_retryable
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages.requests import ComposeRequest
from mailer_core.store import message_state as state
from mailer_core.store import timeline
from mailer_core.store.models import (
    AccountModel,
    AutomationFactModel,
    MessageModel,
    TriggerModel,
)
from mailer_core.triggers import actions as trigger_actions
from mailer_core.triggers import loops as automation_loops
from mailer_core.triggers.api import find_many
from mailer_core.triggers.loops import Suppressed

MAX_ATTEMPTS = 5  # the actions queue's maxReceiveCount: the last attempt records the failure
CLAIM_SECONDS = 300  # a run claimed by a worker that died is taken again after this long
RUN_FACT_DAYS = 30
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 900


# -- jobs on the actions queue ---------------------------------------------------------------


# -- announcing events (cheap: one SQS message, no reads) -------------------------------------


# -- handling an event: timers and fan-out -----------------------------------------------------


def _timeline(message: MessageModel, when: datetime, event: str, detail: str) -> None:
    if not timeline.note(message, when, event, detail, extra=[MessageModel.updated_at.set(when)]):
        logger.warning("timeline entry lost: the message is gone", extra={"event": event})


def not_opened_schedule_name(account_id: int, message_id: str) -> str:
    return scheduler.schedule_name("notopen", account_id, message_id)


def _set_not_opened_timer(message: MessageModel, clock: Clock) -> None:
    if (
        not wants_not_opened_timer(message)
        or message.first_open_at is not None
        or message.first_reply_at is not None
    ):
        return
    start = message.sent_at or clock.now()
    due = start + timedelta(seconds=int(message.not_opened_after))
    wait = (due - clock.now()).total_seconds()
    account_id = int(message.account_id)
    if wait <= sqs.MAX_DELAY_SECONDS:  # under 15 minutes: an SQS delay is more precise
        announce(account_id, message.message_id, "not_opened", due, delay_seconds=int(max(0, wait)))
        name = "sqs-delay"
    else:
        name = not_opened_schedule_name(account_id, message.message_id)
        payload = {"kind": "not_opened", "account_id": account_id, "message_id": message.message_id}
        scheduler.create_one_time(name, due, payload)
        message.update(actions=[MessageModel.not_opened_schedule.set(name)])
    _timeline(message, clock.now(), "timer", f"not-opened timer set for {due.isoformat()}")
    logger.info("not-opened timer set", extra={"due": due.isoformat(), "schedule": name})


def _cancel_not_opened_timer(message: MessageModel, clock: Clock) -> None:
    if not wants_not_opened_timer(message):
        return
    name = message.not_opened_schedule or not_opened_schedule_name(
        int(message.account_id), message.message_id
    )
    if scheduler.delete(name):
        _timeline(message, clock.now(), "timer", "not-opened timer cancelled: the email was opened")


# The opt-out's actions on the Kommo contact (docs/opt-out.md): the account's settings, not
# stored triggers; their runs are claimed, retried and written on the timeline as any other.
OPT_OUT_TAG = "opt-out-tag"
OPT_OUT_NOTE = "opt-out-note"
_OPT_OUT_NOTES = {
    "en": "Unsubscribed from mailings through the link in the email «{subject}» ({email}).",
    "ru": "Отписался от рассылки по ссылке в письме «{subject}» ({email}).",
    "es": "Se dio de baja de los envíos con el enlace del correo «{subject}» ({email}).",
    "pt": "Cancelou a inscrição pelo link do e-mail «{subject}» ({email}).",
}


def opt_out_trigger(
    account_id: int, trigger_id: str, locale: str | None, clock: Clock
) -> TriggerModel | None:
    """The trigger an opt-out run does, from the account's settings now; None when the account
    no longer asks for it."""
    settings = access.settings_of(account_id, clock=clock)
    if trigger_id == OPT_OUT_TAG and settings.opt_out_tag:
        type_, name = "tags", "opt-out tag"
        params: dict[str, Any] = {"entity": "contact", "add": [settings.opt_out_tag], "remove": []}
    elif trigger_id == OPT_OUT_NOTE and settings.opt_out_note:
        lang = (locale or "").replace("_", "-").split("-")[0].lower()
        type_, name = "note", "opt-out note"
        params = {"entity": "contact", "text": _OPT_OUT_NOTES.get(lang, _OPT_OUT_NOTES["en"])}
    else:
        return None
    return TriggerModel(
        account_id, trigger_id, name=name, type=type_, params=params, user_id=0, created_at=clock.now()
    )


def run_id_for(message_id: str, source: str, trigger_id: str) -> str:
    return f"{message_id}.{source}.{trigger_id}"


def fan_out(message: MessageModel, event: str, source: str, trigger_ids: list[str], *, clock: Clock) -> int:
    """Queue one run per trigger (delayed as each says); the number queued."""

    if not trigger_ids:
        return 0
    found = find_many(int(message.account_id), trigger_ids)
    now = clock.now()
    bodies: list[tuple[str, int]] = []
    for trigger_id in dict.fromkeys(trigger_ids):
        delay = int(found[trigger_id].delay_seconds or 0) if trigger_id in found else 0
        job = RunJob(
            int(message.account_id),
            message.message_id,
            trigger_id,
            event,
            run_id_for(message.message_id, source, trigger_id),
            int(now.timestamp() * 1000) + delay * 1000,
        )
        if delay <= sqs.MAX_DELAY_SECONDS:
            bodies.append((job.to_body(), delay))
        else:
            digest = hashlib.sha256(job.run_id.encode()).hexdigest()[:32]
            name = scheduler.schedule_name("run", int(message.account_id), digest)
            scheduler.create_one_time(name, now + timedelta(seconds=delay), {**asdict(job)})
    if bodies:
        sqs.enqueue_actions(bodies)
    return len(trigger_ids)


def handle_event(job: EventJob, *, clock: Clock = SYSTEM_CLOCK) -> str:
    try:
        message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
    except DoesNotExist:
        logger.warning("event for a message that does not exist", extra={"event": job.event})
        return "ignored"
    if job.event == "sent":
        _set_not_opened_timer(message, clock)
    elif job.event == "opened":
        template_counters.on_opened(message, clock.now())
        campaign_state.count_safely(message, "opened", clock.now())
        metrics.count("opened", int(message.account_id), message.mailbox_id)
        _cancel_not_opened_timer(message, clock)
    elif job.event == "replied":
        _cancel_not_opened_timer(message, clock)  # an answer says it was read
    elif job.event == "not_opened":
        if (
            message.first_open_at is not None
            or message.first_reply_at is not None
            or message.status != state.SENT
        ):
            logger.info("not-opened timer came after an open: nothing to do")
            return "ignored"
        if not any(h.event == "not_opened" for h in message.history or []):  # a repeated timer: once
            wait = int(message.not_opened_after or 0)
            _timeline(message, clock.now(), "not_opened", f"not opened within {wait} s")
    elif job.event == "opted_out":  # the account's tag and note, as triggers of its own
        settings = access.settings_of(int(message.account_id), clock=clock)
        wanted = [OPT_OUT_TAG] if settings.opt_out_tag else []
        wanted += [OPT_OUT_NOTE] if settings.opt_out_note else []
        queued = fan_out(message, job.event, job.source or job.event, wanted, clock=clock)
        logger.info("event handled", extra={"event": job.event, "runs": queued})
        return "handled"
    ids = list(job.trigger_ids) if job.event == "link" else chosen(message, job.event)
    queued = fan_out(message, job.event, job.source or job.event, ids, clock=clock)
    logger.info("event handled", extra={"event": job.event, "runs": queued})
    return "handled"


# -- running one trigger -----------------------------------------------------------------------


class RetryLater(Exception):
    """The run failed in a way a later attempt may fix; the job comes back after `seconds`."""

    def __init__(self, reason: str, seconds: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


class AccountBusy(RetryLater, Busy):
    """The account's Kommo budget is not there within a moment: no failed attempt. The actions
    function's `events.shares.FairBatch` puts the job back on the queue for `seconds`."""

    def __init__(self, reason: str, seconds: int) -> None:
        super().__init__(reason, seconds)
        self.retry_after = float(seconds)


def _claim(job: RunJob, now: float) -> str:
    """Claim the run: "claimed", or "done" (it finished before), or "busy" (another worker has it)."""
    fact = AutomationFactModel(job.account_id, f"run#{job.run_id}")
    takeable = (
        AutomationFactModel.fact_key.does_not_exist()
        | AutomationFactModel.state.is_in("retry", "gave_up")
        | ((AutomationFactModel.state == "running") & (AutomationFactModel.claim_until < int(now)))
    )
    try:
        fact.update(
            actions=[
                AutomationFactModel.state.set("running"),
                AutomationFactModel.claim_until.set(int(now) + CLAIM_SECONDS),
                AutomationFactModel.tally.add(1),
                AutomationFactModel.expires_at.set(
                    datetime.fromtimestamp(now, UTC) + timedelta(days=RUN_FACT_DAYS)
                ),
            ],
            condition=takeable,
        )
    except UpdateError as exc:
        if not state.is_condition_failure(exc):
            raise
        try:
            current = AutomationFactModel.get(job.account_id, f"run#{job.run_id}", consistent_read=True)
        except DoesNotExist:
            return "busy"
        return "busy" if current.state == "running" else "done"
    return "claimed"


def _settle(job: RunJob, outcome: str, detail: str) -> None:
    AutomationFactModel(job.account_id, f"run#{job.run_id}").update(
        actions=[
            AutomationFactModel.state.set(outcome),
            AutomationFactModel.detail.set(detail[:1000]),
            AutomationFactModel.claim_until.remove(),
        ]
    )


def _words(exc: Exception) -> str:
    if isinstance(exc, KommoError):
        parts = [exc.message]
        if exc.detail:
            parts.append(exc.detail)
        if exc.validation_errors:
            parts.append(json.dumps(exc.validation_errors, ensure_ascii=False)[:400])
        return ": ".join(parts)
    if isinstance(exc, MailerError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def backoff_seconds(attempt: int, retry_after: float | None = None) -> int:
    wait = backoff.exponential(attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS, first_attempt=1)
    return int(max(wait, retry_after or 0))


@dataclass
class Runner:
    """Runs trigger jobs; the Kommo client and the template sender are injectable for tests."""

    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    kommo_for: Callable[[AccountModel], Any] | None = None

    def run(self, job: RunJob, *, attempt: int = 1) -> str:
        claimed = _claim(job, self.clock.timestamp())
        if claimed == "done":
            logger.info("run already done", extra={"run_id": job.run_id})
            return "duplicate"
        if claimed == "busy":
            raise RetryLater("another worker is running it", CLAIM_SECONDS)
        try:
            message = MessageModel.get(job.account_id, job.message_id, consistent_read=True)
        except DoesNotExist:
            _settle(job, "done", "the message is gone")
            return "ignored"
        try:
            if job.trigger_id in (OPT_OUT_TAG, OPT_OUT_NOTE):
                found = opt_out_trigger(job.account_id, job.trigger_id, message.locale, self.clock)
                if found is None:
                    _settle(job, "done", "the account's opt-out setting was turned off")
                    return "skipped"
                trigger = found
            else:
                trigger = TriggerModel.get(job.account_id, job.trigger_id)
        except DoesNotExist:
            _settle(job, "done", "trigger deleted")
            _timeline(message, self.clock.now(), "trigger_skipped", f"trigger {job.trigger_id} was deleted")
            return "skipped"
        label = f"«{trigger.name}» ({trigger.type}, on {job.event})"
        try:
            result = self._execute(job, trigger, message)
        except Suppressed as exc:
            _settle(job, "done", f"suppressed: {exc.message}")
            _timeline(message, self.clock.now(), "trigger_suppressed", f"{label}: {exc.message}")
            return "suppressed"
        except Busy as exc:  # the account's Kommo budget: the job waits on the queue (events.shares)
            words = _words(exc)
            _settle(job, "retry", words)
            raise AccountBusy(words, math.ceil(max(1.0, float(exc.retry_after or 0.0)))) from exc
        except Exception as exc:
            words = _words(exc)
            if is_retryable(exc) and attempt < MAX_ATTEMPTS:
                _settle(job, "retry", words)
                logger.warning("trigger run will be retried", extra={"run_id": job.run_id, "reason": words})
                raise RetryLater(words, backoff_seconds(attempt, getattr(exc, "retry_after", None))) from exc
            final = is_retryable(exc)
            _settle(job, "gave_up" if final else "failed", words)
            detail = f"{label}: {words}" + (f" (gave up after {attempt} attempts)" if final else "")
            _timeline(message, self.clock.now(), "trigger_failed", detail)
            logger.warning("trigger run failed", extra={"run_id": job.run_id, "reason": words})
            if final:
                raise  # to the dead-letter queue, where an operator can redrive it
            return "failed"
        _settle(job, "done", result)
        _timeline(message, self.clock.now(), "trigger", f"{label}: {result}")
        logger.info("trigger ran", extra={"run_id": job.run_id, "result": result})
        return "done"

    def _execute(self, job: RunJob, trigger: TriggerModel, message: MessageModel) -> str:
        try:
            account = AccountModel.get(job.account_id)
        except DoesNotExist:
            account = None
        if account is not None and account.status in access.INACTIVE:  # switched off: nothing runs
            raise Suppressed(f"the account is {account.status}")
        if trigger.type == "email":
            client: Any = None
        else:
            if account is None:
                raise InvalidInput("the account is not connected to Kommo", field=None)
            client = self.kommo_for(account) if self.kommo_for else _kommo_client(account, self.clock)
        ctx = trigger_actions.RunContext(
            message=message,
            kommo=client,
            now=self.clock.now(),
            send_template=lambda template_id: send_follow_up(message, template_id, job, clock=self.clock),
            render=lambda text: _render_text(text, message, self.clock),
        )
        return trigger_actions.execute(trigger, ctx)


def _render_text(text: str, message: MessageModel, clock: Clock) -> str:
    from mailer_core.rendering import personalize  # cold start: jinja2, babel

    mailbox = mailbox_connection.find(int(message.account_id), message.mailbox_id)
    return personalize.render_text(text, message, mailbox, clock=clock)


def _kommo_client(account: AccountModel, clock: Clock) -> Any:
    return client_for_account(account, clock=clock)


def send_follow_up(message: MessageModel, template_id: str, job: RunJob, *, clock: Clock) -> str:
    """A "send email" trigger: the template to the same entity (or the same addresses), from the
    same mailbox, with an id derived from the run, within the loop guards."""
    from ulid import ULID

    from mailer_core.messages import compose  # cold start: S3, SQS, Scheduler (a 'send email' trigger only)

    depth = int(message.chain_depth or 0) + 1
    automation_loops.check_runtime(message, template_id, depth, clock=clock)
    same_recipients: dict[str, Any] = (
        {"entity": (str(message.entity_type), int(message.entity_id))}
        if message.entity_type and message.entity_id is not None
        else {"to": list(message.to)}
    )
    request = ComposeRequest.of(
        template_id=template_id,
        mailbox_id=message.mailbox_id,
        lane=message.lane or "priority",
        **same_recipients,
    )
    seed = hashlib.sha256(job.run_id.encode()).digest()[:10]
    new_id = str(ULID.from_bytes(job.created_ms.to_bytes(6, "big") + seed))
    try:
        view = compose.compose(
            request,
            Actor.automatic(int(message.account_id), int(message.user_id)),
            clock=clock,
            message_id=new_id,
            origin="trigger",
            chain=(message.message_id, depth),
        )
    except compose.AlreadyComposed:
        return f"email {new_id} from template {template_id} was already composed"
    except NotFound as exc:
        raise InvalidInput(f"template {template_id}: {exc.message}", field="template_id") from exc
    return f"email {view['id']} from template {template_id} queued"


def process(body: str, *, attempt: int, receipt_handle: str | None, clock: Clock = SYSTEM_CLOCK) -> str:
    """One actions-queue message (the actions function's record handler)."""
    job = parse_job(body)
    logger.append_keys(account_id=job.account_id, message_id=job.message_id)
    if isinstance(job, EventJob):
        return handle_event(job, clock=clock)
    try:
        return Runner(clock=clock).run(job, attempt=attempt)
    except RetryLater as retry:
        if receipt_handle and not isinstance(retry, Busy):  # a busy account's job is put back anew
            sqs.retry_action_later(receipt_handle, retry.seconds)
        raise

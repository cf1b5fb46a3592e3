"""The digital pipeline's Mailer action: Kommo's hook (`POST /hooks/kommo/dp`) and its job.

When a lead enters a stage that holds the Mailer action (or moves inside an action that
spans several stages), Kommo posts the event to the widget's `webhook_url`, form-encoded
with bracket keys, every value a string (JSON with the same fields is accepted too):

    event[type]=14&event[type_code]=lead_status_changed&event[time]=1764000000
    &event[data][id]=24000001&event[data][element_type]=2&event[data][status_id]=7300102
    &event[data][pipeline_id]=7300001&event[data][direction_of_movement]=went_to_trigger
    &action[settings][widget][settings][template_id]=01J…&action[settings][widget][settings][secret]=…
    &subdomain=mailerdemo&account_id=31000001

Kommo documents no signature for this request, so nothing in it is trusted:

- not a form or JSON, a missing or non-numeric id, a bad setting: 400 naming the field;
- an account that is not installed, a `subdomain` not its own, a wrong or missing secret:
  404, one answer for all;
- event types other than 1, 14, 15, `went_from_trigger`, an element that is not a lead:
  200 `ignored`;
- an event whose `event[time]` is more than `MAX_AGE` old or `MAX_AHEAD` ahead of ours:
  200 `ignored` (Kommo posts at once: an old or forged time is no stage change to send for,
  and a captured post cannot be replayed later with a new time);
- the same event again (account, lead, pipeline, stage, type, time and the action's
  settings): 200 `duplicate`, nothing queued;
- over the account's daily cap of automatic emails (`jobs.AUTO_SENDS_PER_DAY`): 429;
- accepted: 202 with the id the email will have; the work is done from the pipeline queue.

The secret is the installation's (`pipeline_secret`), compared in constant time. The action's
settings are part of the event's identity, so two Mailer actions on one stage each send their
own template. The job re-reads the lead through the API before anything is composed
(`automatic_compose`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailer_core.accounts import pipeline_secret
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import MalformedRequest, NotFound
from mailer_core.base.logs import logger
from mailer_core.kommo.hosts import is_subdomain
from mailer_core.kommo_hooks import bracket_form, jobs
from mailer_core.kommo_hooks.jobs import Answer, AutoSendJob

SETTINGS = "action.settings.widget.settings"
ACCEPTED_TYPES = (1, 14, 15)  # lead added, moved to the stage, moved inside a multi-stage action
LEAD = 2  # element_type of a lead (12: a customer)
IGNORED_DIRECTIONS = ("went_from_trigger",)  # the lead left the action's stages
_DIGITS = re.compile(r"[0-9]{1,19}")
MAX_AGE, MAX_AHEAD = 3600, 300  # seconds an event's time may lie behind or ahead of ours


@dataclass(frozen=True)
class PipelineEvent:
    account_id: int
    subdomain: str
    type: int
    lead_id: int
    pipeline_id: int
    status_id: int
    time: int
    direction: str
    element_type: int | None
    settings: dict[str, Any]


def receive(raw: bytes, content_type: str | None, *, clock: Clock = SYSTEM_CLOCK) -> Answer:
    """Check one hook and queue its job; `MailerError`s are the 400 and 404 answers."""
    event = parse_event(bracket_form.parse_body(raw, content_type))
    account = jobs.installed_account(event.account_id, event.subdomain)
    presented = event.settings.get("secret")
    if not pipeline_secret.matches(account, presented.strip() if isinstance(presented, str) else ""):
        logger.info(
            "digital pipeline hook refused",
            extra={"account_id": event.account_id, "installed": account is not None},
        )
        raise NotFound("no Mailer installation matches this action")
    reason = _ignored(event)
    if reason:
        return Answer(200, {"status": "ignored", "reason": reason})
    settings = jobs.parse_settings(event.settings, prefix=SETTINGS)
    stale = _stale(event.time, clock.timestamp())
    if stale:
        logger.info(
            "digital pipeline event out of time", extra={"account_id": event.account_id, "reason": stale}
        )
        return Answer(200, {"status": "ignored", "reason": stale})
    key = jobs.event_fact_key(
        "dp",
        [
            event.account_id,
            event.lead_id,
            event.pipeline_id,
            event.status_id,
            event.type,
            event.time,
            settings.template_id,
            settings.mailbox_id or "",
            settings.to or "",
            settings.delay,
        ],
    )
    job = AutoSendJob(
        kind="dp",
        account_id=event.account_id,
        entity_type="leads",
        entity_id=event.lead_id,
        settings=settings,
        message_id=jobs.derived_message_id(key, event.time * 1000),
        fact_key=key,
        received_at=clock.now().isoformat(),
        event={
            "type": event.type,
            "pipeline_id": event.pipeline_id,
            "status_id": event.status_id,
            "time": event.time,
            "direction": event.direction,
        },
    )
    log = {"account_id": event.account_id, "lead_id": event.lead_id, "message_id": job.message_id}
    if not jobs.accept(job, clock=clock):
        logger.info("digital pipeline event repeated", extra=log)
        return Answer(200, {"status": "duplicate", "message_id": job.message_id})
    logger.info("digital pipeline event accepted", extra=log)
    return Answer(202, {"status": "accepted", "message_id": job.message_id})


def parse_event(data: dict[str, Any]) -> PipelineEvent:
    """The hook's fields; `MalformedRequest` naming the first one missing or malformed."""
    event = _object(data, "event", "event")
    details = _object(event, "data", "event.data")
    widget_settings = _settings(data)
    subdomain = data.get("subdomain")
    if not isinstance(subdomain, str) or not is_subdomain(subdomain.strip()):
        raise MalformedRequest("must be the account's Kommo subdomain", field="subdomain")
    direction = details.get("direction_of_movement")
    if direction is not None and not isinstance(direction, str):
        raise MalformedRequest("must be a string", field="event.data.direction_of_movement")
    element_type = details.get("element_type")
    return PipelineEvent(
        account_id=_id(data.get("account_id"), "account_id"),
        subdomain=subdomain.strip().lower(),
        type=_id(event.get("type"), "event.type"),
        lead_id=_id(details.get("id"), "event.data.id"),
        pipeline_id=_id(details.get("pipeline_id"), "event.data.pipeline_id"),
        status_id=_id(details.get("status_id"), "event.data.status_id"),
        time=_id(event.get("time"), "event.time"),
        direction=(direction or "").strip(),
        element_type=None if element_type in (None, "") else _id(element_type, "event.data.element_type"),
        settings=widget_settings,
    )


def _settings(data: dict[str, Any]) -> dict[str, Any]:
    """`action.settings.widget.settings` (an empty dict when absent: the secret check refuses it)."""
    node: Any = data
    path = SETTINGS.split(".")
    for depth, step in enumerate(path):
        node = node.get(step)
        if node is None or node == []:  # absent, or PHP's empty array
            return {}
        if not isinstance(node, dict):
            raise MalformedRequest("must be an object", field=".".join(path[: depth + 1]))
    return dict(node)


def _object(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise MalformedRequest("is missing or not an object", field=where)
    return value


def _id(value: Any, where: str) -> int:
    """A positive integer, as a JSON number or (in a form) a string of digits."""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedRequest("is missing or not a positive integer", field=where)
    return value


def _stale(event_time: int, now: float) -> str | None:
    if event_time < now - MAX_AGE:
        return f"the event's time is more than {MAX_AGE // 60} minutes old"
    if event_time > now + MAX_AHEAD:
        return "the event's time is in the future"
    return None


def _ignored(event: PipelineEvent) -> str | None:
    if event.type not in ACCEPTED_TYPES:
        return f"event type {event.type} does not send email (only 1, 14 and 15 do)"
    if event.direction in IGNORED_DIRECTIONS:
        return "the lead left the action's stages"
    if event.element_type is not None and event.element_type != LEAD:
        return f"element type {event.element_type} is not a lead"
    return None


def process(job: AutoSendJob, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """The pipeline function's work for one event: compose, or record why not. Raises to retry."""
    from mailer_core.kommo_hooks import compose as automatic_compose  # cold start: the Kommo client

    log = {"account_id": job.account_id, "lead_id": job.entity_id, "message_id": job.message_id}
    try:
        outcome = automatic_compose.compose_for(job, clock=clock)
    except automatic_compose.Skip as skip:
        automatic_compose.record(job, "skipped", skip.reason)
        logger.warning("digital pipeline email not sent", extra={**log, "reason": skip.reason})
        return "skipped"
    automatic_compose.record(job, outcome.state, outcome.message_id)
    logger.info("digital pipeline email composed", extra={**log, "outcome": outcome.state})
    return outcome.state

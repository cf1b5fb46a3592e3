"""Compose: a message stored first (conditional put), then queued or scheduled.

If queuing fails the message is marked failed with the reason, so nothing is left
half-written: a stored message is either on its way or says why it is not.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.accounts import access, preferences
from mailer_core.accounts.actors import Acting
from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3, scheduler, sqs
from mailer_core.adapters.mime import make_message_id
from mailer_core.base import limits
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import (
    Conflict,
    InvalidInput,
    UpstreamError,
)
from mailer_core.base.limits import MAX_RECIPIENTS
from mailer_core.base.logs import logger
from mailer_core.files import attachments
from mailer_core.kommo import contacts
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages import threads
from mailer_core.messages.requests import ComposeRequest, parse_request
from mailer_core.messages.views import public_view
from mailer_core.rendering.source_checks import validate_source
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets, timeline
from mailer_core.store.models import MailboxModel, MessageModel, entity_key
from mailer_core.triggers import api as trigger_rules

MAX_SCHEDULE_AHEAD = timedelta(days=366)


def compose_json(
    caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK, draft: MessageModel | None = None
) -> dict[str, Any]:
    """`POST /v1/messages`: the JSON body parsed into a request, composed by its caller.

    The caller is a person: an email about a CRM entity is refused (404) when Kommo does not
    let this user see it (entity_rights). An account without a Kommo connection has no CRM
    data to protect and is not asked. `draft` is the caller's stored draft this compose sends
    (messages.drafts): the message takes its place and its id.
    """
    request = parse_request(payload)
    if request.entity is not None:
        _ensure_may_view(caller, request.entity, clock)
    return compose(request, caller, clock=clock, draft=draft)


def _ensure_may_view(caller: Caller, entity: tuple[str, int], clock: Clock) -> None:
    from mailer_core.messages import entity_rights  # cold start: the Kommo reader
    from mailer_core.rendering.personalize import kommo_data  # cold start: jinja2 (the reader's module)

    try:
        data = kommo_data(caller.account_id, clock=clock)
    except Conflict:
        return  # not connected to Kommo: no CRM data to protect
    entity_rights.ensure_may_view(caller.user_id, data, entity)


class AlreadyComposed(Conflict):
    """An automatic compose (pipeline, trigger) with a message id that is already stored: a replay."""

    code = "already_composed"


def compose(
    request: ComposeRequest,
    actor: Acting,
    *,
    clock: Clock = SYSTEM_CLOCK,
    message_id: str | None = None,
    origin: str | None = None,
    chain: tuple[str, int] | None = None,
    campaign_id: str | None = None,
    draft: MessageModel | None = None,
) -> dict[str, Any]:
    """Store and queue one email for `actor` (a widget user, or Mailer for a user: `Actor`).

    Automatic composes (the digital pipeline, a "send email" trigger) pass a `message_id`
    derived from the event that caused them: a replay of the event then meets the stored
    message and raises `AlreadyComposed` instead of sending twice. `origin` says who composed
    (manual when None) and is kept on the message and in its history. `chain` is the message
    whose trigger sent this one and how many automatic emails lie behind it (loop guards).

    The triggers chosen for each event (`triggers`, else the template's) and the not-opened
    wait are frozen into the message: later edits of the template do not change its automation.

    `campaign_id` makes it one recipient's email of that campaign (`campaign_key` lists it in the
    campaign's log): the send gives it its unsubscribe link, footer and headers (docs/opt-out.md).

    `draft` makes the message replace that stored draft under the draft's id, by a put whose
    condition is that it is still a draft: a second send of the same draft answers 409.
    `request.received` makes it a reply or forward (messages.threads): the subject prefixed
    once, the received email quoted, In-Reply-To and References set.
    """
    now = clock.now()
    subject, html, to, cc, bcc = request.subject, request.html, request.to, request.cc, request.bcc
    entity = request.entity
    send_at = _send_at(request.send_at, now)
    mailbox = _sender(actor, request.mailbox_id)

    use = None
    if request.template_id is not None:
        from mailer_core.messages import from_template  # cold start: jinja2, babel

        use = from_template.for_compose(actor, request, mailbox=mailbox, clock=clock)
        subject, html, to, cc, bcc = use.subject, use.html, use.to, use.cc, use.bcc
    else:  # a raw subject and body may hold variables too: they must compile
        validate_source(subject, field="subject", html=False)
        validate_source(html, field="html", html=True)
    in_reply_to, references = None, None
    if request.received is not None:
        subject, html, in_reply_to, references = _answer(actor, request.received, subject, html)
    to = _recipients(actor, to, entity, request.contacts, use)
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        raise InvalidInput(f"an email goes to at most {MAX_RECIPIENTS} addresses", field="to")
    files, links = _files_and_links(actor, request, use, now)
    track_opens, chosen, not_opened_after = _tracking_and_automation(actor, request, use, clock)

    message_id = draft.message_id if draft is not None else (message_id or clock.new_id())
    status = state.SCHEDULED if send_at else state.QUEUED
    inline = len(html.encode("utf-8")) <= s3.INLINE_LIMIT
    message = MessageModel(
        actor.account_id,
        message_id,
        status=status,
        status_key=state.status_key(actor.account_id, status),
        user_id=actor.user_id,
        mailbox_id=mailbox.mailbox_id,
        lane=request.lane,
        to=to,
        cc=cc,
        bcc=bcc,
        entity_type=entity[0] if entity else None,
        entity_id=entity[1] if entity else None,
        entity_key=entity_key(actor.account_id, entity),
        subject=subject,
        html=html if inline else None,
        html_s3_key=None if inline else s3.put_html(actor.account_id, message_id, html),
        header_message_id=make_message_id(message_id, mailbox.sender_email),
        send_at=send_at,
        created_at=now,
        updated_at=now,
        history=[
            *(
                [timeline.entry(draft.created_at, state.DRAFT, "saved as a draft")]
                if draft is not None
                else []
            ),
            timeline.entry(now, status, _composed_detail(send_at, origin, chain)),
        ],
        in_reply_to=in_reply_to,
        references=references,
        attachments=[f.to_attribute() for f in files],
        attachment_links=links,
        template_id=use.template_id if use else None,
        machine_open_template=use.template_id if use else None,  # template_stats: the first machine open
        locale=use.locale if use else request.locale,
        timezone=use.timezone if use else request.timezone,
        disable_signature=use.disable_signature if use else None,
        track_opens=None if track_opens else False,
        track_downloads=_track_downloads(actor, request, use, origin) or None,
        origin=origin,
        triggers=chosen or None,
        not_opened_after=not_opened_after,
        parent_message_id=chain[0] if chain else None,
        chain_depth=chain[1] if chain else None,
        campaign_id=campaign_id,
        campaign_key=f"{actor.account_id}#{campaign_id}" if campaign_id else None,
    )
    attachments.claim(actor.account_id, files, keep="message", now=now)  # before the save: never half-kept
    if draft is not None:
        _replace_draft(message)
    else:
        _save_once(message, clock)
    dispatch(message, clock=clock)
    logger.info(
        "message composed",
        extra={
            "account_id": actor.account_id,
            "message_id": message_id,
            "mailbox_id": mailbox.mailbox_id,
            "status": message.status,
        },
    )
    return public_view(message)


def _send_at(send_at: datetime | None, now: datetime) -> datetime | None:
    """When to send: None for now (a time in the past means now), at most a year ahead."""
    if send_at is not None and send_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidInput("is more than a year ahead", field="send_at")
    return send_at if send_at is not None and send_at > now else None


def _sender(actor: Acting, mailbox_id: str | None) -> MailboxModel:
    """The mailbox named (the actor's own, or any when account-wide), else the actor's default."""
    if mailbox_id:
        mailbox = mailbox_connection.find(actor.account_id, mailbox_id)
        if mailbox is None or (not actor.account_wide and int(mailbox.user_id) != actor.user_id):
            raise InvalidInput("no such mailbox", field="mailbox_id")
        return mailbox
    mailbox = mailbox_connection.default_for_user(actor.account_id, actor.user_id)
    if mailbox is None:
        raise InvalidInput("choose a mailbox: you have no default mailbox", field="mailbox_id")
    return mailbox


def _recipients(
    actor: Acting, to: list[str], entity: tuple[str, int] | None, which: str, use: Any
) -> list[str]:
    """`to` as given, else the entity's contacts (unless the template sends to no client)."""
    if not to and entity is not None and (use is None or use.to_client != "none"):
        to = contacts.entity_recipients(actor.account_id, entity[0], entity[1], which)
        if not to:
            raise InvalidInput(
                f"{entity[0]} {entity[1]} has no contact with an email address", field="entity"
            )
    if not to:
        raise InvalidInput(
            "give recipients in 'to' or an entity whose contacts receive the email", field="to"
        )
    return to


def _files_and_links(
    actor: Acting, request: ComposeRequest, use: Any, now: datetime
) -> tuple[list[Any], list[str]]:
    """The compose's own attachments and links, else the template's."""
    links = attachments.validate_links(request.attachment_links)
    files = attachments.validate_attachments(
        actor.account_id, request.attachments, limit_bytes=limits.EMAIL_ATTACHMENTS_BYTES, now=now
    )
    if use is not None:
        files = files if "attachments" in request.given else use.files
        links = links if "attachment_links" in request.given else use.links
    return files, links


def _tracking_and_automation(
    actor: Acting, request: ComposeRequest, use: Any, clock: Clock
) -> tuple[bool, dict[str, list[str]] | None, int | None]:
    """The open pixel (unset: the template's, else the account's default), the triggers per
    event and the not-opened wait (unset: the template's), frozen into the message."""
    track_opens = request.track_opens
    if track_opens is None:
        track_opens = access.settings_of(actor.account_id, clock=clock).track_opens
    chosen = trigger_rules.validate_event_triggers(actor.account_id, request.triggers)
    not_opened_after = request.not_opened_after
    if use is not None:
        track_opens = track_opens if "track_opens" in request.given else use.track_opens
        chosen = chosen if "triggers" in request.given else use.triggers
        not_opened_after = not_opened_after if "not_opened_after" in request.given else use.not_opened_after
    if chosen and chosen.get("not_opened") and not not_opened_after:
        raise InvalidInput("give the not-opened wait (60 seconds or more)", field="not_opened_after")
    return track_opens, chosen, not_opened_after


def _track_downloads(actor: Acting, request: ComposeRequest, use: Any, origin: str | None) -> bool:
    """Attachments as tracked download links: the compose's choice (a person's is remembered
    for their next compose window), else the template's, else (a person's compose window only)
    their last choice. Automatic composes (pipeline, triggers, campaigns) never read it: one
    read less per email of a mailing."""
    if request.track_downloads is not None:
        if origin is None:
            preferences.remember(actor.account_id, actor.user_id, "track_downloads", request.track_downloads)
        return request.track_downloads
    if use is not None and use.track_downloads is not None:
        return bool(use.track_downloads)
    if origin is not None:
        return False
    return bool(preferences.of_user(actor.account_id, actor.user_id)["track_downloads"])


def _save_once(message: MessageModel, clock: Clock) -> None:
    """A conditional put: a replayed automatic compose meets its stored message and stops."""
    try:
        message.save(condition=MessageModel.message_id.does_not_exist())
    except PutError as exc:
        if state.is_condition_failure(exc):
            _dispatch_again(int(message.account_id), message.message_id, clock=clock)
            raise AlreadyComposed("this message was already composed", message_id=message.message_id) from exc
        raise


def _replace_draft(message: MessageModel) -> None:
    """The message takes its draft's place: a conditional put, so a draft is sent once."""
    try:
        message.save(condition=MessageModel.status == state.DRAFT)
    except PutError as exc:
        if state.is_condition_failure(exc):
            raise Conflict(
                "this draft was already sent or deleted", field="draft_id", message_id=message.message_id
            ) from exc
        raise


def _answer(
    actor: Acting, received: threads.Received, subject: str, html: str
) -> tuple[str, str, str | None, list[str]]:
    """A reply's or forward's subject, body and threading headers (messages.threads)."""
    own = None
    if received.message_id:
        try:
            ours = MessageModel.get(actor.account_id, received.message_id, consistent_read=True)
        except DoesNotExist:
            ours = None
        if ours is None or (not actor.account_wide and int(ours.user_id) != actor.user_id):
            raise InvalidInput("no such message", field="received.message_id")
        own = str(ours.header_message_id) or None
    in_reply_to, references = received.threading(own)
    if subject:
        subject = threads.prefixed_subject(received.mode, subject)
    else:  # the received subject is text: a client's braces are never variables
        subject = threads.literal_subject(threads.prefixed_subject(received.mode, received.subject))
    return subject, threads.answer_html(received, html), in_reply_to, references


def _composed_detail(send_at: Any, origin: str | None, chain: tuple[str, int] | None) -> str | None:
    parts = []
    if origin:
        parts.append(f"by {origin}" + (f" after message {chain[0]}" if chain else ""))
    if send_at:
        parts.append(f"send at {send_at.isoformat()}")
    return "; ".join(parts) or None


def _dispatch_again(account_id: int, message_id: str, *, clock: Clock) -> None:
    """A replayed automatic compose found its message stored. If it is still waiting, queue it
    again: the first compose may have died between saving and queueing. A second send job is
    harmless, because the worker's claim lets only one of them send."""
    try:
        stored = MessageModel.get(account_id, message_id, consistent_read=True)
    except DoesNotExist:
        return
    if stored.status in (state.QUEUED, state.SCHEDULED):
        dispatch(stored, clock=clock)


def _announce_priority(job: sqs.SendJob, clock: Clock) -> None:
    """A manager's email due now: the mailbox's bulk emails stand back until it took its turn
    (`rate_buckets.announce_priority`). A failure costs only that precedence."""
    try:
        rate_buckets.announce_priority(
            rate_buckets.mailbox_key(job.account_id, job.mailbox_id), now=clock.timestamp()
        )
    except Exception:
        logger.warning("could not announce a priority email to its mailbox", exc_info=True)


def dispatch(message: MessageModel, *, clock: Clock) -> None:
    """Queue the message now, after an SQS delay, or through a one-time schedule."""
    job = sqs.SendJob(int(message.account_id), message.message_id, message.mailbox_id, message.lane)  # type: ignore[arg-type]
    if message.entity_type and message.entity_id is not None:  # the worker reads a batch's CRM data at once
        job = dataclasses.replace(job, entity=f"{message.entity_type}:{int(message.entity_id)}")
    addresses = [*message.to, *(message.cc or []), *(message.bcc or [])]
    job = dataclasses.replace(job, recipients=tuple(str(a) for a in addresses))
    if message.campaign_id:  # the worker holds it while its campaign is paused
        job = dataclasses.replace(job, campaign=str(message.campaign_id), snapshot=message.crm_snapshot)
    try:
        delay = (message.send_at - clock.now()).total_seconds() if message.send_at else 0
        if delay <= sqs.MAX_DELAY_SECONDS:
            if job.lane == "priority" and delay <= 0:
                _announce_priority(job, clock)
            sqs.enqueue_send(job, delay_seconds=int(max(0, delay)))
        else:
            name = scheduler.schedule_name("send", int(message.account_id), message.message_id)
            scheduler.create_one_time(name, message.send_at, {"kind": "send", **json.loads(job.to_body())})  # type: ignore[arg-type]
            message.update(actions=[MessageModel.schedule_name.set(name)])
    except Exception as exc:
        now = clock.now()
        reason = f"could not queue the message: {type(exc).__name__}"
        state.transition(
            message,
            to=state.FAILED,
            when=now,
            event="failed",
            detail=reason,
            allowed_from=(state.QUEUED, state.SCHEDULED),
            extra=[MessageModel.last_error.set(reason)],
        )
        logger.exception("queueing failed", extra={"message_id": message.message_id})
        raise UpstreamError(
            "the message was saved as failed: the queue is unavailable; send it again later",
            message_id=message.message_id,
        ) from exc

"""Start, pause, resume and cancel: a campaign's status changes, each one conditional write.

Draft → Scheduled → Sending → Sent, with Paused, Canceled and Interrupted (with the reason).
At its start a campaign freezes what it sends (the template's subject, body, attachments,
triggers: later edits of the template do not change it) and its thresholds. A pause or an
interrupt holds the emails still queued (the send worker sees the status within seconds and
sets them `held`); a resume releases them and reads on where the audience stopped; a cancel
cancels them. Every email is composed once, so none is sent twice across these changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mailer_core.accounts import access
from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3, scheduler, sqs
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, InvalidInput
from mailer_core.campaigns import api, chains, links
from mailer_core.campaigns.expansion import Expander
from mailer_core.campaigns.views import public_view
from mailer_core.events import campaign_state as cs
from mailer_core.events.campaign_jobs import CampaignJob, enqueue
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.rendering import opt_out
from mailer_core.store.models import CampaignModel, plain_map
from mailer_core.tracking import rewrite as tracking_rewrite

START_GRACE = timedelta(minutes=1)  # a start time this little in the past means now
MAX_AHEAD = timedelta(days=366)
SETTLE_AGAIN_SECONDS = int(cs.STATUS_CACHE_SECONDS) + 5


class WrongStatus(Conflict):
    code = "wrong_status"


def start(caller: Caller, campaign_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Draft → Scheduled (a start time ahead) or Sending (now)."""
    body = validation.require_object(payload if payload is not None else {})
    validation.reject_unknown(body, {"send_at"})
    campaign = api.load(caller, campaign_id)
    if campaign.status != cs.DRAFT:
        raise WrongStatus(f"only a draft is started; this campaign is {campaign.status}", field="status")
    now = clock.now()
    send_at = validation.timestamp(body, "send_at") if "send_at" in body else campaign.send_at
    if send_at is not None and send_at < now - START_GRACE:
        raise InvalidInput("is in the past", field="send_at")
    if send_at is not None and send_at - now > MAX_AHEAD:
        raise InvalidInput("is more than a year ahead", field="send_at")
    if not tracking_rewrite.enabled():
        raise Conflict(
            "campaigns need the tracking secret and public base URL (MAILER_TRACKING_SECRET, "
            "MAILER_PUBLIC_BASE_URL): every campaign email carries an unsubscribe link",
            field="status",
        )
    _check_senders(campaign)
    frozen = freeze(caller, campaign)
    waits = False
    if campaign.parent_id:  # a chain's step: it begins a delay after the step before it
        send_at = chains.start_time(campaign)
        waits = send_at is None
    else:
        _ensure_audience(campaign, clock)
    scheduled = waits or (send_at is not None and send_at > now)
    status = cs.SCHEDULED if scheduled else cs.SENDING
    thresholds = {**cs.DEFAULT_THRESHOLDS, **access.settings_of(caller.account_id).thresholds()}
    options = {**plain_map(campaign.options), "frozen": frozen, "thresholds": thresholds}
    extra: list[Any] = [
        CampaignModel.options.set(options),
        CampaignModel.send_at.set(send_at) if send_at else CampaignModel.send_at.remove(),
    ]
    if not scheduled:
        extra.append(CampaignModel.started_at.set(now))
    if not cs.change_status(campaign, status, now, allowed_from=(cs.DRAFT,), extra=extra):
        raise WrongStatus("the campaign changed meanwhile; read it again", field="status")
    if scheduled and not waits:
        _schedule_start(campaign, send_at, now)  # type: ignore[arg-type]
    elif not scheduled:
        enqueue(CampaignJob(caller.account_id, campaign.campaign_id, "package", 0, 0))
    return public_view(campaign)


def _check_senders(campaign: CampaignModel) -> None:
    for n, mailbox_id in enumerate(campaign.mailbox_ids or []):
        mailbox = mailbox_connection.find(int(campaign.account_id), str(mailbox_id))
        if mailbox is None:
            raise InvalidInput("no such mailbox", field=f"mailbox_ids[{n}]")
        refused = mailbox_check.refused_login_reason(mailbox)
        if refused:
            raise InvalidInput(f"this mailbox cannot send: {refused}", field=f"mailbox_ids[{n}]")


def _ensure_audience(campaign: CampaignModel, clock: Clock) -> None:
    """The audience's first package read now (and kept for the expansion): an audience with
    nobody in it is refused before anything starts."""
    if int(campaign.package) != 0 or campaign.offset:
        return
    first = Expander(clock=clock).first_package(campaign)
    if not first["recipients"] and not first.get("cursor"):
        skipped = ", ".join(f"{n} {why}" for why, n in (first.get("skipped") or {}).items())
        raise InvalidInput(
            "is empty: nobody to write to" + (f" ({skipped})" if skipped else ""), field="audience"
        )


def freeze(caller: Caller, campaign: CampaignModel) -> dict[str, Any]:
    """What every email of the campaign sends, fixed now: the body goes to S3 once."""
    from mailer_core.templates import api as templates  # cold start: the template rules

    frozen: dict[str, Any] = {"track_opens": plain_map(campaign.options).get("track_opens", True)}
    subject, html = campaign.subject, campaign.html
    if campaign.template_id:
        template = templates.for_use(caller, campaign.template_id)
        subject = subject or template.subject or ""
        html = html or templates.html_of(template)
        frozen.update(
            template_id=template.template_id,
            locale=template.locale,
            timezone=template.timezone,
            disable_signature=bool(template.disable_signature),
            attachments=[f.to_attribute().as_dict() for f in templates.attached_files(template)],
            attachment_links=[str(link) for link in template.attachment_links or []],
            triggers={k: list(v) for k, v in plain_map(template.triggers).items() if v} or None,
            not_opened_after=int(template.not_opened_after) if template.not_opened_after else None,
        )
        if "track_opens" not in plain_map(campaign.options):
            frozen["track_opens"] = template.track_opens is not False
    if not subject or not html:
        raise InvalidInput("the campaign has no subject or body to send", field="template_id")
    _ensure_opt_out(int(campaign.account_id), subject, html)
    options = plain_map(campaign.options)
    html = links.with_utm(html, options.get("utm") or {})
    if options.get("track_clicks") is False:
        html = links.without_click_tracking(html)
    key = s3.campaign_object_key(int(campaign.account_id), campaign.campaign_id, "body.html")
    s3.put_text(key, html, "text/html; charset=utf-8")
    frozen.update(subject=subject, html_key=key)
    return {k: v for k, v in frozen.items() if v is not None}


def _ensure_opt_out(account_id: int, subject: str, html: str) -> None:
    """Every campaign email lets its reader unsubscribe: by the footer Mailer appends, or, when
    the account turned the footer off, by the template's own `{{ unsubscribe_url }}` link."""
    if access.settings_of(account_id).opt_out_footer:
        return
    if not opt_out.has_unsubscribe_placeholder(subject, html):
        raise InvalidInput(
            "the body has no {{ unsubscribe_url }} (or {optOutUrl}) link, and the opt-out footer is "
            "turned off in the settings: add the link, or turn the footer on",
            field="html",
        )


def _schedule_start(campaign: CampaignModel, send_at: datetime, now: datetime) -> None:
    delay = (send_at - now).total_seconds()
    job = CampaignJob(int(campaign.account_id), campaign.campaign_id, "start")
    if delay <= sqs.MAX_DELAY_SECONDS:
        enqueue(job, int(delay))
        return
    name = scheduler.schedule_name("campaign", int(campaign.account_id), campaign.campaign_id)
    scheduler.create_one_time(name, send_at, {"kind": "campaign", "job": job.to_body()})
    campaign.update(actions=[CampaignModel.schedule_name.set(name)])


def follow(account_id: int, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """The campaign finished, stopped or was canceled: the chain's started steps after it are
    given their start (its end plus their delay), or go back to Draft with the reason."""
    campaign = CampaignModel.get(account_id, campaign_id, consistent_read=True)
    now = clock.now()
    moved = 0
    for step in chains.steps_after(account_id, campaign_id):
        if step.status != cs.SCHEDULED:
            continue
        if campaign.status == cs.SENT and campaign.finished_at is not None:
            send_at = campaign.finished_at + timedelta(seconds=int(step.chain_delay or 0))
            step.update(
                actions=[CampaignModel.send_at.set(send_at)], condition=CampaignModel.status == cs.SCHEDULED
            )
            _schedule_start(step, send_at, now)
            moved += 1
        elif campaign.status in (cs.INTERRUPTED, cs.CANCELED):
            reason = f"the step before it was {campaign.status}"
            if chains.back_to_draft(step, reason, now):
                follow(account_id, step.campaign_id, clock=clock)
                moved += 1
    return f"chain: {moved} steps"


def begin(account_id: int, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """The start time came: Scheduled → Sending, and the first part is queued."""
    campaign = CampaignModel.get(account_id, campaign_id, consistent_read=True)
    now = clock.now()
    if campaign.status == cs.SCHEDULED:
        if campaign.send_at is None:  # a chain's step still waiting for the step before it
            return "waiting for the step before"
        if campaign.send_at - now > timedelta(seconds=1):  # moved later meanwhile
            _schedule_start(campaign, campaign.send_at, now)
            return "not yet"
        if not cs.change_status(
            campaign, cs.SENDING, now, allowed_from=(cs.SCHEDULED,), extra=[CampaignModel.started_at.set(now)]
        ):
            return "ignored"
    elif campaign.status != cs.SENDING:
        return f"ignored ({campaign.status})"
    enqueue(CampaignJob(account_id, campaign_id, "package", int(campaign.package), int(campaign.offset)))
    return "started"


def pause(caller: Caller, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    campaign = api.load(caller, campaign_id)
    if not cs.change_status(campaign, cs.PAUSED, clock.now(), allowed_from=(cs.SENDING, cs.SCHEDULED)):
        raise WrongStatus(
            f"only a scheduled or sending campaign is paused; this one is {campaign.status}", field="status"
        )
    return public_view(campaign)


def resume(caller: Caller, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Paused or Interrupted → Sending (or Scheduled when its start is still ahead): the held
    emails are released and the audience is read on from where it stopped."""
    campaign = api.load(caller, campaign_id)
    now = clock.now()
    ahead = campaign.started_at is None and campaign.send_at is not None and campaign.send_at > now
    to = cs.SCHEDULED if ahead else cs.SENDING
    extra = [] if ahead or campaign.started_at else [CampaignModel.started_at.set(now)]
    if not cs.change_status(campaign, to, now, allowed_from=(cs.PAUSED, cs.INTERRUPTED), extra=extra):
        raise WrongStatus(
            f"only a paused or interrupted campaign is resumed; this one is {campaign.status}", field="status"
        )
    if ahead:
        _schedule_start(campaign, campaign.send_at, now)  # type: ignore[arg-type]
    else:
        # Released now, and once more when every send worker's cached status says "sending":
        # one that still read "paused" may have held an email again in between.
        enqueue(CampaignJob(caller.account_id, campaign_id, "settle"))
        enqueue(CampaignJob(caller.account_id, campaign_id, "settle"), SETTLE_AGAIN_SECONDS)
    return public_view(campaign)


def cancel(caller: Caller, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    campaign = api.load(caller, campaign_id)
    allowed = (cs.DRAFT, cs.SCHEDULED, cs.SENDING, cs.PAUSED, cs.INTERRUPTED)
    if not cs.change_status(
        campaign, cs.CANCELED, clock.now(), allowed_from=allowed, reason="canceled by a user"
    ):
        raise WrongStatus(f"this campaign is {campaign.status} already", field="status")
    if campaign.schedule_name:
        scheduler.delete(str(campaign.schedule_name))
    enqueue(CampaignJob(caller.account_id, campaign_id, "settle"))
    return public_view(campaign)

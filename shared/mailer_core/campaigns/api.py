"""`/v1/campaigns`: create, list, read, change, copy and delete campaigns.

Who may do what: a user sees and changes their own campaigns; a Mailer administrator every
campaign of the account. Another user's campaign answers 404.

The edit lock (the 004 rule): a campaign is changed only as a Draft, Paused or Interrupted,
or while Scheduled until 5 minutes before its start; otherwise 409 `locked`. A campaign is
deleted only as a Draft.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, InvalidInput, NotFound
from mailer_core.base.validation import page_limit
from mailer_core.campaigns import chains, requests
from mailer_core.campaigns.views import public_view
from mailer_core.events import campaign_state as cs
from mailer_core.store import pages
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import CampaignModel, plain_map

EDIT_LOCK = timedelta(minutes=5)
EDITABLE = (cs.DRAFT, cs.SCHEDULED, cs.PAUSED, cs.INTERRUPTED)
MAX_PAGE = 100
REMOVABLE = ("template_id", "subject", "html", "send_at")  # null in a change removes these


class Locked(Conflict):
    code = "locked"


def load(caller: Caller, campaign_id: str, *, field: str = "campaign_id") -> CampaignModel:
    """The caller's campaign (an administrator's: any of the account), else 404."""
    try:
        campaign = CampaignModel.get(caller.account_id, campaign_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such campaign", field=field) from None
    if not caller.is_admin and int(campaign.user_id) != caller.user_id:
        raise NotFound("no such campaign", field=field)
    return campaign


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    given = requests.parse(caller, payload, creating=True)
    _content_given(given.template_id, given.subject, given.html)
    now = clock.now()
    campaign = CampaignModel(
        caller.account_id,
        clock.new_id(),
        name=given.name,
        status=cs.DRAFT,
        user_id=caller.user_id,
        template_id=given.template_id,
        subject=given.subject,
        html=given.html,
        mailbox_ids=given.mailbox_ids,
        audience=given.audience,
        options=given.options,
        send_at=given.send_at,
        created_at=now,
        updated_at=now,
        counts={},
    )
    if given.chain:
        if "audience" in given.given:
            raise InvalidInput(
                "a chain's step writes to the recipients of the step before it", field="audience"
            )
        chains.plan(
            caller.account_id, campaign, given.chain, visible=lambda i: load(caller, i, field="chain.after")
        )
    campaign.save(condition=CampaignModel.campaign_id.does_not_exist())
    return public_view(campaign)


def _content_given(template_id: str | None, subject: str | None, html: str | None) -> None:
    if template_id is None and not (subject and html):
        raise InvalidInput("give a template_id, or a subject and an html body", field="template_id")


def list_for(caller: Caller, query: dict[str, Any]) -> dict[str, Any]:
    status = query.get("status")
    if status is not None and status not in cs.STATUSES:
        raise InvalidInput(f"must be one of {', '.join(cs.STATUSES)}", field="status")
    limit = page_limit(query.get("limit"), maximum=MAX_PAGE, default=50)
    start = None
    if query.get("cursor"):
        start = pages.decode_cursor(
            str(query["cursor"]),
            keys=("account_id", "campaign_id"),
            types={"account_id": "N", "campaign_id": "S"},
            fixed={"account_id": {"N": str(caller.account_id)}},
        )
    condition = None
    if status:
        condition = CampaignModel.status == status
    if not caller.is_admin:
        mine = CampaignModel.user_id == caller.user_id
        condition = mine if condition is None else condition & mine
    found = CampaignModel.query(
        caller.account_id,
        filter_condition=condition,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=start,
    )
    items = [public_view(c) for c in found]
    last = found.last_evaluated_key
    return {"items": items, "cursor": pages.encode_cursor(last) if last else None}


def get(caller: Caller, campaign_id: str) -> dict[str, Any]:
    return public_view(load(caller, campaign_id))


def ensure_editable(campaign: CampaignModel, now: datetime) -> None:
    """The 004 rule: no change while it sends, nor within 5 minutes of its start."""
    if campaign.status not in EDITABLE:
        raise Locked(f"a campaign that is {campaign.status} cannot be changed", field="status")
    if campaign.status == cs.SCHEDULED and campaign.send_at and campaign.send_at - now < EDIT_LOCK:
        raise Locked("a campaign cannot be changed in the last 5 minutes before its start", field="send_at")


def update(caller: Caller, campaign_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    campaign = load(caller, campaign_id)
    now = clock.now()
    ensure_editable(campaign, now)
    given = requests.parse(caller, payload, creating=False)
    if "send_at" in given.given and campaign.status == cs.SCHEDULED:
        raise Locked("pause the campaign to move its start", field="send_at")
    actions = []
    for name in ("name", "template_id", "subject", "html", "mailbox_ids", "audience", "options", "send_at"):
        if name in given.given:
            value = getattr(given, name)
            if value is None and name not in REMOVABLE:
                raise InvalidInput("must not be null", field=name)
            attribute = getattr(CampaignModel, name)
            actions.append(attribute.set(value) if value is not None else attribute.remove())
    template_id = given.template_id if "template_id" in given.given else campaign.template_id
    subject = given.subject if "subject" in given.given else campaign.subject
    html = given.html if "html" in given.given else campaign.html
    _content_given(template_id, subject, html)
    if not actions:
        return public_view(campaign)
    version = int(campaign.version)
    try:
        campaign.update(
            actions=[*actions, CampaignModel.updated_at.set(now), CampaignModel.version.add(1)],
            condition=(CampaignModel.version == version) & CampaignModel.status.is_in(*EDITABLE),
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            raise Locked("the campaign changed meanwhile; read it again", field="version") from exc
        raise
    return public_view(campaign)


def copy(caller: Caller, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """A new Draft with the same content, senders, audience and options."""
    source = load(caller, campaign_id)
    now = clock.now()
    campaign = CampaignModel(
        caller.account_id,
        clock.new_id(),
        name=f"{source.name} (copy)"[: requests.MAX_NAME_CHARS],
        status=cs.DRAFT,
        user_id=caller.user_id,
        template_id=source.template_id,
        subject=source.subject,
        html=source.html,
        mailbox_ids=list(source.mailbox_ids),
        audience=plain_map(source.audience),
        options={k: v for k, v in plain_map(source.options).items() if k != "thresholds"},
        created_at=now,
        updated_at=now,
        counts={},
    )
    campaign.save(condition=CampaignModel.campaign_id.does_not_exist())
    return public_view(campaign)


def delete(caller: Caller, campaign_id: str) -> None:
    """Only a Draft (a campaign that began keeps its log), with the chain's steps after it
    that have not begun either."""
    campaign = load(caller, campaign_id)
    if campaign.status != cs.DRAFT:
        raise Conflict(f"only a draft is deleted; this campaign is {campaign.status}", field="status")
    for step in chains.steps_after(caller.account_id, campaign_id):
        if step.status in (cs.DRAFT, cs.SCHEDULED) and step.started_at is None:
            delete(_owner_of(caller, step), step.campaign_id)
    try:
        campaign.delete(condition=CampaignModel.status == cs.DRAFT)
    except DeleteError as exc:
        if is_condition_failure(exc):
            raise Conflict("the campaign changed meanwhile; read it again", field="status") from exc
        raise


def _owner_of(caller: Caller, step: CampaignModel) -> Caller:
    """Deleting a step planned after the caller's campaign is part of deleting that campaign."""
    return dataclasses.replace(caller, is_admin=True) if int(step.user_id) != caller.user_id else caller

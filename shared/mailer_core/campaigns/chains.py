"""Chains (the 004 rule): a follow-up campaign to the recipients of an earlier one who did not
open (or did not click), a delay after it finished, planned with the first.

A step is a campaign that names the step before it (`parent_id`), its condition and delay. It
is started like any campaign, and then waits (Scheduled, no start time) until the step before
it is Sent: its start is then set to that end plus the delay. When the step before it is
interrupted or canceled, the steps after it go back to Draft, each with the reason. Its
audience is read when it starts: the step before's emails that were sent, and were not
opened (`not_opened`) or not clicked (`not_clicked`) by then.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.audiences.pages import AudiencePage, Recipient
from mailer_core.base.errors import InvalidInput
from mailer_core.events import campaign_state as cs
from mailer_core.store import message_state as state
from mailer_core.store import pages
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import CampaignModel, MessageModel

PAGE = 250
_CONDITION_KIND = {"not_opened": "c:opened", "not_clicked": "c:clicked"}


def plan(account_id: int, campaign: CampaignModel, chain: dict[str, Any], *, visible: Any) -> None:
    """Make `campaign` a step after `chain["after"]` (a campaign `visible` lets the caller see)."""
    before = visible(chain["after"])
    if before.status in (cs.CANCELED, cs.INTERRUPTED):
        raise InvalidInput(f"the campaign before is {before.status}", field="chain.after")
    campaign.parent_id = before.campaign_id
    campaign.chain_condition = chain["condition"]
    campaign.chain_delay = chain["delay_seconds"]
    campaign.audience = {"chain": {"after": before.campaign_id, "condition": chain["condition"]}}


def steps_after(account_id: int, campaign_id: str) -> list[CampaignModel]:
    """The steps planned directly after this campaign."""
    return list(CampaignModel.query(account_id, filter_condition=CampaignModel.parent_id == campaign_id))


def start_time(campaign: CampaignModel) -> datetime | None:
    """When a started step begins: the step before's end plus the delay; None while it sends."""
    try:
        before = CampaignModel.get(int(campaign.account_id), str(campaign.parent_id), consistent_read=True)
    except DoesNotExist:
        raise InvalidInput("the campaign before it no longer exists", field="chain.after") from None
    if before.status in (cs.CANCELED, cs.INTERRUPTED):
        raise InvalidInput(f"the campaign before it is {before.status}", field="chain.after")
    if before.status != cs.SENT or before.finished_at is None:
        return None
    return before.finished_at + timedelta(seconds=int(campaign.chain_delay or 0))


def back_to_draft(step: CampaignModel, reason: str, when: datetime) -> bool:
    """A started step whose step before stopped: Draft again, with the reason."""
    try:
        step.update(
            actions=[
                CampaignModel.status.set(cs.DRAFT),
                CampaignModel.status_reason.set(reason),
                CampaignModel.send_at.remove(),
                CampaignModel.updated_at.set(when),
                CampaignModel.version.add(1),
            ],
            condition=CampaignModel.status == cs.SCHEDULED,
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def read_page(campaign: CampaignModel, cursor: str | None) -> AudiencePage:
    """A page of the step's audience: the step before's sent emails without the event."""
    account_id = int(campaign.account_id)
    key = cs.campaign_key(account_id, str(campaign.parent_id))
    start = None
    if cursor:
        start = pages.decode_cursor(cursor, keys=("account_id", "message_id", "campaign_key"))
    skip = _CONDITION_KIND.get(str(campaign.chain_condition), "c:opened")
    found = MessageModel.by_campaign.query(
        key,
        filter_condition=(MessageModel.status == state.SENT) & ~MessageModel.stats_counted.contains(skip),
        limit=PAGE,
        last_evaluated_key=start,
        attributes_to_get=["account_id", "message_id", "campaign_key", "to", "entity_type", "entity_id"],
    )
    recipients: list[Recipient] = []
    for message in found:
        entity = None
        if message.entity_type and message.entity_id is not None:
            entity = (str(message.entity_type), int(message.entity_id))
        recipients.extend(Recipient(str(address), entity) for address in message.to[:1])
    last = found.last_evaluated_key
    return AudiencePage(recipients, pages.encode_cursor(last) if last else None)

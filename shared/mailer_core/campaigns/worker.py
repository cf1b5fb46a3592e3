"""The campaigns function's work: one campaign job at a time, each safe to repeat."""

from __future__ import annotations

from mailer_core.audiences import lists_api
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.campaigns import lifecycle
from mailer_core.campaigns.expansion import Expander
from mailer_core.events import campaign_state as cs
from mailer_core.events.campaign_jobs import CampaignJob, enqueue
from mailer_core.messages import compose
from mailer_core.store import message_state as state
from mailer_core.store.models import CampaignModel, MessageModel


def process_body(body: str, *, clock: Clock = SYSTEM_CLOCK) -> str:
    job = CampaignJob.from_body(body)
    logger.append_keys(account_id=job.account_id, campaign_id=job.campaign_id)
    return process(job, clock=clock)


def process(job: CampaignJob, *, clock: Clock = SYSTEM_CLOCK, expander: Expander | None = None) -> str:
    """Carry out one step; the result names what became of it (for the log)."""
    if job.kind == "start":
        result = lifecycle.begin(job.account_id, job.campaign_id, clock=clock)
    elif job.kind == "package":
        result = (expander or Expander(clock=clock)).part(job)
    elif job.kind == "chain":
        result = lifecycle.follow(job.account_id, job.campaign_id, clock=clock)
    elif job.kind == "purge_list":
        result = lists_api.purge_members(job.account_id, job.campaign_id)
    else:
        result = settle(job.account_id, job.campaign_id, clock=clock)
    logger.info("campaign step done", extra={"kind": job.kind, "result": result})
    return result


def settle(account_id: int, campaign_id: str, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """After a resume: the held emails queued again and the audience read on. After a cancel:
    the emails not yet sent canceled. Each email's change is conditional on its status, so a
    repeated settle (or the send worker meanwhile) changes nothing twice."""
    try:
        campaign = CampaignModel.get(account_id, campaign_id, consistent_read=True)
    except CampaignModel.DoesNotExist:
        return "no campaign"
    now = clock.now()
    key = cs.campaign_key(account_id, campaign_id)
    if campaign.status == cs.CANCELED:
        waiting = MessageModel.by_campaign.query(
            key, filter_condition=MessageModel.status.is_in(state.QUEUED, state.HELD)
        )
        canceled = 0
        for message in waiting:
            if state.transition(
                message,
                to=state.CANCELED,
                when=now,
                event=state.CANCELED,
                detail="the campaign was canceled",
                allowed_from=(state.QUEUED, state.HELD),
            ):
                cs.count_safely(message, "canceled", now)
                canceled += 1
        return f"canceled {canceled}"
    if campaign.status != cs.SENDING:
        return f"nothing to settle ({campaign.status})"
    released = 0
    for message in MessageModel.by_campaign.query(key, filter_condition=MessageModel.status == state.HELD):
        if state.transition(
            message,
            to=state.QUEUED,
            when=now,
            event=state.QUEUED,
            detail="the campaign resumed",
            allowed_from=(state.HELD,),
        ):
            compose.dispatch(message, clock=clock)
            released += 1
    if campaign.expanded:
        cs.settle(campaign, now)
    else:
        enqueue(CampaignJob(account_id, campaign_id, "package", int(campaign.package), int(campaign.offset)))
    return f"released {released}"

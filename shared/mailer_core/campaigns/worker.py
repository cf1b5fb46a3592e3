"""The campaigns function's work: one campaign job at a time, each safe to repeat."""

from __future__ import annotations

from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.campaigns.jobs import CampaignJob


def process_body(body: str, *, clock: Clock = SYSTEM_CLOCK) -> str:
    job = CampaignJob.from_body(body)
    logger.append_keys(account_id=job.account_id, campaign_id=job.campaign_id)
    return process(job, clock=clock)


def process(job: CampaignJob, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """Carry out one step; the result names what became of it (for the log)."""
    raise NotImplementedError(f"campaign step {job.kind} is not built yet")

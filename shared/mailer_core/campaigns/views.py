"""A campaign as the API shows it: its settings, status and progress in numbers and per cent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailer_core.events import campaign_state as cs
from mailer_core.store.models import CampaignModel, plain_map

# Why recipients were left out: here, and by the audience's reader (audiences.reader).
EXCLUSIONS = (
    "suppressed",
    "duplicate",
    "excluded_list",
    "no_address",
    "bad_address",
    "not_found",
    "not_in_filter",
)


# Why a campaign's next part waits (`CampaignModel.waiting_reason`), in words.
WAITING_WORDS = {
    "per_day": "the campaign's per-day portion is reached; it goes on the next day",
    "daily_cap": "every sender mailbox reached its daily cap; it goes on after midnight UTC",
}


def waiting(campaign: CampaignModel) -> dict[str, Any] | None:
    """The reason and next try of a Sending campaign held back past its pace (cleared by the
    next part it composes)."""
    reason = campaign.waiting_reason
    if campaign.status != cs.SENDING or not reason:
        return None
    return {
        "reason": reason,
        "detail": WAITING_WORDS.get(reason, reason),
        "next_try_at": _iso(campaign.next_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def progress(counts: dict[str, Any], expanded: bool) -> dict[str, Any]:
    """Totals and rates. `percent` is the share of composed emails that are done (sent or
    failed); it reaches 100 only once the whole audience was read."""
    number = {k: int(v) for k, v in counts.items()}
    composed = number.get("composed", 0)
    done = sum(number.get(k, 0) for k in (*cs.DONE_KINDS, "canceled"))
    sent = number.get("sent", 0)
    percent = 0.0 if not composed else 100.0 * done / composed
    if not expanded:
        percent = min(percent, 99.0)
    return {
        "recipients": composed,
        "queued": max(0, composed - done),
        "sent": sent,
        "failed": number.get("failed", 0),
        "canceled": number.get("canceled", 0),
        "bounced": number.get("bounced", 0),
        "opened": number.get("opened", 0),
        "clicked": number.get("clicked", 0),
        "opted_out": number.get("opted_out", 0),
        "complained": number.get("complained", 0),
        "excluded": {k: number.get(f"excluded_{k}", 0) for k in EXCLUSIONS},
        "percent": round(percent, 1),
        "rates": {
            "open": round(100.0 * number.get("opened", 0) / sent, 2) if sent else 0.0,
            "click": round(100.0 * number.get("clicked", 0) / sent, 2) if sent else 0.0,
            "bounce": round(cs.rates(number)["bounce"], 2),
            "complaint": round(cs.rates(number)["complaint"], 2),
            "opt_out": round(100.0 * number.get("opted_out", 0) / sent, 2) if sent else 0.0,
        },
        "audience_read": bool(expanded),
    }


def public_view(campaign: CampaignModel) -> dict[str, Any]:
    return {
        "campaign_id": campaign.campaign_id,
        "name": campaign.name,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "user_id": int(campaign.user_id),
        "template_id": campaign.template_id,
        "subject": campaign.subject,
        "html": campaign.html,
        "mailbox_ids": list(campaign.mailbox_ids or []),
        "audience": plain_map(campaign.audience),
        "options": {k: v for k, v in plain_map(campaign.options).items() if k != "frozen"},
        "send_at": _iso(campaign.send_at),
        "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "created_at": _iso(campaign.created_at),
        "updated_at": _iso(campaign.updated_at),
        "warnings": list(campaign.warnings or []),
        "waiting": waiting(campaign),
        "progress": progress(plain_map(campaign.counts), bool(campaign.expanded)),
    }

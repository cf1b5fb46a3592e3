"""A campaign as its emails' events see it: its status (read by the send worker, cached a few
seconds), its counters (each email counted once per kind) and the status changes the
counters cause: sent when every email is done, interrupted when the bounce or complaint rate
passes the campaign's thresholds.

The counters live in the campaign item's `counts` map, every one an ADD. The guard against a
repeated event is the message's `stats_counted` set (as for the template counters), with
kinds prefixed `c:` so the two never mix. A crash between the guard and the ADD loses one
count; nothing is ever counted twice.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import size
from pynamodb.expressions.operand import Path

from mailer_core.base.logs import logger
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.events import campaign_jobs
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import CampaignModel, MessageModel, plain_map

DRAFT, SCHEDULED, SENDING, SENT, PAUSED, CANCELED, INTERRUPTED = (
    "draft",
    "scheduled",
    "sending",
    "sent",
    "paused",
    "canceled",
    "interrupted",
)
STATUSES = (DRAFT, SCHEDULED, SENDING, SENT, PAUSED, CANCELED, INTERRUPTED)
# What one email can become, each counted at most once per email.
KINDS = ("sent", "failed", "canceled", "bounced", "opened", "clicked", "opted_out", "complained")
DONE_KINDS = ("sent", "failed")  # an email that is one of these needs nothing more
# Thresholds frozen into a campaign at its start (`thresholds` in its options), in per cent.
DEFAULT_THRESHOLDS = {
    "bounce_warning": 5.0,
    "bounce_interrupt": 10.0,
    "complaint_warning": 0.1,
    "complaint_interrupt": 0.5,
    "min_sent": 100,  # rates are judged once this many emails went out
}
MAX_LINKS = 100  # distinct links counted per campaign; clicks on others go to `other_links`
STATUS_CACHE_SECONDS = 5.0
_status_cache: TtlCache[tuple[int, str], str | None] = TtlCache(STATUS_CACHE_SECONDS)


def campaign_key(account_id: int, campaign_id: str) -> str:
    return f"{int(account_id)}#{campaign_id}"


def status_of(account_id: int, campaign_id: str) -> str | None:
    """The campaign's status as a send worker acts on it: read at most every few seconds per
    container, so a pause holds the emails still queued within that time. None: no campaign."""

    def load() -> str | None:
        try:
            found = CampaignModel.get(int(account_id), campaign_id, attributes_to_get=["status"])
        except DoesNotExist:
            return None
        return str(found.status)

    return _status_cache.get_or_load((int(account_id), campaign_id), time.monotonic(), load)


def forget_statuses() -> None:
    """Drop the cached statuses (tests, and the API right after a change in this container)."""
    _status_cache.clear()


def count_once(message: MessageModel, kind: str, when: datetime) -> bool:
    """Count `message` in its campaign's `kind` counter unless counted there already; True if
    this call counted it. Then settle what the new counts mean (finished, interrupted)."""
    if kind not in KINDS:
        raise ValueError(f"unknown campaign counter {kind!r}")
    campaign_id = message.campaign_id
    if not campaign_id:
        return False
    guard = f"c:{kind}"
    try:
        MessageModel._get_connection().update_item(
            str(int(message.account_id)),
            message.message_id,
            actions=[MessageModel.stats_counted.add({guard})],
            condition=MessageModel.message_id.exists() & ~MessageModel.stats_counted.contains(guard),
            return_values="NONE",
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    campaign = add_counts(int(message.account_id), str(campaign_id), {kind: 1}, when)
    if campaign is not None:
        settle(campaign, when)
    return True


def count_safely(message: MessageModel, kind: str, when: datetime) -> None:
    """`count_once` for the hooks: a counter never fails what it counts."""
    if not message.campaign_id:
        return
    try:
        count_once(message, kind, when)
    except Exception:
        logger.exception("could not count the email on its campaign", extra={"kind": kind})


def count_link(account_id: int, campaign_id: str, key: str, url: str, when: datetime) -> None:
    """A person's first click on the link `key` in one of the campaign's emails (the track
    route calls this once per email and link). Never raises: a counter never fails a click."""
    path = Path(["links", key])
    actions = [
        counter_add(f"link:{key}", 1),
        path.set(path | url),
        CampaignModel.link_keys.add({key}),
        CampaignModel.updated_at.set(when),
    ]
    room = (
        CampaignModel.link_keys.does_not_exist()
        | CampaignModel.link_keys.contains(key)
        | (size(CampaignModel.link_keys) < MAX_LINKS)
    )
    connection = CampaignModel._get_connection()
    try:
        try:
            connection.update_item(str(int(account_id)), campaign_id, actions=actions, condition=room)
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            connection.update_item(
                str(int(account_id)),
                campaign_id,
                actions=[counter_add("other_links", 1)],
                condition=CampaignModel.campaign_id.exists(),
            )
    except Exception:
        logger.exception("could not count the link on its campaign", extra={"campaign_id": campaign_id})


def add_counts(
    account_id: int, campaign_id: str, deltas: dict[str, int], when: datetime
) -> CampaignModel | None:
    """ADD to the campaign's counters (creating them at zero); the campaign after the write
    (the update's answer: no read), or None when the campaign is gone."""
    actions = [counter_add(name, delta) for name, delta in deltas.items()]
    try:
        answer = CampaignModel._get_connection().update_item(
            str(account_id),
            campaign_id,
            actions=[*actions, CampaignModel.updated_at.set(when)],
            condition=CampaignModel.campaign_id.exists(),
            return_values="ALL_NEW",
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return None
        raise
    return CampaignModel.from_raw_data(answer["Attributes"])


def counter_add(name: str, delta: int) -> Any:
    """SET counts.name = if_not_exists(counts.name, 0) + delta: DynamoDB's ADD takes no nested path."""
    path = Path(["counts", name])
    return path.set((path | 0) + delta)


def finished(counts: dict[str, Any]) -> bool:
    """Every email the campaign composed is sent or failed."""
    composed = int(counts.get("composed", 0))
    return sum(int(counts.get(k, 0)) for k in (*DONE_KINDS, "canceled")) >= composed


def rates(counts: dict[str, Any]) -> dict[str, float]:
    """Bounce and complaint rates in per cent of the emails sent."""
    sent = int(counts.get("sent", 0))
    if not sent:
        return {"bounce": 0.0, "complaint": 0.0}
    return {
        "bounce": 100.0 * int(counts.get("bounced", 0)) / sent,
        "complaint": 100.0 * int(counts.get("complained", 0)) / sent,
    }


def verdict(counts: dict[str, Any], thresholds: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(the reason to interrupt, or None; the warnings) for these counts."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    if int(counts.get("sent", 0)) < int(limits["min_sent"]):
        return None, []
    now = rates(counts)
    warnings: list[str] = []
    for kind in ("bounce", "complaint"):
        limit = float(limits[f"{kind}_interrupt"])
        if now[kind] >= limit:
            return f"the {kind} rate reached {now[kind]:.1f} % (the limit is {limit:g} %)", warnings
        if now[kind] >= float(limits[f"{kind}_warning"]):
            warnings.append(f"{kind}_rate")
    return None, warnings


def settle(campaign: CampaignModel, when: datetime) -> str | None:
    """What the campaign's counts (as just written or read) mean: interrupted (its rates),
    warned, or sent (every email done after the whole audience was read). Each a conditional
    write; the new status, or None when nothing changed."""
    counts = plain_map(campaign.counts)
    options = plain_map(campaign.options)
    reason, warnings = verdict(counts, options.get("thresholds") or {})
    interrupted = reason and campaign.status == SENDING
    if interrupted and change_status(campaign, INTERRUPTED, when, allowed_from=(SENDING,), reason=reason):
        return INTERRUPTED
    new_warnings = [w for w in warnings if w not in (campaign.warnings or [])]
    if new_warnings:
        _warn(campaign, new_warnings, when)
    done = campaign.status == SENDING and campaign.expanded and finished(counts)
    if done and change_status(campaign, SENT, when, allowed_from=(SENDING,)):
        return SENT
    return None


def _warn(campaign: CampaignModel, warnings: list[str], when: datetime) -> None:
    try:
        campaign.update(
            actions=[
                CampaignModel.warnings.set((CampaignModel.warnings | []).append(warnings)),  # type: ignore[arg-type]
                CampaignModel.updated_at.set(when),
            ]
        )
    except UpdateError:
        logger.warning("could not record the campaign's warning", exc_info=True)


def pause_safely(account_id: int, campaign_id: str, reason: str, when: datetime) -> None:
    """Pause a sending campaign with the reason (a refused login); never raises."""
    try:
        change_status(
            CampaignModel(account_id, campaign_id), PAUSED, when, allowed_from=(SENDING,), reason=reason
        )
    except Exception:
        logger.exception("could not pause the campaign", extra={"campaign_id": campaign_id})


def _follow_chain(account_id: int, campaign_id: str) -> None:
    try:
        campaign_jobs.enqueue(campaign_jobs.CampaignJob(account_id, campaign_id, "chain"))
    except Exception:  # the status stands; the runbook's query finds this line
        logger.exception("could not queue the chain's next step", extra={"campaign_id": campaign_id})


def change_status(
    campaign: CampaignModel,
    to: str,
    when: datetime,
    *,
    allowed_from: tuple[str, ...],
    reason: str | None = None,
    condition: Any = None,
    extra: list[Any] | None = None,
) -> bool:
    """Move the campaign to `to` if it is in one of `allowed_from` (one conditional write)."""
    guard = CampaignModel.status.is_in(*allowed_from)
    if condition is not None:
        guard = guard & condition
    actions = [
        CampaignModel.status.set(to),
        CampaignModel.updated_at.set(when),
        CampaignModel.version.add(1),
        CampaignModel.status_reason.set(reason) if reason else CampaignModel.status_reason.remove(),
        *(extra or []),
    ]
    if to in (SENT, CANCELED):
        actions.append(CampaignModel.finished_at.set(when))
    try:
        campaign.update(actions=actions, condition=guard)
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    _status_cache.pop((int(campaign.account_id), str(campaign.campaign_id)))
    if to in (SENT, INTERRUPTED, CANCELED):  # the chain's steps after it start or go back to Draft
        _follow_chain(int(campaign.account_id), str(campaign.campaign_id))
    logger.info(
        "campaign status", extra={"campaign_id": campaign.campaign_id, "status": to, "reason": reason}
    )
    return True

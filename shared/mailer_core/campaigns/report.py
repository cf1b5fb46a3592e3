"""A campaign's log and report: one line per recipient (its email), totals and rates, clicks
per link, and the log as CSV.

The log reads the messages' `by_campaign` index, newest recipient last; a filter narrows it
by what became of the email (`state`). What happened after "sent" (bounced, opened, clicked,
opted out, complained) is read from the email's campaign counters guard (`stats_counted`:
`c:<kind>`), so the log and the totals always agree. A log's recipients in one state become a target list:
an audience for the next campaign (004's "from the log back to an audience").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from pynamodb.expressions.condition import Condition

from mailer_core.accounts.auth import Caller
from mailer_core.audiences import lists_api
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput
from mailer_core.campaigns import api
from mailer_core.campaigns.views import progress
from mailer_core.events import campaign_state as cs
from mailer_core.store import message_state as state
from mailer_core.store import pages
from mailer_core.store.models import CampaignModel, MessageModel, plain_map

STATUS_STATES = (state.QUEUED, state.HELD, state.SENDING, state.SENT, state.FAILED, state.CANCELED)
EVENT_STATES = ("bounced", "opened", "clicked", "opted_out", "complained")
STATES = (*STATUS_STATES, *EVENT_STATES)
MAX_PAGE, MAX_CSV_PAGE = 500, 5000
CSV_COLUMNS = (
    "message_id",
    "address",
    "entity_type",
    "entity_id",
    "status",
    "mailbox_id",
    "sent_at",
    "error",
    "bounced",
    "opened",
    "clicked",
    "opted_out",
    "complained",
    "opens",
    "clicks",
)


def _filter(raw: Any) -> Condition | None:
    if raw is None or raw == "":
        return None
    if raw not in STATES:
        raise InvalidInput(f"must be one of {', '.join(STATES)}", field="state")
    if raw in STATUS_STATES:
        return MessageModel.status == raw
    return MessageModel.stats_counted.contains(f"c:{raw}")


def line(message: MessageModel) -> dict[str, Any]:
    """One recipient's line of the log."""
    counted = set(message.stats_counted or ())
    return {
        "message_id": message.message_id,
        "address": str(message.to[0]) if message.to else None,
        "entity": (
            {"type": message.entity_type, "id": int(message.entity_id)}
            if message.entity_type and message.entity_id is not None
            else None
        ),
        "status": message.status,
        "mailbox_id": message.mailbox_id,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "error": message.last_error,
        **{kind: f"c:{kind}" in counted for kind in EVENT_STATES},
        "opens": int(message.opens or 0),
        "clicks": int(message.clicks_total or 0),
    }


def _page(caller: Caller, campaign: CampaignModel, query: dict[str, Any], maximum: int, default: int) -> Any:
    key = cs.campaign_key(caller.account_id, campaign.campaign_id)
    start = None
    if query.get("cursor"):
        start = pages.decode_cursor(
            str(query["cursor"]),
            keys=("account_id", "message_id", "campaign_key"),
            types={"account_id": "N", "message_id": "S", "campaign_key": "S"},
            fixed={"account_id": {"N": str(caller.account_id)}, "campaign_key": {"S": key}},
        )
    return MessageModel.by_campaign.query(
        key,
        filter_condition=_filter(query.get("state")),
        limit=validation.page_limit(query.get("limit"), maximum=maximum, default=default),
        last_evaluated_key=start,
    )


def log(caller: Caller, campaign_id: str, query: dict[str, Any]) -> dict[str, Any]:
    """`GET /v1/campaigns/{id}/log`: a page of recipients, filtered by `state`."""
    campaign = api.load(caller, campaign_id)
    found = _page(caller, campaign, query, MAX_PAGE, 100)
    items = [line(m) for m in found]
    last = found.last_evaluated_key
    return {"items": items, "cursor": pages.encode_cursor(last) if last else None}


def log_csv(caller: Caller, campaign_id: str, query: dict[str, Any]) -> tuple[str, str | None]:
    """`GET /v1/campaigns/{id}/log.csv`: up to 5,000 lines as CSV (a header first) and the
    cursor of the next page (the `X-Next-Cursor` header), None after the last."""
    campaign = api.load(caller, campaign_id)
    found = _page(caller, campaign, query, MAX_CSV_PAGE, MAX_CSV_PAGE)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for message in found:
        item = line(message)
        entity = item.pop("entity") or {}
        item.update(entity_type=entity.get("type"), entity_id=entity.get("id"))
        writer.writerow([_cell(item.get(column)) for column in CSV_COLUMNS])
    last = found.last_evaluated_key
    return out.getvalue(), pages.encode_cursor(last) if last else None


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with a leading '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def report(caller: Caller, campaign_id: str) -> dict[str, Any]:
    """`GET /v1/campaigns/{id}/report`: totals, rates and clicks per link."""
    campaign = api.load(caller, campaign_id)
    counts = plain_map(campaign.counts)
    links = plain_map(campaign.links)
    per_link = sorted(
        ({"url": url, "clicked": int(counts.get(f"link:{key}", 0))} for key, url in links.items()),
        key=lambda item: -int(item["clicked"]),
    )
    return {
        "campaign_id": campaign.campaign_id,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        **progress(counts, bool(campaign.expanded)),
        "links": per_link,
        "other_links_clicked": int(counts.get("other_links", 0)),
    }


MAX_TO_LIST = 50_000


def to_target_list(
    caller: Caller, campaign_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any]:
    """`POST /v1/campaigns/{id}/target-list`: a new target list of the log's recipients in one
    `state` (e.g. those who clicked), as addresses with their CRM entity: an audience for the
    next campaign (004). At most 50,000 members a call (`truncated` says when more matched)."""
    body = validation.require_object(payload)
    validation.reject_unknown(body, {"name", "state"})
    condition = _filter(body.get("state"))
    campaign = api.load(caller, campaign_id)
    made = lists_api.create(
        caller, {"name": body.get("name") or f"{campaign.name}: {body.get('state') or 'all'}"}
    )
    key = cs.campaign_key(caller.account_id, campaign.campaign_id)
    found = MessageModel.by_campaign.query(
        key, filter_condition=condition, attributes_to_get=["to", "entity_type", "entity_id", "message_id"]
    )
    taken = {"count": 0}

    def members() -> Iterator[lists_api.NewMember]:
        for message in found:
            if taken["count"] >= MAX_TO_LIST:
                return
            taken["count"] += 1
            yield lists_api.NewMember(address=str(message.to[0]))

    added = lists_api.add_members(caller.account_id, made["id"], members(), clock=clock)
    return {
        "list": lists_api.get(caller, made["id"]),
        "added": added.added,
        "truncated": taken["count"] >= MAX_TO_LIST,
    }

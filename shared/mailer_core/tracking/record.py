"""The facts the track routes record: an open, a click, each with one conditional UpdateItem.

One write on the message (the counter, and the event on the message's timeline up to
`store.timeline`'s cap); never Kommo or SMTP: a person's first open calls
`message_events.on_message_opened`, which puts the "opened" event on the actions queue.
Machine traffic (`tracking.machine_traffic`) is counted apart and never sets
`first_open_at`. A message's first machine open and first click on each link also count on
its template (`events.template_counters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.base.clock import SYSTEM_CLOCK
from mailer_core.base.logs import logger
from mailer_core.events import campaign_state, message_events, template_counters
from mailer_core.store import timeline
from mailer_core.store.models import MessageModel
from mailer_core.tracking import link_targets, tokens


def update_message(
    account_id: int, message_id: str, actions: list[Any], condition: Any, values: str
) -> dict[str, Any]:
    """One UpdateItem on the message, answering only the attributes asked for (never the body)."""
    connection = MessageModel._get_connection()
    reply = connection.update_item(
        str(account_id), message_id, actions=actions, condition=condition, return_values=values
    )
    return dict(reply.get("Attributes") or {})


def record_open(
    token: tokens.TrackingToken, *, machine: bool, when: datetime, machine_class: str = ""
) -> bool:
    """Count the open and list it on the timeline; True for a person's first open (which ran
    the hook). One request (timeline.counted; past its cap, two): ADD opens and SET
    first_open_at = if_not_exists(…), answering the old values (UPDATED_OLD). A template's
    email's first machine open also counts on the template (one more request)."""
    if machine:
        old = timeline.counted(
            token.account_id,
            token.message_id,
            # the template id, if any, is removed by the first machine open and read back
            actions=[MessageModel.machine_opens.add(1), MessageModel.machine_open_template.remove()],
            counter=MessageModel.machine_opens,
            note=timeline.entry(when, timeline.MACHINE_OPEN, machine_class or None),
        )
        template_id = (old.get("machine_open_template") or {}).get("S")
        if template_id:
            template_counters.on_first_machine_open(
                token.account_id, str(template_id), token.message_id, when
            )
        return False
    old = timeline.counted(
        token.account_id,
        token.message_id,
        actions=[
            MessageModel.opens.add(1),
            MessageModel.first_open_at.set(MessageModel.first_open_at | when),
            MessageModel.last_open_at.set(when),
        ],
        counter=MessageModel.opens,
        note=timeline.entry(when, timeline.OPENED),
    )
    # `opens` and `first_open_at` are set together, by people's opens only: no old count means
    # this update set the first open (an atomic read of the old value, no second request).
    if "opens" in old or "first_open_at" in old:
        return False
    message_events.on_message_opened((token.account_id, token.message_id), when)
    return True


@dataclass(frozen=True)
class ClickTarget:
    url: str  # "" for a trigger link that leads to the thank-you page
    index: int
    sent_at: datetime | None
    link_id: int | None = None  # a trigger link's number
    entity: str | None = None  # the email's CRM entity ("leads:123"), for one-time links
    locale: str | None = None  # the email's locale, for the thank-you page
    template_id: str | None = None  # the email's template: its counters count the first click
    campaign_id: str | None = None  # the email's campaign: a person's first click counts there


def resolve_click(token: tokens.TrackingToken) -> ClickTarget | None:
    """The stored target this click token was made for, or None (unknown message or link)."""
    try:
        message = MessageModel.get(
            token.account_id,
            token.message_id,
            attributes_to_get=[
                "tracked_links",
                "sent_at",
                "entity_type",
                "entity_id",
                "locale",
                "template_id",
                "campaign_id",
            ],
        )
    except DoesNotExist:
        return None
    links = list(message.tracked_links or [])
    if token.link_index >= len(links):
        return None
    url = str(links[token.link_index])
    if not token.matches(url):
        return None
    trigger_link = link_targets.parse_stored(url)
    if trigger_link is not None:
        entity = None
        if message.entity_type and message.entity_id is not None:
            entity = f"{message.entity_type}:{int(message.entity_id)}"
        number, target = trigger_link
        return ClickTarget(
            target or "",
            token.link_index,
            message.sent_at,
            number,
            entity,
            message.locale,
            message.template_id,
            message.campaign_id,
        )
    if not link_targets.trackable(url, ""):
        return None
    return ClickTarget(
        url,
        token.link_index,
        message.sent_at,
        template_id=message.template_id,
        campaign_id=message.campaign_id,
    )


def record_click(
    token: tokens.TrackingToken,
    target: ClickTarget,
    *,
    machine: bool,
    when: datetime | None = None,
    machine_class: str = "",
) -> None:
    """Count the click on its link and list it on the timeline (one request; past the cap,
    two). The message's first click on the link, by a person or by a machine, also counts on
    its template (template_stats)."""
    counters = MessageModel.machine_link_clicks if machine else MessageModel.link_clicks
    total = MessageModel.machine_clicks_total if machine else MessageModel.clicks_total
    slot = counters[target.index]
    now = when or SYSTEM_CLOCK.now()
    detail = target.url or "the thank-you page"
    if target.link_id is not None:
        detail = f"trigger link {target.link_id}: {detail}"
    if machine and machine_class:
        detail = f"{detail} ({machine_class})"
    try:
        old = timeline.counted(
            token.account_id,
            token.message_id,
            actions=[slot.set(slot + 1), total.add(1)],
            counter=total,
            note=timeline.entry(now, timeline.MACHINE_CLICK if machine else timeline.CLICKED, detail),
            condition=slot.exists(),
        )
    except UpdateError as exc:  # a counter list lost (a re-render shrank it): the redirect still goes
        logger.warning("click not counted", extra={"message_id": token.message_id, "error": str(exc)})
        return
    if timeline.old_element(old, counters.attr_name, target.index) == 0:
        if target.campaign_id and not machine:  # the campaign counts emails a person clicked in
            campaign_state.count_safely(
                MessageModel(token.account_id, token.message_id, campaign_id=target.campaign_id),
                "clicked",
                now,
            )
            campaign_state.count_link(
                token.account_id, target.campaign_id, token.url_hash.hex(), target.url, now
            )
        template_counters.on_first_click(
            token.account_id,
            token.message_id,
            key=token.url_hash.hex(),
            url=target.url,
            link_id=target.link_id,
            machine=machine,
            when=now,
            template_id=target.template_id,
        )

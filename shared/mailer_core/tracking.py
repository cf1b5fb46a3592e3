"""Open and click tracking: the body rewritten at send time, and the facts the track routes record.

At send time (`rewrite`, called by the send worker on the rendered HTML, before the MIME
build) every http(s) `<a href>` becomes `{MAILER_PUBLIC_BASE_URL}/c/{token}` and the open
pixel `<img src=".../o/{token}">` goes before `</body>`. Left alone: mailto:, tel:, anchors,
other schemes, links marked `data-mailer-notrack`, unsubscribe-like links and our own URLs.
The same URL twice is one tracked link. The plain-text alternative keeps the original links
(the send worker builds it from the HTML before the rewrite): it is what a reader sees.
The distinct targets are stored on the message (`tracked_links`), with per-link counters,
before SMTP; a click redirects only to a stored target whose hash its token carries.
Trigger links (trigger_link_urls) are tracked links too: their markers become `/c/{token}`
wherever they are, and their stored target says `triggerlink:N[:url]`; a person's click on
one runs the link's triggers (trigger_link_clicks), a machine's never does.

The track routes (`record_open`, `resolve_click`/`record_click`) write one fact on the
message with one conditional UpdateItem (the counter, and the event on the message's timeline
up to mailer_core.store.timeline's cap) and never call Kommo or SMTP: a person's first open calls
`message_events.on_message_opened`, which puts the "opened" event on the actions queue. Machine traffic
(mailer_core.machine_traffic) is counted apart and never sets `first_open_at`. A message's
first machine open and first click on each link also count on its template (template_stats).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core import link_targets, tracking_tokens
from mailer_core.base.clock import SYSTEM_CLOCK
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import message_events, template_counters
from mailer_core.rendering import trigger_link_urls
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel

if TYPE_CHECKING:
    from mailer_core.machine_traffic import Verdict

MAX_TRACKED_LINKS = 200
# A 1×1 transparent GIF: 43 bytes.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
assert len(PIXEL_GIF) == 43

_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.IGNORECASE)
_NOTRACK = re.compile(r"\bdata-mailer-notrack\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_UNSUBSCRIBE_LIKE = re.compile(r"unsubscribe|opt-?out", re.IGNORECASE)


@dataclass(frozen=True)
class TrackedHtml:
    html: str
    links: list[str] = field(default_factory=list)  # distinct targets, in order; index = token's
    trigger_urls: dict[int, str] = field(default_factory=dict)  # link number -> its click URL

    def fill(self, text: str) -> str:
        """Trigger link markers in another rendering of the body (the plain-text part) replaced
        by the same click URLs as in the HTML."""
        return trigger_link_urls.replace_markers(
            text, lambda n: self.trigger_urls.get(n, trigger_link_urls.NOWHERE)
        )


def enabled() -> bool:
    settings = get_settings()
    return bool(settings.tracking_secret and settings.public_base_url)


def _trackable(url: str, base: str) -> bool:
    lowered = url.strip().lower()
    if not lowered.startswith(("http://", "https://")):
        return False  # mailto:, tel:, #anchors, cid:, javascript: …
    if base and lowered.startswith(base.lower()):
        return False  # our own routes (pages, unsubscribe) are never wrapped twice
    return not _UNSUBSCRIBE_LIKE.search(lowered)


def rewrite(
    html: str,
    *,
    account_id: int,
    message_id: str,
    sent_at: int,
    track_opens: bool = True,
    trigger_links: Mapping[int, str | None] | None = None,
) -> TrackedHtml:
    """The body with tracked links (and the pixel unless `track_opens` is off). Without a
    configured secret and base URL the body is returned with trigger links pointing straight
    at their targets (and nothing is stored).

    `trigger_links` are the email's resolved trigger links (number -> target, None for the
    thank-you page; trigger_link_urls.resolve): their markers become click URLs first (so they
    are tracked even past `MAX_TRACKED_LINKS` or inside a `data-mailer-notrack` link); a
    marker of a link not among them becomes `#`."""
    targets = dict(trigger_links or {})
    if not enabled():
        return TrackedHtml(trigger_link_urls.direct(html, targets))
    base = get_settings().public_base_url
    links: list[str] = []
    index_of: dict[str, int] = {}
    trigger_urls: dict[int, str] = {}

    def trigger_url(number: int) -> str:
        if number not in targets:
            return trigger_link_urls.NOWHERE
        if number not in trigger_urls:
            stored = link_targets.stored_form(number, targets[number])
            index = index_of.setdefault(stored, len(links))
            if index == len(links):
                links.append(stored)
            token = tracking_tokens.click_token(account_id, message_id, sent_at, index, stored)
            trigger_urls[number] = f"{base}/c/{token}"
        return trigger_urls[number]

    html = trigger_link_urls.replace_markers(html, trigger_url)

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        if _NOTRACK.search(text):
            return text
        found = _HREF.search(text)
        if found is None:
            return text
        raw = next(g for g in found.groups()[1:] if g is not None)
        url = html_lib.unescape(raw).strip()
        if not _trackable(url, base):
            return text
        index = index_of.get(url)
        if index is None:
            if len(links) >= MAX_TRACKED_LINKS:
                return text
            index = index_of[url] = len(links)
            links.append(url)
        token = tracking_tokens.click_token(account_id, message_id, sent_at, index, url)
        return text[: found.start()] + f'{found.group(1)}"{base}/c/{token}"' + text[found.end() :]

    out = _A_TAG.sub(tag, html)
    if track_opens:
        token = tracking_tokens.open_token(account_id, message_id, sent_at)
        pixel = (
            f'<img src="{base}/o/{token}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;" />'
        )
        ends = list(_BODY_END.finditer(out))
        out = out[: ends[-1].start()] + pixel + out[ends[-1].start() :] if ends else out + pixel
    return TrackedHtml(out, links, trigger_urls)


def store_links(message: MessageModel, links: list[str]) -> None:
    """Before SMTP: the message's tracked targets and zeroed per-link counters (a retry that
    renders again replaces them; the emails of a failed attempt were never delivered)."""
    if not links:
        return
    zeros = [0] * len(links)
    actions = [
        MessageModel.tracked_links.set(links),  # type: ignore[arg-type]
        MessageModel.link_clicks.set(zeros),  # type: ignore[arg-type]
        MessageModel.machine_link_clicks.set(zeros),  # type: ignore[arg-type]
    ]
    _update(int(message.account_id), message.message_id, actions, MessageModel.message_id.exists(), "NONE")


def _update(
    account_id: int, message_id: str, actions: list[Any], condition: Any, values: str
) -> dict[str, Any]:
    """One UpdateItem on the message, answering only the attributes asked for (never the body)."""
    connection = MessageModel._get_connection()
    reply = connection.update_item(
        str(account_id), message_id, actions=actions, condition=condition, return_values=values
    )
    return dict(reply.get("Attributes") or {})


def record_open(
    token: tracking_tokens.TrackingToken, *, machine: bool, when: datetime, machine_class: str = ""
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


def resolve_click(token: tracking_tokens.TrackingToken) -> ClickTarget | None:
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
        )
    if not _trackable(url, ""):
        return None
    return ClickTarget(url, token.link_index, message.sent_at, template_id=message.template_id)


def record_click(
    token: tracking_tokens.TrackingToken,
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


def counters_view(message: MessageModel) -> dict[str, Any]:
    """Opens (people and machines apart), the first open, and clicks per link."""
    links = list(message.tracked_links or [])
    people: list[Any] = list(message.link_clicks or [])
    machines: list[Any] = list(message.machine_link_clicks or [])
    clicks: list[dict[str, Any]] = []
    for i, url in enumerate(links):
        entry: dict[str, Any] = {"url": url}
        trigger_link = link_targets.parse_stored(str(url))
        if trigger_link is not None:  # the target (None: the thank-you page) and the link's number
            entry = {"url": trigger_link[1], "trigger_link": trigger_link[0]}
        entry["people"] = int(people[i]) if i < len(people) else 0
        entry["machines"] = int(machines[i]) if i < len(machines) else 0
        clicks.append(entry)
    return {
        "opens": {"people": int(message.opens or 0), "machines": int(message.machine_opens or 0)},
        "first_open_at": message.first_open_at.isoformat() if message.first_open_at else None,
        "clicks": clicks,
    }


@dataclass(frozen=True)
class TrackRequest:
    """What the track routes know about one request."""

    token: str
    method: str
    user_agent: str
    source_ip: str
    headers: dict[str, str]
    now: datetime


def _classify(request: TrackRequest, token: tracking_tokens.TrackingToken, kind: str) -> Verdict:
    """The verdict on the request; a person's when the account's filter is off."""
    from mailer_core import machine_traffic

    verdict = machine_traffic.classify(
        kind=kind,
        method=request.method,
        user_agent=request.user_agent,
        source_ip=request.source_ip,
        headers=request.headers,
        seconds_since_send=request.now.timestamp() - token.issued_at,
    )
    if verdict.machine and not machine_traffic.filter_on(token.account_id):
        return machine_traffic.PERSON
    return verdict


def handle_open(request: TrackRequest) -> None:
    """The pixel route: record the open if the token is ours. Never raises: the pixel is the
    same answer whatever happens (a storage failure is logged)."""
    token = tracking_tokens.verify(request.token, kind=tracking_tokens.OPEN)
    if token is None:
        return
    try:
        verdict = _classify(request, token, "open")
        record_open(token, machine=verdict.machine, when=request.now, machine_class=verdict.label)
    except UpdateError as exc:
        if not is_condition_failure(exc):
            logger.exception("open not recorded", extra={"message_id": token.message_id})
    except Exception:
        logger.exception("open not recorded", extra={"message_id": token.message_id})


@dataclass(frozen=True)
class ClickAnswer:
    """What the click route answers: a redirect to `location`, or the HTML `page`."""

    location: str | None = None
    page: str | None = None


def handle_click(request: TrackRequest) -> ClickAnswer | None:
    """The click route: the stored target to redirect to (the click recorded; a trigger link's
    triggers run for a person), the thank-you page of a trigger link without a target, or None
    for a forged token or an unknown link (a plain "link not found" page)."""
    token = tracking_tokens.verify(request.token, kind=tracking_tokens.CLICK)
    if token is None:
        return None
    try:
        target = resolve_click(token)
    except Exception:
        logger.exception("click target not read", extra={"message_id": token.message_id})
        return None
    if target is None:
        return None
    verdict = _classify(request, token, "click")
    machine = verdict.machine
    try:
        record_click(token, target, machine=machine, when=request.now, machine_class=verdict.label)
    except Exception:
        logger.exception("click not recorded", extra={"message_id": token.message_id})
    if target.link_id is not None:
        return _trigger_link_click(request, token, target, machine=machine)
    return ClickAnswer(location=target.url)


def _trigger_link_click(
    request: TrackRequest, token: tracking_tokens.TrackingToken, target: ClickTarget, *, machine: bool
) -> ClickAnswer:
    """Run the link's triggers for a person's GET (never for a machine, never for HEAD, even
    with the account's machine filter off); then the redirect or the thank-you page."""
    from mailer_core.triggers import link_clicks as trigger_link_clicks

    if not machine and request.method.upper() == "GET" and target.link_id is not None:
        try:
            outcome = trigger_link_clicks.on_person_click(
                token.account_id, token.message_id, target.link_id, target.entity, request.now
            )
            logger.info("trigger link clicked", extra={"link_id": target.link_id, "outcome": outcome})
        except Exception:  # the person still gets where the link leads
            logger.exception("trigger link's triggers not announced", extra={"link_id": target.link_id})
    if target.url:
        return ClickAnswer(location=target.url)
    return ClickAnswer(
        page=trigger_link_clicks.thank_you_page(target.locale, request.headers.get("accept-language", ""))
    )

"""Open and click tracking: the body rewritten at send time, and the facts the track routes record.

At send time (`rewrite`, called by the send worker on the rendered HTML, before the MIME
build) every http(s) `<a href>` becomes `{MAILER_PUBLIC_BASE_URL}/c/{token}` and the open
pixel `<img src=".../o/{token}">` goes before `</body>`. Left alone: mailto:, tel:, anchors,
other schemes, links marked `data-mailer-notrack`, unsubscribe-like links and our own URLs.
The same URL twice is one tracked link. The plain-text alternative keeps the original links
(the send worker builds it from the HTML before the rewrite): it is what a reader sees.
The distinct targets are stored on the message (`tracked_links`), with per-link counters,
before SMTP; a click redirects only to a stored target whose hash its token carries.

The track routes (`record_open`, `resolve_click`/`record_click`) write one fact on the
message with one conditional UpdateItem and never call Kommo or SMTP: a person's first open
calls `hooks.on_message_opened`, which will put the triggers on a queue. Machine traffic
(mailer_core.machine_traffic) is counted apart and never sets `first_open_at`.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core import hooks, tracking_tokens
from mailer_core.logs import logger
from mailer_core.models import MessageModel
from mailer_core.settings import get_settings

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
    html: str, *, account_id: int, message_id: str, sent_at: int, track_opens: bool = True
) -> TrackedHtml:
    """The body with tracked links (and the pixel unless `track_opens` is off). Without a
    configured secret and base URL the body is returned unchanged (and nothing is stored)."""
    if not enabled():
        return TrackedHtml(html)
    base = get_settings().public_base_url
    links: list[str] = []
    index_of: dict[str, int] = {}

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
    return TrackedHtml(out, links)


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


def record_open(token: tracking_tokens.TrackingToken, *, machine: bool, when: datetime) -> bool:
    """Count the open; True for a person's first open (which ran the hook). One request:
    ADD opens and SET first_open_at = if_not_exists(…), answering the old values (UPDATED_OLD)."""
    exists = MessageModel.message_id.exists()
    if machine:
        _update(token.account_id, token.message_id, [MessageModel.machine_opens.add(1)], exists, "NONE")
        return False
    old = _update(
        token.account_id,
        token.message_id,
        [
            MessageModel.opens.add(1),
            MessageModel.first_open_at.set(MessageModel.first_open_at | when),
            MessageModel.last_open_at.set(when),
        ],
        exists,
        "UPDATED_OLD",
    )
    # `opens` and `first_open_at` are set together, by people's opens only: no old count means
    # this update set the first open (an atomic read of the old value, no second request).
    if "opens" in old or "first_open_at" in old:
        return False
    hooks.on_message_opened((token.account_id, token.message_id), when)
    return True


@dataclass(frozen=True)
class ClickTarget:
    url: str
    index: int
    sent_at: datetime | None


def resolve_click(token: tracking_tokens.TrackingToken) -> ClickTarget | None:
    """The stored target this click token was made for, or None (unknown message or link)."""
    try:
        message = MessageModel.get(
            token.account_id,
            token.message_id,
            attributes_to_get=["tracked_links", "sent_at"],
        )
    except DoesNotExist:
        return None
    links = list(message.tracked_links or [])
    if token.link_index >= len(links):
        return None
    url = str(links[token.link_index])
    if not token.matches(url) or not _trackable(url, ""):
        return None
    return ClickTarget(url, token.link_index, message.sent_at)


def record_click(token: tracking_tokens.TrackingToken, target: ClickTarget, *, machine: bool) -> None:
    counters = MessageModel.machine_link_clicks if machine else MessageModel.link_clicks
    slot = counters[target.index]
    try:
        _update(
            token.account_id,
            token.message_id,
            [slot.set(slot + 1)],
            MessageModel.message_id.exists() & slot.exists(),
            "NONE",
        )
    except UpdateError as exc:  # a counter list lost (a re-render shrank it): the redirect still goes
        logger.warning("click not counted", extra={"message_id": token.message_id, "error": str(exc)})


def counters_view(message: MessageModel) -> dict[str, Any]:
    """Opens (people and machines apart), the first open, and clicks per link."""
    links = list(message.tracked_links or [])
    people: list[Any] = list(message.link_clicks or [])
    machines: list[Any] = list(message.machine_link_clicks or [])
    return {
        "opens": {"people": int(message.opens or 0), "machines": int(message.machine_opens or 0)},
        "first_open_at": message.first_open_at.isoformat() if message.first_open_at else None,
        "clicks": [
            {
                "url": url,
                "people": int(people[i]) if i < len(people) else 0,
                "machines": int(machines[i]) if i < len(machines) else 0,
            }
            for i, url in enumerate(links)
        ],
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


def _verdict(request: TrackRequest, token: tracking_tokens.TrackingToken, kind: str) -> bool:
    """True for a machine event (and the account's filter is on)."""
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
        return False
    return verdict.machine


def handle_open(request: TrackRequest) -> None:
    """The pixel route: record the open if the token is ours. Never raises: the pixel is the
    same answer whatever happens (a storage failure is logged)."""
    token = tracking_tokens.verify(request.token, kind=tracking_tokens.OPEN)
    if token is None:
        return
    try:
        record_open(token, machine=_verdict(request, token, "open"), when=request.now)
    except UpdateError as exc:
        if "ConditionalCheckFailed" not in str(exc):
            logger.exception("open not recorded", extra={"message_id": token.message_id})
    except Exception:
        logger.exception("open not recorded", extra={"message_id": token.message_id})


def handle_click(request: TrackRequest) -> str | None:
    """The click route: the stored target to redirect to (the click recorded), or None for a
    forged token or an unknown link (a plain "link not found" page)."""
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
    try:
        record_click(token, target, machine=_verdict(request, token, "click"))
    except Exception:
        logger.exception("click not recorded", extra={"message_id": token.message_id})
    return target.url

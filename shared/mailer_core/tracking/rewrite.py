"""Tracking at send time: the body's links and the open pixel rewritten, the targets stored.

Every http(s) `<a href>` becomes `{MAILER_PUBLIC_BASE_URL}/c/{token}` and the open pixel
`<img src=".../o/{token}">` goes before `</body>`. Left alone: mailto:, tel:, anchors,
other schemes, links marked `data-mailer-notrack`, unsubscribe-like links and our own URLs.
The same URL twice is one tracked link. The plain-text alternative keeps the original links
(the send worker builds it from the HTML before the rewrite): it is what a reader sees.
The distinct targets are stored on the message (`tracked_links`), with per-link counters,
before SMTP; a click redirects only to a stored target whose hash its token carries.
Trigger links (`rendering.trigger_link_urls`) are tracked links too: their markers become
`/c/{token}` wherever they are, and their stored target says `triggerlink:N[:url]`
(`tracking.link_targets`).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from mailer_core.adapters import secrets
from mailer_core.base.config import get_settings
from mailer_core.rendering import trigger_link_urls
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel
from mailer_core.tracking import link_targets, tokens
from mailer_core.tracking.record import update_message

MAX_TRACKED_LINKS = 200


_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)


_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.IGNORECASE)


_NOTRACK = re.compile(r"\bdata-mailer-notrack\b", re.IGNORECASE)


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


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
    return bool(secrets.tracking_configured() and settings.public_base_url)


# Many branches on purpose: one branch per kind of link left alone.
def rewrite(  # noqa: C901
    html: str,
    *,
    account_id: int,
    message_id: str,
    sent_at: int,
    track_opens: bool = True,
    trigger_links: Mapping[int, str | None] | None = None,
    known_links: Sequence[str] = (),
) -> TrackedHtml:
    """The body with tracked links (and the pixel unless `track_opens` is off). Without a
    configured secret and base URL the body is returned with trigger links pointing straight
    at their targets (and nothing is stored).

    `trigger_links` are the email's resolved trigger links (number -> target, None for the
    thank-you page; trigger_link_urls.resolve): their markers become click URLs first (so they
    are tracked even past `MAX_TRACKED_LINKS` or inside a `data-mailer-notrack` link); a
    marker of a link not among them becomes `#`. `known_links` are the message's tracked links
    already (a public page of the email: its links are added after them, `append_links`)."""
    targets = dict(trigger_links or {})
    if not enabled():
        return TrackedHtml(trigger_link_urls.direct(html, targets))
    base = get_settings().public_base_url
    links: list[str] = list(known_links)
    index_of: dict[str, int] = {url: index for index, url in reversed(list(enumerate(links)))}
    trigger_urls: dict[int, str] = {}

    def trigger_url(number: int) -> str:
        if number not in targets:
            return trigger_link_urls.NOWHERE
        if number not in trigger_urls:
            stored = link_targets.stored_form(number, targets[number])
            index = index_of.setdefault(stored, len(links))
            if index == len(links):
                links.append(stored)
            token = tokens.click_token(account_id, message_id, sent_at, index, stored)
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
        if not link_targets.trackable(url, base):
            return text
        index = index_of.get(url)
        if index is None:
            if len(links) >= MAX_TRACKED_LINKS + len(known_links):
                return text
            index = index_of[url] = len(links)
            links.append(url)
        token = tokens.click_token(account_id, message_id, sent_at, index, url)
        return text[: found.start()] + f'{found.group(1)}"{base}/c/{token}"' + text[found.end() :]

    out = _A_TAG.sub(tag, html)
    if track_opens:
        token = tokens.open_token(account_id, message_id, sent_at)
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
    update_message(
        int(message.account_id), message.message_id, actions, MessageModel.message_id.exists(), "NONE"
    )


def append_links(message: MessageModel, known: int, links: list[str]) -> bool:
    """A public page's new tracked links added after the message's `known` ones, with zeroed
    counters; False when another page added links meanwhile (the caller leaves the page's
    links untracked then, rather than give two targets one index)."""
    new = links[known:]
    if not new:
        return True
    zeros = [0] * len(new)
    if known:
        condition = size(MessageModel.tracked_links) == known
        actions = [
            MessageModel.tracked_links.set(MessageModel.tracked_links.append(new)),  # type: ignore[arg-type]
            MessageModel.link_clicks.set(MessageModel.link_clicks.append(zeros)),  # type: ignore[arg-type]
            MessageModel.machine_link_clicks.set(MessageModel.machine_link_clicks.append(zeros)),  # type: ignore[arg-type]
        ]
    else:
        condition = MessageModel.message_id.exists() & MessageModel.tracked_links.does_not_exist()
        actions = [
            MessageModel.tracked_links.set(new),  # type: ignore[arg-type]
            MessageModel.link_clicks.set(zeros),  # type: ignore[arg-type]
            MessageModel.machine_link_clicks.set(zeros),  # type: ignore[arg-type]
        ]
    try:
        update_message(int(message.account_id), message.message_id, actions, condition, "NONE")
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True

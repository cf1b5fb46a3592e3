"""What a trigger link becomes in an email, and what its tracked link stores.

1. Rendering: `{triggerlink:8}` and `{{ triggerlink(8) }}` render as the marker
   `https://mailer.invalid/triggerlink/8` (rendering.py; `.invalid` never resolves).
2. Resolving (`resolve`, called by personalization.render_email with the email's own
   context): the markers of the rendered body name the links; they are read in one BatchGet
   and each link's target is rendered with the same CRM data as the body. A variable target
   (`{{ lead.cf[560001] }}`) is therefore filled at SEND time: a click never needs Kommo.
   A target that renders empty, or to something that is not a web address, leads to the
   thank-you page. A link that does not exist renders as `#` and the send writes it into the
   message's history (`note_unknown`).
3. Sending: tracking/rewrite replaces every marker (in an href or anywhere else, even in a
   link marked `data-mailer-notrack`: a trigger link only works through us) with a click URL
   `/c/{token}` whose stored target on the message is `stored_form(N, target)`:
   `triggerlink:8` (the thank-you page) or `triggerlink:8:https://…`. Without tracking
   configured, and in the preview, markers become the target itself (`direct`).
4. Clicking: tracking/record recognises the stored form (tracking/link_targets) and
   triggers/link_clicks decides whether the link's triggers run.

No Jinja2 here: the targets are rendered by the caller's `render_target`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from mailer_core.base.web_addresses import web_address
from mailer_core.store import timeline
from mailer_core.store.models import LinkModel, MessageModel

MARKER_PREFIX = "https://mailer.invalid/triggerlink/"  # rendering.PLACEHOLDER_BASE + "/triggerlink/"
_MARKER = re.compile(re.escape(MARKER_PREFIX) + r"(\d{1,9})(?!\d)")
NOWHERE = "#"  # what a link that does not exist renders as


def marker(link_id: int) -> str:
    return f"{MARKER_PREFIX}{int(link_id)}"


def marker_ids(*texts: str | None) -> list[int]:
    """The trigger link numbers whose markers appear in rendered texts, each once, in order."""
    found: dict[int, None] = {}
    for text in texts:
        for match in _MARKER.finditer(text or ""):
            found.setdefault(int(match.group(1)), None)
    return list(found)


def replace_markers(text: str, url_for: Callable[[int], str]) -> str:
    if MARKER_PREFIX not in text:
        return text
    return _MARKER.sub(lambda m: url_for(int(m.group(1))), text)


def direct(text: str, targets: Mapping[int, str | None]) -> str:
    """Markers replaced by the link's own target (the preview; sending without tracking):
    `#` for a link that does not exist or that leads to the thank-you page."""
    return replace_markers(text, lambda n: targets.get(n) or NOWHERE)


@dataclass(frozen=True)
class Resolved:
    """The trigger links of one rendered email: number → target (None: the thank-you page),
    the numbers that name no link, and the variables the targets missed."""

    targets: dict[int, str | None]
    unknown: tuple[int, ...] = ()
    missing: tuple[str, ...] = ()


NONE = Resolved({})


def resolve(
    rendered_texts: Iterable[str],
    *,
    load: Callable[[list[int]], Mapping[int, LinkModel]],
    render_target: Callable[[int, str], tuple[str, tuple[str, ...]]],
) -> Resolved:
    """Resolve the links whose markers appear in `rendered_texts`; `render_target(n, source)`
    renders a target with the email's context and answers (text, missing variables)."""
    ids = marker_ids(*rendered_texts)
    if not ids:
        return NONE
    links = load(ids)
    targets: dict[int, str | None] = {}
    missing: list[str] = []
    for number in ids:
        link = links.get(number)
        if link is None:
            continue
        source = (link.target or "").strip()
        if source and "{" in source:
            text, misses = render_target(number, source)
            missing.extend(misses)
            targets[number] = web_address(text)
        else:
            targets[number] = web_address(source) if source else None
    unknown = tuple(n for n in ids if n not in links)
    missing.extend(f"triggerlink({n})" for n in unknown)
    return Resolved(targets, unknown, tuple(dict.fromkeys(missing)))


def load_links(account_id: int, ids: list[int]) -> dict[int, LinkModel]:
    """The account's links with these numbers (one BatchGet); missing ones are left out."""
    keys = [(int(account_id), int(n)) for n in dict.fromkeys(ids)]
    return {int(link.link_id): link for link in LinkModel.batch_get(keys)} if keys else {}


def note_unknown(message: MessageModel, unknown: Iterable[int], when: datetime) -> None:
    """Write into the message's history that trigger links named in it do not exist."""

    numbers = [int(n) for n in unknown]
    if not numbers:
        return
    listed = ", ".join(f"{{triggerlink:{n}}}" for n in numbers)
    timeline.note(message, when, "trigger_link_missing", f"no such trigger link: {listed}; rendered as #")

"""What a tracked trigger link stores as its target on the message, and how a click reads it.

`triggerlink:8` (the thank-you page) or `triggerlink:8:https://…` (the link's target resolved
at send time, so a click never needs Kommo). Written when an email's links are rewritten,
read by the click route; no Jinja2, no Kommo here.
"""

from __future__ import annotations

import re

from mailer_core.base.web_addresses import web_address

_UNSUBSCRIBE_LIKE = re.compile(r"unsubscribe|opt-?out", re.IGNORECASE)

STORED_PREFIX = "triggerlink:"


def stored_form(link_id: int, target: str | None) -> str:
    return f"{STORED_PREFIX}{int(link_id)}" + (f":{target}" if target else "")


def parse_stored(text: str) -> tuple[int, str | None] | None:
    """(link number, target or None) for a stored trigger link; None for any other stored URL
    (and for a stored form whose target is not a web address: never an open redirect)."""
    if not text.startswith(STORED_PREFIX):
        return None
    number, _, target = text[len(STORED_PREFIX) :].partition(":")
    if not number.isdigit():
        return None
    if target and web_address(target) != target:
        return None
    return int(number), target or None


def trackable(url: str, base: str) -> bool:
    """Whether a link is wrapped for click tracking (`base`: our own public URL, never wrapped)."""
    lowered = url.strip().lower()
    if not lowered.startswith(("http://", "https://")):
        return False  # mailto:, tel:, #anchors, cid:, javascript: …
    if base and lowered.startswith(base.lower()):
        return False  # our own routes (pages, unsubscribe) are never wrapped twice
    return not _UNSUBSCRIBE_LIKE.search(lowered)

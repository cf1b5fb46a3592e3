"""A campaign's links as it asks for them: UTM parameters (004's conversion block) added, and
clicks left untracked when its `track_clicks` option is off.

Added once, to the frozen body at the start: every absolute http(s) link in an `href` gets the
campaign's `utm_*` parameters it does not already carry. Links made of variables or markers
(`{{ … }}`, `{triggerlink:N}`, `{web:N}`), mail and phone links and anchors are left alone.
Tracking then wraps the links as usual, so the redirect leads to the URL with the parameters.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_ANCHOR = re.compile(r"<a(?=[\s>])", re.IGNORECASE)


def without_click_tracking(source: str) -> str:
    """Every link marked `data-mailer-notrack`: tracking leaves it as it is (trigger links,
    which exist to be clicked through Mailer, are tracked all the same)."""
    return _ANCHOR.sub("<a data-mailer-notrack", source)


def with_utm(source: str, utm: dict[str, str]) -> str:
    if not utm:
        return source

    def replace(match: re.Match[str]) -> str:
        prefix, quote, value = match.groups()
        return f"{prefix}{quote}{_tagged(value, utm)}{quote}"

    return _HREF.sub(replace, source)


def _tagged(value: str, utm: dict[str, str]) -> str:
    url = html.unescape(value).strip()
    if "{" in url or "}" in url or not url.lower().startswith(("http://", "https://")):
        return value
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(name, text) for name, text in utm.items() if name not in present]
    return html.escape(urlunsplit(parts._replace(query=urlencode(query))), quote=True)

"""What `{web:N}`, `{formlink}` and `{weblink}` become, from the template to the sent email.

1. Rendering: `{web:1028}` / `{{ web(1028) }}`, `{formlink}` / `{{ formlink() }}` and
   `{weblink}` / `{{ weblink() }}` render as the markers `https://mailer.invalid/web/1028`,
   `https://mailer.invalid/formlink` and `https://mailer.invalid/weblink` (sandbox;
   `.invalid` never resolves).
2. Saving: a template, trigger or page that names a web page that does not exist is refused
   (`source_page_numbers` finds the numbers; the caller looks them up); the preview lists
   any such page among its missing values.
3. Sending, a trigger's text, a page: `fill` replaces every marker, and the legacy spelling
   in a text that was never rendered (a trigger's field value `{web:1028}`), with the signed
   URL of that email's page, form or web version (pages.links). A marker that cannot be
   filled is never sent as it is: the caller fails the email with the reason.

No Jinja2 here; the pages are read with one BatchGet (`load_pages`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from mailer_core.base.errors import InvalidInput
from mailer_core.store.models import WebPageModel

PLACEHOLDER_BASE = "https://mailer.invalid"  # rendering.sandbox.PLACEHOLDER_BASE
WEB_PREFIX = PLACEHOLDER_BASE + "/web/"
FORMLINK = PLACEHOLDER_BASE + "/formlink"
WEBLINK = PLACEHOLDER_BASE + "/weblink"

_MARKERS = re.compile(
    re.escape(PLACEHOLDER_BASE) + r"/(?:web/(?P<page>\d{1,9})(?!\d)|(?P<kind>formlink|weblink)(?![\w/]))"
)
FIRST_NUMBER = 1001  # page numbers start here; row 0 of an account holds its page domains

# Never rendered (a trigger's text, a field value): the legacy spelling.
_LEGACY = re.compile(r"\{(?:web:(?P<page>\d{1,9})|(?P<kind>formlink|weblink))\}")
# In a template's source: either spelling.
_SOURCE_PAGE = re.compile(r"\{web:(\d{1,9})\}|\bweb\(\s*(\d{1,9})\s*\)")


def has_markers(*texts: str | None, legacy: bool = True) -> bool:
    return any(text and (_MARKERS.search(text) or (legacy and _LEGACY.search(text))) for text in texts)


def page_numbers(*texts: str | None, legacy: bool = True) -> list[int]:
    """The page numbers whose markers (or legacy placeholders) appear, each once, in order."""
    found: dict[int, None] = {}
    for text in texts:
        for pattern in (_MARKERS, _LEGACY) if legacy else (_MARKERS,):
            for match in pattern.finditer(text or ""):
                if match.group("page"):
                    found.setdefault(int(match.group("page")), None)
    return list(found)


def source_page_numbers(*sources: str | None) -> list[int]:
    """The page numbers a template's source names (`{web:N}` or `web(N)`), each once."""
    found: dict[int, None] = {}
    for source in sources:
        for match in _SOURCE_PAGE.finditer(source or ""):
            found.setdefault(int(match.group(1) or match.group(2)), None)
    return list(found)


def fill(
    text: str,
    *,
    page_url: Callable[[int], str],
    form_url: Callable[[], str],
    web_url: Callable[[], str],
    legacy: bool = True,
) -> str:
    """`text` with every marker (and legacy placeholder, unless `legacy` is off: a rendered
    body, whose CRM data is never read as a placeholder) replaced by its URL (each callable is
    asked once per occurrence; it raises when it cannot make the URL)."""
    if "mailer.invalid" not in text and "{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group("page"):
            return page_url(int(match.group("page")))
        return form_url() if match.group("kind") == "formlink" else web_url()

    text = _MARKERS.sub(replace, text)
    return _LEGACY.sub(replace, text) if legacy else text


def load_pages(account_id: int, numbers: Iterable[int]) -> dict[int, WebPageModel]:
    """The account's pages with these numbers (one BatchGet); missing ones are left out."""
    keys = [(int(account_id), int(n)) for n in dict.fromkeys(numbers) if int(n) >= FIRST_NUMBER]
    return {int(page.page_id): page for page in WebPageModel.batch_get(keys)} if keys else {}


def unknown_pages(account_id: int, *sources: str | None) -> list[int]:
    """The page numbers the sources name (`{web:N}`, `web(N)`) that are not the account's pages."""
    numbers = source_page_numbers(*sources)
    if not numbers:
        return []
    found = load_pages(account_id, numbers)
    return [n for n in numbers if n not in found]


def refuse_unknown_pages(account_id: int, source: str | None, *, field: str) -> None:
    """InvalidInput naming the field when `source` names a web page the account does not have."""
    unknown = unknown_pages(account_id, source)
    if unknown:
        listed = ", ".join(f"{{web:{n}}}" for n in unknown)
        raise InvalidInput(f"names a web page that does not exist: {listed}", field=field)

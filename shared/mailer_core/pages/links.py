"""The signed URLs of an email's web pages, web version and form, and the texts they fill.

`/p/{token}/{title}` is web page N for the email's CRM entity (the token names the account,
the message, the page and the time it was issued, from which the page's lifetime counts;
the title is the page's readable tail and is not checked); `/w/{token}` is the email's web
version; `/f/{token}` its forms' action. Tokens are HMAC-signed (tracking.tokens): a URL
cannot be guessed or altered. They need MAILER_TRACKING_SECRET and MAILER_PUBLIC_BASE_URL;
without them, or for a page that does not exist, `Filler` raises `PageUnavailable` (a
Conflict: the send fails the email with the reason; nothing goes out as a dead link).
"""

from __future__ import annotations

import re
import unicodedata

from mailer_core.adapters import secrets
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Conflict
from mailer_core.rendering import page_urls
from mailer_core.store.models import WebPageModel
from mailer_core.tracking import tokens

DOMAINS_ROW = 0
FIRST_NUMBER = page_urls.FIRST_NUMBER
load_pages = page_urls.load_pages


class PageUnavailable(Conflict):
    """A page, form or web-version URL that cannot be made; the text is not used."""

    code = "web_page_unavailable"


def slug(title: str) -> str:
    """The readable tail of a page's URL: lower-case letters, digits and dashes."""
    text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _base() -> str:
    settings = get_settings()
    if not (secrets.tracking_configured() and settings.public_base_url):
        raise PageUnavailable(
            "web pages and forms need MAILER_PUBLIC_BASE_URL and MAILER_TRACKING_SECRET; "
            "the text was not used so that no dead link goes out"
        )
    return settings.public_base_url


def page_url(account_id: int, message_id: str, issued_at: int, page: WebPageModel) -> str:
    base = _base()
    if page.domain and get_settings().pages_on_custom_domains:
        base = f"https://{page.domain}"
    token = tokens.page_token(account_id, message_id, issued_at, int(page.page_id))
    tail = slug(page.title or "")
    return f"{base}/p/{token}" + (f"/{tail}" if tail else "")


def web_version_url(account_id: int, message_id: str, issued_at: int) -> str:
    return f"{_base()}/w/{tokens.web_version_token(account_id, message_id, issued_at)}"


def form_url(account_id: int, message_id: str, issued_at: int) -> str:
    return f"{_base()}/f/{tokens.form_token(account_id, message_id, issued_at)}"


class Filler:
    """Fills the page, form and web-version URLs of one email into its texts (the send, a
    trigger's text, a page); the pages are read once, on first need."""

    def __init__(self, account_id: int, message_id: str, issued_at: int) -> None:
        self.account_id = int(account_id)
        self.message_id = message_id
        self.issued_at = int(issued_at)
        self._pages: dict[int, WebPageModel] | None = None

    def _page(self, number: int, wanted: list[int]) -> str:
        if self._pages is None or number not in self._pages:
            self._pages = {**(self._pages or {}), **load_pages(self.account_id, wanted)}
        page = self._pages.get(number)
        if page is None:
            raise PageUnavailable(f"the web page {{web:{number}}} does not exist")
        return page_url(self.account_id, self.message_id, self.issued_at, page)

    def fill(self, text: str | None, *, legacy: bool = True) -> str:
        """`legacy`: also `{web:N}` as written (a trigger's text); off for a rendered body."""
        if not text or not page_urls.has_markers(text, legacy=legacy):
            return text or ""
        wanted = page_urls.page_numbers(text, legacy=legacy)
        return page_urls.fill(
            text,
            legacy=legacy,
            page_url=lambda n: self._page(n, wanted),
            form_url=lambda: form_url(self.account_id, self.message_id, self.issued_at),
            web_url=lambda: web_version_url(self.account_id, self.message_id, self.issued_at),
        )

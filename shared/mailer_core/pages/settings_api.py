"""`/v1/web-pages`: the account's public web pages and their domains (docs/pages.md).

A page is a template of its own: HTML with the variables, trigger links and forms of an
email; its header (the browser tab's title), title (the readable tail of its URL), lifetime in
days, cache time in minutes, domain (one of the account's at most 3), on-open trigger, Yandex
Metrika counter and Google Tag Manager id. Its number N (from 1001, one atomic increment on the
account's row 0, so concurrent creates never share one) is what texts name: `{web:N}`.
Anyone of the account reads and writes pages; an administrator sets the domains. A page
that another page, template or trigger names can still be deleted: those texts are then
refused when sent or saved, never sent as a dead link.
"""

from __future__ import annotations

import re
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Forbidden, InvalidInput, NotFound
from mailer_core.pages.links import DOMAINS_ROW, FIRST_NUMBER, slug
from mailer_core.rendering import page_urls
from mailer_core.rendering.source_checks import validate_source
from mailer_core.store.models import TriggerModel, WebPageModel

MAX_DOMAINS = 3
MAX_PAGE_NUMBER = 65535
MAX_HTML_CHARS = 512 * 1024
FIELDS = (
    "name",
    "header",
    "title",
    "html",
    "lifetime_days",
    "cache_minutes",
    "domain",
    "trigger_id",
    "metrika_id",
    "gtm_id",
)
_METRIKA = re.compile(r"\d{1,12}")
_GTM = re.compile(r"GTM-[A-Z0-9]{4,12}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def public_view(page: WebPageModel) -> dict[str, Any]:
    return {
        "page_id": int(page.page_id),
        "placeholder": f"{{web:{int(page.page_id)}}}",
        "name": page.name,
        "header": page.header,
        "title": page.title,
        "html": page.html,
        "lifetime_days": int(page.lifetime_days),
        "cache_minutes": int(page.cache_minutes),
        "domain": page.domain,
        "trigger_id": page.trigger_id,
        "metrika_id": page.metrika_id,
        "gtm_id": page.gtm_id,
        "updated_at": page.updated_at.isoformat() if page.updated_at else None,
    }


def _domains(account_id: int) -> list[str]:
    try:
        return [str(d) for d in WebPageModel.get(int(account_id), DOMAINS_ROW).domains or []]
    except DoesNotExist:
        return []


def _optional(data: dict[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        raise InvalidInput(f"must be {what}", field=name)
    return value.strip()


# Many branches on purpose: one per setting of a page.
def _validated(caller: Caller, payload: Any, *, creating: bool, number: int | None) -> dict[str, Any]:  # noqa: C901
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    out: dict[str, Any] = {}
    if creating or "name" in data:
        out["name"] = validation.text(data, "name", required=True, max_length=200, allow_empty=False).strip()
    if creating or "header" in data:
        out["header"] = validation.text(data, "header", max_length=200).strip()
    if creating or "title" in data:
        title = validation.text(data, "title", max_length=60).strip()
        if title and slug(title) != title:
            raise InvalidInput("must be lower-case letters, digits and dashes (e.g. index)", field="title")
        out["title"] = title
    if creating or "html" in data:
        html = validation.text(data, "html", max_length=MAX_HTML_CHARS)
        validate_source(html, field="html", html=True)
        unknown = [n for n in page_urls.unknown_pages(caller.account_id, html) if n != number]
        if unknown:
            listed = ", ".join(f"{{web:{n}}}" for n in unknown)
            raise InvalidInput(f"names a web page that does not exist: {listed}", field="html")
        out["html"] = html
    if creating or "lifetime_days" in data:
        out["lifetime_days"] = validation.integer(data, "lifetime_days", default=30, minimum=1, maximum=3650)
    if creating or "cache_minutes" in data:
        out["cache_minutes"] = validation.integer(data, "cache_minutes", default=60, minimum=0, maximum=10080)
    if "domain" in data:
        domain = data.get("domain") or None
        if domain is not None and domain not in _domains(caller.account_id):
            raise InvalidInput("must be one of the account's page domains (or null)", field="domain")
        out["domain"] = domain
    if "trigger_id" in data:
        trigger_id = data.get("trigger_id") or None
        if trigger_id is not None:
            validation.identifier(trigger_id, "trigger_id")
            try:
                TriggerModel.get(caller.account_id, trigger_id)
            except DoesNotExist:
                raise InvalidInput("no such trigger", field="trigger_id") from None
        out["trigger_id"] = trigger_id
    if creating or "metrika_id" in data:
        out["metrika_id"] = _optional(data, "metrika_id", _METRIKA, "a Yandex Metrika counter number")
    if creating or "gtm_id" in data:
        out["gtm_id"] = _optional(data, "gtm_id", _GTM, "a Google Tag Manager id (GTM-XXXXXXX)")
    return out


def _next_number(account_id: int) -> int:
    """The account's next page number: one atomic UpdateItem on row 0 (SET n = n + 1, from 1001)."""
    connection = WebPageModel._get_connection()
    reply = connection.update_item(
        str(int(account_id)),
        str(DOMAINS_ROW),
        actions=[WebPageModel.last_number.set((WebPageModel.last_number | FIRST_NUMBER - 1) + 1)],
        return_values="UPDATED_NEW",
    )
    return int(reply["Attributes"]["last_number"]["N"])


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    fields = _validated(caller, payload, creating=True, number=None)
    number = _next_number(caller.account_id)
    if number > MAX_PAGE_NUMBER:
        raise InvalidInput("the account has used every page number", field=None)
    now = clock.now()
    page = WebPageModel(
        caller.account_id, number, user_id=caller.user_id, created_at=now, updated_at=now, **fields
    )
    page.save(condition=WebPageModel.page_id.does_not_exist())
    return public_view(page)


def _load(caller: Caller, page_id: Any) -> WebPageModel:
    try:
        number = int(page_id)
    except (TypeError, ValueError):
        raise NotFound("no such web page", field="page_id") from None
    if number < FIRST_NUMBER:
        raise NotFound("no such web page", field="page_id")
    try:
        return WebPageModel.get(caller.account_id, number)
    except DoesNotExist:
        raise NotFound("no such web page", field="page_id") from None


def get(caller: Caller, page_id: Any) -> dict[str, Any]:
    return public_view(_load(caller, page_id))


def list_for(caller: Caller) -> dict[str, Any]:
    pages = [
        public_view(p) for p in WebPageModel.query(caller.account_id, WebPageModel.page_id >= FIRST_NUMBER)
    ]
    return {"items": pages, "domains": _domains(caller.account_id)}


def update(caller: Caller, page_id: Any, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    page = _load(caller, page_id)
    fields = _validated(caller, payload, creating=False, number=int(page.page_id))
    for name, value in fields.items():
        setattr(page, name, value)
    page.updated_at = clock.now()
    page.save(condition=WebPageModel.page_id.exists())
    return public_view(page)


def delete(caller: Caller, page_id: Any) -> None:
    page = _load(caller, page_id)
    page.delete()


def domains(caller: Caller) -> dict[str, Any]:
    return {"domains": _domains(caller.account_id)}


def set_domains(caller: Caller, payload: Any) -> dict[str, Any]:
    """At most 3 names: a subdomain label (`promo`) or a whole host (`pages.example.com`)."""
    if not caller.is_admin:
        raise Forbidden("only Mailer administrators set the page domains", reason="admin_only")
    data = validation.require_object(payload)
    validation.reject_unknown(data, ("domains",))
    value = data.get("domains")
    if not isinstance(value, list) or len(value) > MAX_DOMAINS:
        raise InvalidInput(f"must be a list of at most {MAX_DOMAINS} domains", field="domains")
    chosen: list[str] = []
    for index, item in enumerate(value):
        name = item.strip().lower() if isinstance(item, str) else ""
        try:
            host = validation.hostname({"d": name}, "d") if "." in name else ""
        except InvalidInput:
            host = ""
        if not (host or _LABEL.fullmatch(name)):
            raise InvalidInput("must be a subdomain label or a host name", field=f"domains.{index}")
        if name not in chosen:
            chosen.append(name)
    connection = WebPageModel._get_connection()
    connection.update_item(
        str(caller.account_id),
        str(DOMAINS_ROW),
        actions=[WebPageModel.domains.set(chosen)],  # type: ignore[arg-type]
        return_values="NONE",
    )
    return {"domains": chosen}

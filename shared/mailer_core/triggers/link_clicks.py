"""A person's click on a trigger link: run its triggers (once, for a one-time link), and the
thank-you page of a link without a target.

Called by tracking.handle_click for a person's GET only (machine traffic and HEAD never get
here: they are redirected and counted, and run nothing). It reads the link (one GetItem: the
triggers as they are now) and then:

- a one-time link: one conditional PutItem of the fact "once#<N>#<entity>" (the email's CRM
  entity, e.g. "leads:123", or "msg:<message id>" for an email without one) decides the single
  winner among any number of concurrent clicks, from any of the entity's emails and contacts;
  only the winner announces the triggers (announce.announce_link with no click id, so the
  run ids are the message's own and a redelivered job runs once). If announcing fails, the
  fact is taken back so that a later click can try again;
- any other link (repeatable): a click announces its triggers with a fresh click id, at most
  once per `REPEAT_EVERY` and `REPEATS_PER_DAY` times a UTC day for one link and one entity
  (a token bucket per link and entity: store.rate_buckets, one conditional UpdateItem). A
  person who clicks again and again, or a loop of requests with a browser's user agent, gets
  the redirect every time but no more Kommo tasks or notes than that.

Nothing here calls Kommo: the actions function runs the triggers.
"""

from __future__ import annotations

import html
from datetime import datetime

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.base.logs import logger
from mailer_core.events import announce
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets
from mailer_core.store.models import AutomationFactModel, LinkModel

REPEAT_EVERY = 600  # seconds between two runs of a repeatable link for one entity
REPEATS_PER_DAY = 20

LANGUAGES = ("en", "ru", "es", "pt")
_THANKS = {
    "en": ("Thank you!", "You can close this page now."),
    "ru": ("Спасибо!", "Эту страницу можно закрыть."),
    "es": ("¡Gracias!", "Ya puede cerrar esta página."),
    "pt": ("Obrigado!", "Você já pode fechar esta página."),
}


def once_key(link_id: int, entity: str | None, message_id: str) -> str:
    return f"once#{int(link_id)}#{entity}" if entity else f"once#{int(link_id)}#msg:{message_id}"


def _repeat_allowed(
    account_id: int, link_id: int, entity: str | None, message_id: str, when: datetime
) -> bool:
    """Whether a repeatable link may run for this entity now (its bucket grants a token)."""
    bucket = f"link#{int(account_id)}#{once_key(link_id, entity, message_id).removeprefix('once#')}"
    decision = rate_buckets.take(
        bucket, rate_per_second=1 / REPEAT_EVERY, daily_cap=REPEATS_PER_DAY, now=when.timestamp()
    )
    return decision.allowed


def _click_id(when: datetime) -> str:
    from ulid import ULID

    return str(ULID.from_timestamp(when.timestamp()))


def on_person_click(
    account_id: int, message_id: str, link_id: int, entity: str | None, when: datetime
) -> str:
    """Run the link's triggers for this click if it should; what happened, for the logs:
    "announced", "used" (a one-time link clicked before), "capped" (a repeatable link that ran
    for this entity a moment ago, or too often today), "no link" or "no triggers"."""
    try:
        link = LinkModel.get(int(account_id), int(link_id))
    except DoesNotExist:
        return "no link"  # deleted since the email was sent: the redirect still goes
    trigger_ids = [str(t) for t in link.trigger_ids or []]
    if not trigger_ids:
        return "no triggers"
    click_id = _click_id(when)
    if not link.once:
        if not _repeat_allowed(account_id, link_id, entity, message_id, when):
            return "capped"
        announce.announce_link(account_id, message_id, link_id, trigger_ids, when, click_id=click_id)
        return "announced"
    fact = AutomationFactModel(
        int(account_id),
        once_key(link_id, entity, message_id),
        created_at=when,
        state="clicked",
        detail=f"{message_id} {click_id}",
    )
    try:
        fact.save(condition=AutomationFactModel.fact_key.does_not_exist())
    except PutError as exc:
        if state.is_condition_failure(exc):
            return "used"
        raise
    try:
        announce.announce_link(account_id, message_id, link_id, trigger_ids, when, click_id=None)
    except Exception:
        _give_back(fact)
        raise
    return "announced"


def _give_back(fact: AutomationFactModel) -> None:
    """Announcing failed after this click won: delete the fact it wrote, so a later click wins."""
    try:
        fact.delete(condition=AutomationFactModel.detail == fact.detail)
    except Exception:
        logger.exception("a one-time link stays used without its run", extra={"fact": fact.fact_key})


def language(locale: str | None, accept_language: str = "") -> str:
    """The thank-you page's language: the email's locale if we have that language, else the
    browser's preference (Accept-Language, by q), else English."""
    primary = (locale or "").replace("_", "-").split("-")[0].lower()
    if primary in LANGUAGES:
        return primary
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        code = tag.strip().split("-")[0].lower()
        if code in LANGUAGES and weight > 0:
            ranked.append((-weight, position, code))
    return min(ranked)[2] if ranked else "en"


def thank_you_page(locale: str | None, accept_language: str = "") -> str:
    lang = language(locale, accept_language)
    title, note = (html.escape(s) for s in _THANKS[lang])
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title>'
        "<style>body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;"
        "color:#222;background:#f5f6f8;display:flex;min-height:100vh;align-items:center;"
        "justify-content:center;text-align:center}h1{font-size:2.5rem;margin:0 0 .5rem}"
        "p{color:#666;margin:0}</style></head>"
        f"<body><main><h1>{title}</h1><p>{note}</p></main></body></html>"
    )

"""Serving a public web page (`/p/{token}`) and an email's web version (`/w/{token}`).

A page is rendered for the email's CRM entity with fresh Kommo data (the one render path of
emails, rendering.personalize), its `{web:N}`, `{formlink}` and `{weblink}` filled with the
same email's signed URLs, its trigger links and links tracked as in the email (added after
the email's own tracked links, tracking.rewrite.append_links), its header set as the tab's
title and its Yandex Metrika and Google Tag Manager snippets placed in the head. The rendered
page is kept in the bucket (`pages/…`) for the page's cache time (the web version: 60 min);
a page edited since is rendered again. Every form that posts to us gets a fresh nonce on
each view (pages.forms: a double post of one view is written once).

A page's lifetime counts from when its URL was made (the token's time): after it, 410 and a
"this page has expired" page. Opening a page runs its trigger once per CRM entity, for a
person's GET only (the machine-traffic rules of emails, tracking.machine_traffic): one
conditional put of the fact `pageopen#N#entity` decides, then the trigger's run is queued
on the actions queue (taken back if queueing fails).
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.adapters import s3, sqs
from mailer_core.base.html_document import frame
from mailer_core.base.logs import logger
from mailer_core.events.jobs import EventJob
from mailer_core.pages.links import Filler
from mailer_core.rendering import personalize, trigger_link_urls, variables
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AutomationFactModel, MailboxModel, MessageModel, WebPageModel
from mailer_core.tracking import machine_traffic, tokens
from mailer_core.tracking import rewrite as tracking

WEB_VERSION_CACHE_MINUTES = 60
_CACHE_HEAD = re.compile(r"\A<!--mailer-cache (\d+) (\S+)-->\n")
_FORM_TAG = re.compile(r"<form\b[^>]*>", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_HEAD_START = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_TITLE = re.compile(r"<title\b[^>]*>.*?</title\s*>", re.IGNORECASE | re.DOTALL)
NONCE_FIELD = "_mailer_nonce"


@dataclass(frozen=True)
class PageRequest:
    """What the public page routes know about one request."""

    token: str
    method: str
    user_agent: str
    source_ip: str
    headers: dict[str, str]
    now: datetime


@dataclass(frozen=True)
class Answer:
    status: int
    html: str


def plain_page(title: str, text: str, *, status: int) -> Answer:
    """A short page of ours (not found, expired, too many posts …)."""
    title, text = html_lib.escape(title), html_lib.escape(text)
    return Answer(
        status,
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title>'
        "<style>body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;"
        "color:#222;background:#f5f6f8;display:flex;min-height:100vh;align-items:center;"
        "justify-content:center;text-align:center}h1{font-size:2rem;margin:0 0 .5rem}"
        f"p{{color:#666;margin:0}}</style></head><body><main><h1>{title}</h1><p>{text}</p></main>"
        "</body></html>",
    )


NOT_FOUND = plain_page("Page not found", "This link is not valid.", status=404)
EXPIRED = plain_page("This page has expired", "The page was available for a limited time only.", status=410)
UNAVAILABLE = plain_page("Please try again", "The page cannot be shown right now.", status=503)


def entity_key(message: MessageModel) -> str:
    if message.entity_type and message.entity_id is not None:
        return f"{message.entity_type}:{int(message.entity_id)}"
    return f"msg:{message.message_id}"


def _message(token: tokens.TrackingToken) -> MessageModel | None:
    try:
        return MessageModel.get(int(token.account_id), token.message_id)
    except DoesNotExist:
        return None


def _manager(message: MessageModel) -> variables.Manager:
    try:
        return personalize.manager_of(MailboxModel.get(int(message.account_id), message.mailbox_id))
    except DoesNotExist:
        return variables.Manager(user_id=int(message.user_id or 0), name="", email="")


def _rendered(
    message: MessageModel, *, title_src: str, html_src: str, issued_at: int, signature: bool, now: datetime
) -> tuple[str, str]:
    """The page's title and body for the email's entity: variables, page URLs, tracked links."""
    entity = (
        (str(message.entity_type), int(message.entity_id))
        if message.entity_type and message.entity_id is not None
        else None
    )
    account_id = int(message.account_id)
    data = personalize.kommo_data(account_id) if entity else None
    rendered = personalize.render_email(
        subject_src=title_src,
        html_src=html_src,
        data=data,
        entity=entity,
        manager=_manager(message),
        message_id=message.message_id,
        sent_at=message.sent_at or now,
        locale=message.locale,
        timezone=message.timezone,
        disable_signature=not signature or bool(message.disable_signature),
        embed_images=False,
        load_links=lambda ids: trigger_link_urls.load_links(account_id, ids),
    )
    body = Filler(account_id, message.message_id, issued_at).fill(rendered.html, legacy=False)
    targets = rendered.trigger_links.targets
    if not tracking.enabled():
        return rendered.subject, trigger_link_urls.direct(body, targets)
    known = [str(link) for link in message.tracked_links or []]
    tracked = tracking.rewrite(
        body,
        account_id=account_id,
        message_id=message.message_id,
        sent_at=issued_at,
        track_opens=False,
        trigger_links=targets,
        known_links=known,
    )
    if tracking.append_links(message, len(known), tracked.links):
        return rendered.subject, tracked.html
    logger.warning("page links left untracked: the message's links changed meanwhile")
    return rendered.subject, trigger_link_urls.direct(body, targets)


def _snippets(page: WebPageModel | None) -> str:
    if page is None:
        return ""
    parts = []
    if page.metrika_id:
        counter = int(page.metrika_id)
        parts.append(
            "<!-- Yandex.Metrika counter --><script>(function(m,e,t,r,i,k,a){m[i]=m[i]||function(){"
            "(m[i].a=m[i].a||[]).push(arguments)};m[i].l=1*new Date();k=e.createElement(t),"
            "a=e.getElementsByTagName(t)[0],k.async=1,k.src=r,a.parentNode.insertBefore(k,a)})"
            '(window,document,"script","https://mc.yandex.ru/metrika/tag.js","ym");'
            f'ym({counter},"init",{{clickmap:true,trackLinks:true,accurateTrackBounce:true}});</script>'
            f'<noscript><div><img src="https://mc.yandex.ru/watch/{counter}" style="position:absolute;'
            'left:-9999px;" alt="" /></div></noscript>'
        )
    if page.gtm_id:
        gtm = html_lib.escape(str(page.gtm_id))
        parts.append(
            "<!-- Google Tag Manager --><script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({"
            "'gtm.start':new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],"
            "j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src="
            "'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);"
            f"}})(window,document,'script','dataLayer','{gtm}');</script>"
        )
    return "".join(parts)


def document(body: str, *, header: str, locale: str | None, page: WebPageModel | None) -> str:
    """The whole HTML document: the header as the tab's title, the analytics in the head."""
    text = frame(body, title=header, language=locale or "")
    head = ""
    if header:
        title = f"<title>{html_lib.escape(header)}</title>"
        if _TITLE.search(text):
            text = _TITLE.sub(lambda _: title, text, count=1)
        else:
            head += title
    head += '<meta name="robots" content="noindex">' + _snippets(page)
    if _HEAD_END.search(text):
        return _HEAD_END.sub(lambda m: head + m.group(0), text, count=1)
    if _HEAD_START.search(text):
        return _HEAD_START.sub(lambda m: m.group(0) + head, text, count=1)
    return head + text


def with_nonces(text: str) -> str:
    """A fresh nonce in every form that posts to our form route (one per view)."""

    def add(match: re.Match[str]) -> str:
        tag = match.group(0)
        if "/f/" not in tag:
            return tag
        return f'{tag}<input type="hidden" name="{NONCE_FIELD}" value="{secrets.token_urlsafe(12)}">'

    return _FORM_TAG.sub(add, text)


def _cached(key: str, version: str, minutes: int, now: datetime) -> str | None:
    if minutes <= 0:
        return None
    try:
        text = s3.get_text_if_any(key)
    except Exception:
        logger.warning("cached page not read", exc_info=True)
        return None
    found = _CACHE_HEAD.match(text or "")
    if text is None or found is None or found.group(2) != version:
        return None
    if now.timestamp() - int(found.group(1)) >= minutes * 60:
        return None
    return text[found.end() :]


def _keep(key: str, version: str, minutes: int, now: datetime, text: str) -> None:
    if minutes <= 0:
        return
    try:
        s3.put_text(key, f"<!--mailer-cache {int(now.timestamp())} {version}-->\n{text}", "text/html")
    except Exception:
        logger.warning("rendered page not kept", exc_info=True)


def _render_failure(exc: Exception) -> Answer:
    reason = personalize.permanent_failure(exc)
    if reason is None:
        logger.exception("page not rendered")
        return UNAVAILABLE
    logger.info("page cannot be rendered", extra={"reason": reason})
    return plain_page("This page cannot be shown", reason, status=422)


def open_page(request: PageRequest) -> Answer:
    """GET/HEAD `/p/{token}[/{title}]`."""
    token = tokens.verify(request.token, kind=tokens.PAGE)
    if token is None:
        return NOT_FOUND
    try:
        page = WebPageModel.get(token.account_id, token.link_index)
    except DoesNotExist:
        return NOT_FOUND
    if request.now.timestamp() > token.issued_at + int(page.lifetime_days) * 86400:
        return EXPIRED
    message = _message(token)
    if message is None:
        return NOT_FOUND
    key = f"pages/{token.account_id}/p{int(page.page_id)}/{message.message_id}.html"
    version = str(int(page.updated_at.timestamp())) if page.updated_at else "0"
    text = _cached(key, version, int(page.cache_minutes), request.now)
    if text is None:
        try:
            header, body = _rendered(
                message,
                title_src=page.header or "",
                html_src=page.html or "",
                issued_at=token.issued_at,
                signature=False,
                now=request.now,
            )
        except Exception as exc:
            return _render_failure(exc)
        text = document(body, header=header, locale=message.locale, page=page)
        _keep(key, version, int(page.cache_minutes), request.now, text)
    if page.trigger_id:
        _run_on_open(request, token, message, page)
    return Answer(200, with_nonces(text))


def web_version(request: PageRequest) -> Answer:
    """GET/HEAD `/w/{token}`: the email as a page, where its forms work in any browser."""
    token = tokens.verify(request.token, kind=tokens.WEB_VERSION)
    if token is None:
        return NOT_FOUND
    message = _message(token)
    if message is None:
        return NOT_FOUND
    key = f"pages/{token.account_id}/w/{message.message_id}.html"
    text = _cached(key, "w", WEB_VERSION_CACHE_MINUTES, request.now)
    if text is None:
        try:
            source = message.html if message.html is not None else s3.get_html(message.html_s3_key or "")
            header, body = _rendered(
                message,
                title_src=message.subject or "",
                html_src=source or "",
                issued_at=token.issued_at,
                signature=True,
                now=request.now,
            )
        except Exception as exc:
            return _render_failure(exc)
        text = document(body, header=header, locale=message.locale, page=None)
        _keep(key, "w", WEB_VERSION_CACHE_MINUTES, request.now, text)
    return Answer(200, with_nonces(text))


def is_person(request: PageRequest, account_id: int) -> bool:
    """A person's GET, by the machine-traffic rules of opens (and the account's switch)."""
    if request.method.upper() != "GET":
        return False
    verdict = machine_traffic.classify(
        kind="open",
        method=request.method,
        user_agent=request.user_agent,
        source_ip=request.source_ip,
        headers=request.headers,
        seconds_since_send=None,
    )
    return not verdict.machine or not machine_traffic.filter_on(account_id)


def _run_on_open(
    request: PageRequest, token: tokens.TrackingToken, message: MessageModel, page: WebPageModel
) -> str:
    """The page's trigger, once per entity, for a person; what happened (for the logs)."""
    if not is_person(request, token.account_id):
        return "machine"
    fact = AutomationFactModel(
        token.account_id,
        f"pageopen#{int(page.page_id)}#{entity_key(message)}",
        created_at=request.now,
        state="opened",
        detail=message.message_id,
    )
    try:
        fact.save(condition=AutomationFactModel.fact_key.does_not_exist())
    except PutError as exc:
        if is_condition_failure(exc):
            return "ran before"
        logger.exception("page open not recorded")
        return "not recorded"
    job = EventJob(
        token.account_id,
        message.message_id,
        "link",
        request.now.isoformat(),
        source=f"page{int(page.page_id)}",
        trigger_ids=(str(page.trigger_id),),
    )
    try:
        sqs.enqueue_actions([(job.to_body(), 0)])
    except Exception:
        logger.exception("page's trigger not queued")
        try:
            fact.delete(condition=AutomationFactModel.detail == fact.detail)
        except Exception:
            logger.exception("a page's open stays recorded without its run")
        return "not queued"
    return "announced"

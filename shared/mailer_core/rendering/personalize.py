"""Filling an email with CRM data: one path for sending, previews and template recipients.

`render_email` renders the subject (plain text, one line), the manager's signature and the
body (autoescaped HTML) with the same context, places the signature, inlines CSS and embeds
pasted images (email_html). The send worker calls `for_message` at send time with fresh
Kommo data; `preview` answers POST /v1/messages/preview with exactly what the client
would get (pasted images stay data URLs there, so the widget can show them); compose calls
`resolve_addresses` for template recipients that are variables.

Kommo is read through `variables.KommoData` (batched, cached per worker batch); the send
worker's `prefetch` reads every entity of an SQS batch in three requests.

Trigger links: the rendered body keeps their markers; `render_email` resolves the links it
names (one BatchGet, only when there are any) and renders their targets with the same
context (trigger_link_urls), so the send worker can store each resolved target with its
tracked link. The preview shows each trigger link's target (`#` without one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.adapters import s3
from mailer_core.adapters.mime import InlineImage
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, InvalidInput
from mailer_core.base.logs import logger
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo import errors as kommo_errors
from mailer_core.rendering import email_html, trigger_link_urls, variables
from mailer_core.rendering import sandbox as rendering
from mailer_core.rendering.source_checks import has_variables
from mailer_core.store.models import AccountModel, MailboxModel, MessageModel


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    images: tuple[InlineImage, ...] = ()
    missing: tuple[str, ...] = ()
    # Attachment links with their variables filled in (one line each; empty ones dropped).
    attachment_links: tuple[str, ...] = ()
    # The trigger links the body names: targets resolved now, numbers that name no link.
    trigger_links: trigger_link_urls.Resolved = trigger_link_urls.NONE


class RenderFailed(rendering.RenderError):
    """A part of the email could not be rendered; `field` names it (subject, html, signature)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.detail = reason


def kommo_data(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> variables.KommoData:
    """The Kommo reader for an installed account; Conflict when it is not connected."""
    try:
        account = AccountModel.get(account_id)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field="entity") from None
    return variables.KommoData(kommo_accounts.client_for_account(account, clock=clock))


def manager_of(mailbox: MailboxModel) -> variables.Manager:
    return variables.Manager(
        user_id=int(mailbox.user_id),
        name=mailbox.sender_name or "",
        email=mailbox.sender_email,
        phone=mailbox.sender_phone or "",
        signature_html=mailbox.signature or "",
    )


def _step(
    field: str, source: str, context: dict[str, Any], *, html: bool, **options: Any
) -> rendering.Rendered:
    try:
        if html:
            return rendering.render_html(source, context, **options)
        return rendering.render_subject(source, context, **options)
    except rendering.RenderError as exc:
        raise RenderFailed(field, exc.reason) from None


def _uses_signature(source: str) -> bool:
    return "manager.signature" in source or "user.signature" in source


def render_email(
    *,
    subject_src: str,
    html_src: str,
    data: variables.KommoData | None,
    entity: tuple[str, int] | None,
    manager: variables.Manager,
    message_id: str,
    sent_at: datetime,
    locale: str | None = None,
    timezone: str | None = None,
    disable_signature: bool = False,
    embed_images: bool = True,
    attachment_links: Sequence[str] = (),
    load_links: Callable[[list[int]], Mapping[int, Any]] | None = None,
) -> RenderedEmail:
    """The email as the client gets it; raises RenderFailed, email_html.ImageTooLarge or Kommo errors.
    With `load_links` (numbers -> LinkModel) the trigger links the body names are resolved."""
    zone = timezone or "UTC"
    context = variables.build_context(
        data=data,
        entity=entity,
        manager=manager,
        message=variables.MessageFacts(message_id, "", sent_at),
        timezone=zone,
    )
    options: dict[str, Any] = {
        "locale": locale or variables.manager_locale(data, manager.user_id) or "en",
        "timezone": zone,
        "currency": variables.account_currency(data),
    }
    subject = _step("subject", subject_src, context, html=False, **options)
    dict.__setitem__(context["message"], "subject", subject.text)
    signature = rendering.Rendered("")
    if manager.signature_html and not disable_signature:
        signature = _step("signature", manager.signature_html, context, html=True, **options)
    from markupsafe import Markup

    dict.__setitem__(context["manager"], "signature", Markup(signature.text))
    body = _step("html", html_src, context, html=True, **options)
    append = "" if disable_signature or _uses_signature(html_src) else signature.text
    prepared = email_html.prepare(body.text, signature_html=append, embed_images=embed_images)
    links: list[str] = []
    for index, link in enumerate(attachment_links):
        text = (
            link
            if "{" not in link
            else _step(f"attachment_links[{index}]", link, context, html=False, **options).text
        )
        if text.strip():
            links.append(text.strip())
    resolved = trigger_link_urls.NONE
    if load_links is not None:

        def render_target(number: int, source: str) -> tuple[str, tuple[str, ...]]:
            where = f"trigger_links.{number}.target"
            try:
                done = rendering.render(source, context, html=False, **options)
            except rendering.RenderError as exc:
                raise RenderFailed(where, exc.reason) from None
            return rendering.one_line(done.text), done.missing

        resolved = trigger_link_urls.resolve([prepared.html], load=load_links, render_target=render_target)
    missing = rendering.names_used([*subject.missing, *signature.missing, *body.missing, *resolved.missing])
    return RenderedEmail(subject.text, prepared.html, prepared.images, tuple(missing), tuple(links), resolved)


# -- sending -----------------------------------------------------------------------------------


def _entity_of(message: MessageModel) -> tuple[str, int] | None:
    if message.entity_type and message.entity_id is not None:
        return str(message.entity_type), int(message.entity_id)
    return None


def _data_for(cache: MutableMapping[int, Any], account_id: int, clock: Clock) -> variables.KommoData:
    if account_id not in cache:
        cache[account_id] = kommo_data(account_id, clock=clock)
    return cache[account_id]  # type: ignore[no-any-return]


def for_message(
    message: MessageModel,
    mailbox: MailboxModel,
    *,
    html: str,
    now: datetime,
    cache: MutableMapping[int, Any],
    clock: Clock = SYSTEM_CLOCK,
) -> RenderedEmail:
    """A stored message rendered at send time with fresh CRM data."""
    entity = _entity_of(message)
    data = _data_for(cache, int(message.account_id), clock) if entity else None
    return render_email(
        subject_src=message.subject or "",
        html_src=html,
        data=data,
        entity=entity,
        manager=manager_of(mailbox),
        message_id=message.message_id,
        sent_at=now,
        locale=message.locale,
        timezone=message.timezone,
        disable_signature=bool(message.disable_signature),
        attachment_links=[str(link) for link in message.attachment_links or []],
        load_links=lambda ids: trigger_link_urls.load_links(int(message.account_id), ids),
    )


_SNAPSHOT_SECONDS = 900.0
# A campaign package's CRM data (S3, written once per package), kept by a warm container.
_snapshots: TtlCache[str, dict[str, Any]] = TtlCache(_SNAPSHOT_SECONDS)


def _snapshot(key: str) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        text = s3.get_text_if_any(key)
        return dict(json.loads(text).get("entities") or {}) if text else {}

    return _snapshots.get_or_load(key, time.monotonic(), load)


def _from_snapshots(cache: MutableMapping[int, Any], jobs: list[Any], clock: Clock) -> None:
    """Campaign emails are rendered from the CRM data their package read (250 entities to a
    request) instead of reading Kommo again: at most a package's age old, documented so."""
    for job in jobs:
        key = getattr(job, "snapshot", None)
        if not key:
            continue
        data = _data_for(cache, int(job.account_id), clock)
        for kind, found in _snapshot(str(key)).items():
            if kind in data.entities:
                for entity_id, entity in found.items():
                    data.entities[kind].setdefault(int(entity_id), entity)


def prefetch(cache: MutableMapping[int, Any], jobs: Iterable[Any], *, clock: Clock = SYSTEM_CLOCK) -> None:
    """Read the Kommo entities of a batch of send jobs at once; a failure only loses the speed-up."""
    jobs = list(jobs)
    try:
        _from_snapshots(cache, jobs, clock)
    except Exception:  # the renders read what they need from Kommo
        logger.warning("could not read a campaign package's CRM data", exc_info=True)
    wanted: dict[int, dict[str, list[int]]] = {}
    for job in jobs:
        entity = getattr(job, "entity", None)
        if not entity or ":" not in entity:
            continue
        kind, _, raw_id = entity.partition(":")
        if kind in ("leads", "contacts", "companies") and raw_id.isdigit():
            wanted.setdefault(int(job.account_id), {}).setdefault(kind, []).append(int(raw_id))
    for account_id, kinds in wanted.items():
        try:
            data = _data_for(cache, account_id, clock)
            for kind, ids in kinds.items():
                data.prefetch(kind, ids)  # type: ignore[arg-type]
        except Exception:  # the renders read what they need one by one
            logger.warning("could not prefetch Kommo data", exc_info=True, extra={"account_id": account_id})


def permanent_failure(exc: BaseException) -> str | None:
    """Why a message fails for good when rendering raised `exc`; None when a retry may help."""
    if isinstance(exc, rendering.RenderError):
        return f"the template could not be rendered: {exc}"
    if isinstance(exc, email_html.ImageTooLarge):
        return str(exc)
    if isinstance(exc, kommo_errors.KommoNotFound):
        return f"the email's CRM entity is gone: {exc}"
    if isinstance(exc, kommo_errors.KommoAccessDenied | kommo_errors.KommoInsufficientRights):
        return f"Kommo refused to give the email's CRM data: {exc}"
    if isinstance(exc, Conflict):
        return str(exc)
    return None


# -- compose and preview ----------------------------------------------------------------------


def resolve_addresses(
    lists: dict[str, list[str]],
    *,
    account_id: int,
    entity: tuple[str, int] | None,
    mailbox: MailboxModel,
    clock: Clock = SYSTEM_CLOCK,
) -> dict[str, list[str]]:
    """Recipient lists whose entries may be variables, filled in now; 422 naming a bad one."""
    if not any(_is_template(a) for values in lists.values() for a in values):
        return {name: list(values) for name, values in lists.items()}
    data = kommo_data(account_id, clock=clock) if entity else None
    context = variables.build_context(
        data=data,
        entity=entity,
        manager=manager_of(mailbox),
        message=variables.MessageFacts("", "", clock.now()),
    )
    resolved: dict[str, list[str]] = {}
    for name, values in lists.items():
        out: list[str] = []
        for index, value in enumerate(values):
            where = f"{name}[{index}]"
            if not _is_template(value):
                out.append(value)
                continue
            try:
                text = rendering.render(value, context, html=False).text
            except rendering.RenderError as exc:
                raise InvalidInput(exc.reason, field=where) from None
            for part in text.replace(";", ",").split(","):
                if part.strip():
                    out.append(validation.email_address(part.strip(), where))
        resolved[name] = list(dict.fromkeys(out))
    return resolved


def render_text(
    text: str, message: MessageModel, mailbox: MailboxModel | None, *, clock: Clock = SYSTEM_CLOCK
) -> str:
    """A trigger's text (task, note, field value, lead name) with the variables templates take,
    filled with fresh CRM data of the email's entity and its sender ({{ lead.name }}, …);
    `mailbox` is the email's sender (None: deleted since)."""
    entity = _entity_of(message)
    manager = (
        manager_of(mailbox)
        if mailbox is not None
        else variables.Manager(user_id=int(message.user_id), name="", email="", phone="", signature_html="")
    )
    context = variables.build_context(
        data=kommo_data(int(message.account_id), clock=clock) if entity else None,
        entity=entity,
        manager=manager,
        message=variables.MessageFacts(
            message.message_id, message.sent_subject or "", message.sent_at or clock.now()
        ),
        timezone=message.timezone or "UTC",
    )
    try:
        return rendering.render(text, context, html=False).text
    except rendering.RenderError as exc:
        raise InvalidInput(exc.reason, field="params") from None


def _is_template(text: str) -> bool:
    return has_variables(text)

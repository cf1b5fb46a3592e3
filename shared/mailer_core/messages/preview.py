"""`POST /v1/messages/preview`: a template or a draft rendered as the client would see it now."""

from __future__ import annotations

from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.adapters.mime import html_to_text
from mailer_core.base import limits, validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput, MailerError
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages import entity_rights
from mailer_core.messages import requests as compose_requests
from mailer_core.rendering import trigger_link_urls
from mailer_core.rendering.legacy_placeholders import unknown_placeholders
from mailer_core.rendering.personalize import RenderFailed, kommo_data, manager_of, render_email
from mailer_core.rendering.source_checks import validate_locale, validate_timezone
from mailer_core.templates import api as templates

PREVIEW_FIELDS = {"template_id", "subject", "html", "entity", "mailbox_id", "locale", "timezone"}


def preview(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """POST /v1/messages/preview: subject, HTML and text as the client would see them now."""
    data = validation.require_object(payload)
    validation.reject_unknown(data, PREVIEW_FIELDS)
    template = None
    if data.get("template_id") is not None:
        template = templates.for_use(caller, data["template_id"])
    elif "subject" not in data and "html" not in data:
        raise InvalidInput("give a template_id, or a subject and html", field="template_id")
    subject = (
        validation.text(data, "subject", max_length=templates.MAX_SUBJECT_CHARS)
        if "subject" in data or template is None
        else template.subject or ""
    )
    html = (
        validation.text(data, "html", max_length=limits.BODY_BYTES * 2)
        if "html" in data or template is None
        else templates.html_of(template)
    )
    locale = validate_locale(data.get("locale")) or (template.locale if template else None)
    timezone = validate_timezone(data.get("timezone")) or (template.timezone if template else None)
    entity = compose_requests.entity_of(data)
    mailbox_id = validation.optional_identifier(data, "mailbox_id")
    if mailbox_id:
        mailbox = mailbox_connection.find(caller.account_id, mailbox_id)
        if mailbox is None or (not caller.is_admin and int(mailbox.user_id) != caller.user_id):
            raise InvalidInput("no such mailbox", field="mailbox_id")
    else:
        mailbox = mailbox_connection.default_for_user(caller.account_id, caller.user_id)
        if mailbox is None:
            raise InvalidInput("choose a mailbox: you have no default mailbox", field="mailbox_id")
    crm = kommo_data(caller.account_id, clock=clock) if entity else None
    if crm is not None and entity is not None:
        entity_rights.ensure_may_view(caller.user_id, crm, entity)
    try:
        rendered = render_email(
            subject_src=subject,
            html_src=html,
            data=crm,
            entity=entity,
            manager=manager_of(mailbox),
            message_id="preview",
            sent_at=clock.now(),
            locale=locale,
            timezone=timezone,
            disable_signature=bool(template.disable_signature) if template else False,
            embed_images=False,
            load_links=lambda ids: trigger_link_urls.load_links(caller.account_id, ids),
        )
    except RenderFailed as exc:
        raise InvalidInput(exc.detail, field=exc.field) from None
    except MailerError:
        raise
    shown = trigger_link_urls.direct(rendered.html, rendered.trigger_links.targets)
    return {
        "subject": rendered.subject,
        "html": shown,
        "text": html_to_text(shown),
        "missing": list(rendered.missing),
        # single-brace placeholders Mailer does not know: sent as they are (templates refuse them)
        "unknown_placeholders": list(
            dict.fromkeys(unknown_placeholders(subject) + unknown_placeholders(html))
        ),
    }

"""A compose from a template: the template's subject, body, recipients, attachments and
triggers, edited by the compose's own fields, its recipients settled now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput
from mailer_core.base.limits import MAX_RECIPIENTS
from mailer_core.files.attachments import AttachedFile
from mailer_core.kommo import contacts
from mailer_core.rendering import personalize
from mailer_core.rendering.source_checks import validate_locale, validate_source, validate_timezone
from mailer_core.store.models import MailboxModel, event_triggers
from mailer_core.templates import api as templates


@dataclass(frozen=True)
class TemplateUse:
    """What a compose takes from a template, with the compose's edits applied."""

    template_id: str
    subject: str
    html: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    to_client: str
    files: list[AttachedFile]
    links: list[str]
    disable_signature: bool
    locale: str | None
    timezone: str | None
    track_opens: bool = True
    triggers: dict[str, list[str]] | None = None
    not_opened_after: int | None = None


def for_compose(
    caller: Caller,
    data: dict[str, Any],
    *,
    entity: tuple[str, int] | None,
    mailbox: MailboxModel,
    clock: Clock = SYSTEM_CLOCK,
) -> TemplateUse:
    """The template `data["template_id"]` names, edited by the compose's own fields.

    The subject and body stay template sources (rendered at send time with fresh CRM data);
    recipients are settled now: the client's addresses (unless `to` is given or the template
    sends to no client) followed by the template's `to`, whose variables are filled in here.
    """

    template = templates.for_use(caller, data["template_id"])
    subject = (
        validate_source(
            validation.text(data, "subject", max_length=templates.MAX_SUBJECT_CHARS),
            field="subject",
            html=False,
        )
        if "subject" in data
        else template.subject or ""
    )
    html = (
        validate_source(validation.text(data, "html"), field="html", html=True)
        if "html" in data
        else templates.html_of(template)
    )
    lists = {
        name: validation.email_list(data, name, max_items=MAX_RECIPIENTS)
        if name in data
        else [str(a) for a in getattr(template, name) or []]
        for name in ("to", "cc", "bcc")
    }
    resolved = personalize.resolve_addresses(
        lists, account_id=caller.account_id, entity=entity, mailbox=mailbox, clock=clock
    )
    to_client = str(data.get("contacts") or template.to_client or "main")
    to = resolved["to"]
    if "to" not in data and entity is not None and to_client in ("main", "all"):
        client = contacts.entity_recipients(caller.account_id, entity[0], entity[1], to_client)
        to = list(dict.fromkeys([*client, *to]))
    if not to:
        raise InvalidInput(
            "the template sends to nobody here: give 'to', or an entity whose contacts have an email address",
            field="to",
        )
    locale = data.get("locale") if data.get("locale") else template.locale
    timezone = data.get("timezone") if data.get("timezone") else template.timezone
    return TemplateUse(
        template_id=template.template_id,
        subject=subject,
        html=html,
        to=to,
        cc=resolved["cc"],
        bcc=resolved["bcc"],
        to_client=to_client,
        files=templates.attached_files(template),
        links=[str(link) for link in template.attachment_links or []],
        disable_signature=bool(template.disable_signature),
        locale=validate_locale(locale),
        timezone=validate_timezone(timezone),
        track_opens=template.track_opens is not False,
        triggers=event_triggers(template.triggers) or None,
        not_opened_after=int(template.not_opened_after) if template.not_opened_after else None,
    )

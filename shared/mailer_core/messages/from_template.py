"""A compose from a template: the template's subject, body, recipients, attachments and
triggers, edited by the compose's own fields, its recipients settled now."""

from __future__ import annotations

from dataclasses import dataclass

from mailer_core.accounts.actors import Acting
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput
from mailer_core.files.attachments import AttachedFile
from mailer_core.kommo import contacts
from mailer_core.messages.requests import ComposeRequest
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
    track_downloads: bool | None = None  # None: the template leaves it to the user's last choice


def for_compose(
    actor: Acting,
    request: ComposeRequest,
    *,
    mailbox: MailboxModel,
    clock: Clock = SYSTEM_CLOCK,
) -> TemplateUse:
    """The template `request.template_id` names, edited by the request's own fields.

    The subject and body stay template sources (rendered at send time with fresh CRM data);
    recipients are settled now: the client's addresses (unless `to` is given or the template
    sends to no client) followed by the template's `to`, whose variables are filled in here.
    """
    template = templates.for_use(actor, request.template_id)
    given, entity = request.given, request.entity
    subject = (
        validate_source(request.subject, field="subject", html=False)
        if "subject" in given
        else template.subject or ""
    )
    html = (
        validate_source(request.html, field="html", html=True)
        if "html" in given
        else templates.html_of(template)
    )
    lists = {
        name: list(getattr(request, name))
        if name in given
        else [str(a) for a in getattr(template, name) or []]
        for name in ("to", "cc", "bcc")
    }
    resolved = personalize.resolve_addresses(
        lists, account_id=actor.account_id, entity=entity, mailbox=mailbox, clock=clock
    )
    to_client = request.contacts if "contacts" in given else str(template.to_client or "main")
    to = resolved["to"]
    if "to" not in given and entity is not None and to_client in ("main", "all"):
        client = contacts.entity_recipients(actor.account_id, entity[0], entity[1], to_client)
        to = list(dict.fromkeys([*client, *to]))
    if not to:
        raise InvalidInput(
            "the template sends to nobody here: give 'to', or an entity whose contacts have an email address",
            field="to",
        )
    locale = request.locale or template.locale
    timezone = request.timezone or template.timezone
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
        track_downloads=template.track_downloads,
    )

"""What each trigger type does in Kommo, and on which entity.

The email was written from a lead, a contact or a company; a trigger names the kind of entity
it acts on (`params.entity`). The rules users know from the widget:

- from a lead: a lead trigger acts on that lead; a contact trigger on its main contact (its
  first contact when none is main); a company trigger on the lead's company;
- from a contact: a lead trigger acts on the contact's newest lead (the highest id); a company
  trigger on the contact's company;
- from a company: a contact trigger acts on its first contact; a lead trigger on its newest lead.

No entity of the kind asked for → `NoTarget`, which the run records and does not retry.
Texts may hold `{subject}`, `{sended_at}` (when the email was sent), `{id}` (the message id),
`{date}` (the day the trigger runs, YYYY-MM-DD), `{datetime}`, `{email}` (the recipients),
`{template}` (the template's name, read only when a text names it; its id when the template
was deleted since) and `{template_id}`; and every variable templates take (`{{ lead.name }}`,
`{{ contact.first_name }}`, `{{ lead.cf['Delivery'] }}` …), filled with fresh CRM data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pynamodb.exceptions import DoesNotExist

from mailer_core.base.errors import MailerError
from mailer_core.kommo import fields as kommo_fields
from mailer_core.kommo.client import EntityType, KommoClient, NewNote, NewTask
from mailer_core.store.models import MessageModel, TemplateModel, TriggerModel
from mailer_core.triggers.api import params_of

KINDS: dict[str, EntityType] = {"lead": "leads", "contact": "contacts", "company": "companies"}


class NoTarget(MailerError):
    """The trigger's entity does not exist for this email (e.g. a contact without leads)."""

    status = 422
    code = "no_target"


@dataclass
class RunContext:
    """What a run knows: the email, the time, the Kommo client, and how to send a template."""

    message: MessageModel
    kommo: KommoClient
    now: datetime
    # Sends a template to the message's entity (automation composes it); returns a summary.
    send_template: Callable[[str], str]
    # Fills the template variables ({{ lead.name }} …) of a text with the entity's CRM data.
    render: Callable[[str], str] | None = None
    _cache: dict[tuple[str, int, str], dict[str, Any]] | None = None

    def entity(self, entity_type: EntityType, entity_id: int, with_: tuple[str, ...] = ()) -> dict[str, Any]:
        if self._cache is None:
            self._cache = {}
        key = (entity_type, entity_id, ",".join(with_))
        if key not in self._cache:
            self._cache[key] = self.kommo.get_entity(entity_type, entity_id, with_=with_)
        return self._cache[key]


def _ids(entity: Mapping[str, Any], kind: str) -> list[int]:
    return [int(e["id"]) for e in (entity.get("_embedded") or {}).get(kind) or [] if "id" in e]


# Many branches on purpose: the manual's entity rules, one per pair of kinds.
def target(ctx: RunContext, kind: str) -> tuple[EntityType, int]:  # noqa: C901
    """The entity of `kind` (lead, contact, company) this email's trigger acts on."""
    message = ctx.message
    source = message.entity_type
    if not source or message.entity_id is None:
        raise NoTarget("the email was not sent from a lead, contact or company")
    source_id = int(message.entity_id)
    wanted = KINDS[kind]
    if wanted == source:
        return wanted, source_id
    if source == "leads":
        lead = ctx.entity("leads", source_id, ("contacts",))
        if wanted == "contacts":
            links = (lead.get("_embedded") or {}).get("contacts") or []
            main = [int(c["id"]) for c in links if c.get("is_main")] or [int(c["id"]) for c in links]
            if main:
                return "contacts", main[0]
        elif _ids(lead, "companies"):
            return "companies", _ids(lead, "companies")[0]
    elif source == "contacts":
        contact = ctx.entity("contacts", source_id, ("leads",))
        if wanted == "leads" and _ids(contact, "leads"):
            return "leads", max(_ids(contact, "leads"))
        if wanted == "companies" and _ids(contact, "companies"):
            return "companies", _ids(contact, "companies")[0]
    elif source == "companies":
        company = ctx.entity("companies", source_id, ("contacts", "leads"))
        if wanted == "contacts" and _ids(company, "contacts"):
            return "contacts", _ids(company, "contacts")[0]
        if wanted == "leads" and _ids(company, "leads"):
            return "leads", max(_ids(company, "leads"))
    raise NoTarget(f"the {source[:-1] if source != 'companies' else 'company'} {source_id} has no {kind}")


def _tz(message: MessageModel) -> Any:
    try:
        return ZoneInfo(message.timezone) if message.timezone else UTC
    except Exception:  # a zone that vanished from the database: UTC rather than nothing
        return UTC


def fill(text: str, ctx: RunContext) -> str:
    """Fill the trigger variables into a text (unknown braces are left as they are)."""
    message, tz = ctx.message, _tz(ctx.message)
    sent = message.sent_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if message.sent_at else ""
    now = ctx.now.astimezone(tz)
    values = {
        "{subject}": message.sent_subject or message.subject or "",
        "{sended_at}": sent,
        "{sent_at}": sent,
        "{id}": message.message_id,
        "{date}": now.strftime("%Y-%m-%d"),
        "{datetime}": now.strftime("%Y-%m-%d %H:%M"),
        "{email}": ", ".join(str(a) for a in message.to or []),
        "{template_id}": message.template_id or "",
    }
    if "{template}" in text:
        values["{template}"] = template_name(message)
    if ctx.render is not None and ("{{" in text or "{%" in text):
        text = ctx.render(text)  # first: CRM data or a subject with braces is never read as a template
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def template_name(message: MessageModel) -> str:
    """The name of the message's template ("" without one; its id when it was deleted)."""
    if not message.template_id:
        return ""
    try:
        return str(TemplateModel.get(int(message.account_id), str(message.template_id)).name)
    except DoesNotExist:
        return str(message.template_id)


def _responsible(ctx: RunContext, params: Mapping[str, Any], entity: tuple[EntityType, int]) -> int | None:
    chosen = params.get("responsible", "entity")
    if chosen != "entity":
        return int(chosen)
    found = ctx.entity(entity[0], entity[1]).get("responsible_user_id")
    return int(found) if found else None


def _task(ctx: RunContext, p: Mapping[str, Any]) -> str:
    entity = target(ctx, p.get("entity", "lead"))
    task = NewTask(
        text=fill(str(p["text"]), ctx),
        complete_till=int(ctx.now.timestamp()) + int(p.get("deadline_seconds", 86400)),
        entity_type=entity[0],
        entity_id=entity[1],
        task_type_id=int(p.get("task_type_id", 1)),
        responsible_user_id=_responsible(ctx, p, entity),
    )
    ids = ctx.kommo.add_tasks([task])
    return f"task {ids[0] if ids else '?'} set on {entity[0]} {entity[1]}"


def _note(ctx: RunContext, p: Mapping[str, Any]) -> str:
    entity = target(ctx, p.get("entity", "lead"))
    ids = ctx.kommo.add_notes(entity[0], [NewNote(entity_id=entity[1], text=fill(str(p["text"]), ctx))])
    return f"note {ids[0] if ids else '?'} added to {entity[0]} {entity[1]}"


def _stage(ctx: RunContext, p: Mapping[str, Any]) -> str:
    _, lead_id = target(ctx, "lead")
    pipeline = p.get("pipeline_id")
    ctx.kommo.move_lead(
        lead_id, status_id=int(p["status_id"]), pipeline_id=int(pipeline) if pipeline else None
    )
    return f"lead {lead_id} moved to stage {int(p['status_id'])}" + (
        f" of pipeline {int(pipeline)}" if pipeline else ""
    )


def _field(ctx: RunContext, p: Mapping[str, Any]) -> str:
    entity_type, entity_id = target(ctx, p.get("entity", "lead"))
    field_id = int(p["field_id"])
    definition = kommo_fields.by_id(ctx.kommo.custom_fields(entity_type), field_id)
    current = kommo_fields.current_value(ctx.entity(entity_type, entity_id), field_id)
    value = kommo_fields.field_value(
        definition, fill(str(p["value"]), ctx), current=current, tz=_tz(ctx.message)
    )
    ctx.kommo.set_custom_fields(entity_type, entity_id, [value])
    cleared = value.get("values") is None
    return f"field {field_id} of {entity_type} {entity_id} " + ("cleared" if cleared else "changed")


def _email(ctx: RunContext, p: Mapping[str, Any]) -> str:
    return ctx.send_template(str(p["template_id"]))


def _lead(ctx: RunContext, p: Mapping[str, Any]) -> str:
    _, contact_id = target(ctx, "contact")
    lead: dict[str, Any] = {"name": fill(str(p.get("name") or "{subject}"), ctx)[:255] or "Lead"}
    for key in ("pipeline_id", "status_id"):
        if p.get(key):
            lead[key] = int(p[key])
    responsible = _responsible(ctx, p, ("contacts", contact_id))
    if responsible:
        lead["responsible_user_id"] = responsible
    lead["_embedded"] = {"contacts": [{"id": contact_id}]}
    created = ctx.kommo.create_leads_complex([lead])
    new_id = created[0].get("id") if created else None
    return f"lead {new_id} created for contact {contact_id}"


def _tags(ctx: RunContext, p: Mapping[str, Any]) -> str:
    entity_type, entity_id = target(ctx, p.get("entity", "lead"))
    add, remove = list(p.get("add") or []), list(p.get("remove") or [])
    ctx.kommo.change_tags(entity_type, entity_id, add=add, delete=remove)
    parts = ([f"added {', '.join(add)}"] if add else []) + (
        [f"removed {', '.join(remove)}"] if remove else []
    )
    return f"tags of {entity_type} {entity_id}: {'; '.join(parts)}"


_ACTIONS: dict[str, Callable[[RunContext, Mapping[str, Any]], str]] = {
    "task": _task,
    "note": _note,
    "stage": _stage,
    "field": _field,
    "email": _email,
    "lead": _lead,
    "tags": _tags,
}


def execute(trigger: TriggerModel, ctx: RunContext) -> str:
    """Do what the trigger says; a short account of what was done (for the email's timeline)."""
    return _ACTIONS[trigger.type](ctx, params_of(trigger))

"""A compose request: what to compose, each field checked for its shape, from the API's JSON or
built by Mailer itself (the digital pipeline, a "send email" trigger) without any JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailer_core.adapters import sqs
from mailer_core.base import limits, validation
from mailer_core.base.errors import InvalidInput, PayloadTooLarge
from mailer_core.base.limits import MAX_RECIPIENTS
from mailer_core.messages import threads
from mailer_core.rendering.source_checks import validate_locale, validate_timezone
from mailer_core.triggers import api as trigger_rules

FIELDS = {"mailbox_id", "to", "cc", "bcc", "entity", "contacts", "subject", "html", "send_at", "lane"}
FIELDS |= {"attachments", "attachment_links"}
FIELDS |= {"template_id", "locale", "timezone"}  # a template plus edits (mailer_core.templates.api)
FIELDS |= {"track_downloads"}  # attachments as tracked download links (tracking.downloads)
FIELDS |= {"track_opens"}  # the open pixel (mailer_core.tracking); links are always tracked
FIELDS |= {
    "triggers",
    "not_opened_after",
}  # the automation (mailer_core.automation.runner), frozen at compose
FIELDS |= {"received"}  # the received email a reply or forward quotes (messages.threads)


ENTITY_TYPES = ("leads", "contacts", "companies")


def templates_locale(payload: dict[str, Any]) -> str | None:
    if payload.get("locale") in (None, ""):
        return None
    return validate_locale(payload.get("locale"))


def templates_timezone(payload: dict[str, Any]) -> str | None:
    if payload.get("timezone") in (None, ""):
        return None
    return validate_timezone(payload.get("timezone"))


def entity_of(payload: dict[str, Any]) -> tuple[str, int] | None:
    """The `entity` field's rule (compose and the preview)."""
    value = payload.get("entity")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput('must be an object like {"type": "leads", "id": 123}', field="entity")
    validation.reject_unknown({f"entity.{k}": v for k, v in value.items()}, {"entity.type", "entity.id"})
    kind = value.get("type")
    if kind not in ENTITY_TYPES:
        raise InvalidInput(f"must be one of {', '.join(ENTITY_TYPES)}", field="entity.type")
    entity_id = value.get("id")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or entity_id < 1:
        raise InvalidInput("must be a positive integer", field="entity.id")
    return kind, entity_id


@dataclass(frozen=True)
class ComposeRequest:
    """What to compose, each field checked for its shape (by `parse_request` for the API).

    `given` names the fields the request sets: where it sets none, the template's value (or the
    account's default) stands. Internal callers build it with `ComposeRequest.of(...)`.
    """

    mailbox_id: str | None = None
    template_id: Any = None  # checked when the template is read
    subject: str = ""
    html: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    entity: tuple[str, int] | None = None
    contacts: str = "main"
    send_at: datetime | None = None
    lane: str = "priority"
    attachments: Any = None  # checked against the account's uploads at compose
    attachment_links: Any = None
    locale: str | None = None
    timezone: str | None = None
    track_opens: bool | None = None
    track_downloads: bool | None = None
    triggers: Any = None  # checked against the account's triggers at compose
    not_opened_after: int | None = None
    received: threads.Received | None = None
    given: frozenset[str] = frozenset()

    @classmethod
    def of(cls, **fields: Any) -> ComposeRequest:
        return cls(**fields, given=frozenset(fields))


def parse_request(payload: Any) -> ComposeRequest:
    """The API's JSON body as a request: 422 naming the field for anything malformed."""
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    subject, html = _body(data)
    lane = _lane(data)
    to = validation.email_list(data, "to", max_items=MAX_RECIPIENTS)
    cc = validation.email_list(data, "cc", max_items=MAX_RECIPIENTS)
    bcc = validation.email_list(data, "bcc", max_items=MAX_RECIPIENTS)
    entity = entity_of(data)
    contacts = validation.text(data, "contacts", default="main")
    if contacts not in ("main", "all"):
        raise InvalidInput("must be main or all", field="contacts")
    return ComposeRequest(
        mailbox_id=validation.optional_identifier(data, "mailbox_id"),
        template_id=data.get("template_id"),
        subject=subject,
        html=html,
        to=to,
        cc=cc,
        bcc=bcc,
        entity=entity,
        contacts=contacts,
        send_at=validation.timestamp(data, "send_at"),
        lane=lane,
        attachments=data.get("attachments"),
        attachment_links=data.get("attachment_links"),
        locale=templates_locale(data),
        timezone=templates_timezone(data),
        track_opens=validation.boolean(data, "track_opens") if data.get("track_opens") is not None else None,
        triggers=data.get("triggers"),
        track_downloads=(
            validation.boolean(data, "track_downloads") if data.get("track_downloads") is not None else None
        ),
        not_opened_after=trigger_rules.validate_not_opened_after(data),
        received=threads.parse(data.get("received")),
        given=frozenset(data),
    )


def body_of(data: dict[str, Any]) -> tuple[str, str]:
    """The subject and HTML of a body, each checked for its shape and size."""
    return _body(data)


def _body(data: dict[str, Any]) -> tuple[str, str]:
    subject = validation.text(data, "subject", max_length=998)
    html = validation.text(data, "html", max_length=limits.BODY_BYTES * 2)
    if len(html.encode("utf-8")) > limits.BODY_BYTES:
        raise PayloadTooLarge(
            f"the email body is larger than {limits.megabytes(limits.BODY_BYTES)}",
            field="html",
            limit_bytes=limits.BODY_BYTES,
        )
    return subject, html


def _lane(data: dict[str, Any]) -> str:
    lane = validation.text(data, "lane", default="priority")
    if lane not in sqs.LANES:
        raise InvalidInput(f"must be one of {', '.join(sqs.LANES)}", field="lane")
    return lane

"""Templates: saved emails with variables, the rules behind /v1/templates.

A template holds a name; recipients: the client (`to_client`: the entity's main contact,
all its contacts, or none) plus any addresses in `to`, `cc` and `bcc`, each of which may be a
variable (`{{ lead.responsible.email }}`, `{{ lead.cf["Billing email"] }}`); a subject and an
HTML body with variables (see rendering.py and variables.py); uploaded attachments and
attachments by link; a locale and time zone for dates, money and words; an owner, a public
flag and "disable signature".

Ids are ULIDs, as for mailboxes and messages: the widget lists templates and users pick
them by name (in compose, in the digital pipeline's action, in a "send email" trigger);
unlike trigger links (`{triggerlink:8}`) nobody types a template's id into text.

Who may do what:
- a user sees and uses their own templates, the public ones and the ones shared with them
  (`shared_with`: chosen Kommo users, the manual's "availability per employee"), and edits or
  deletes only their own; another user's private template answers 404, a public or shared
  one 403 on a change; the list, the preview and every compose (also the pipeline's and the
  triggers', which act for a user) follow the same rule;
- a widget administrator sees, edits and deletes every template of the account and is the
  only one who can change a template's owner (`user_id`).

Sources are checked when saved: a template that would not compile (a syntax error, a
refused filter such as `|safe`) answers 422 naming the field and the line.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from mailer_core.accounts import access
from mailer_core.accounts.actors import Acting
from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3
from mailer_core.base import limits, validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from mailer_core.files import attachments
from mailer_core.files.attachments import AttachedFile
from mailer_core.rendering.source_checks import (
    MAX_ADDRESS_CHARS,
    has_variables,
    refuse_unknown_placeholders,
    validate_locale,
    validate_source,
    validate_timezone,
)
from mailer_core.store.models import TemplateModel, event_triggers
from mailer_core.triggers import api as triggers
from mailer_core.triggers import loops as automation_loops
from mailer_core.triggers.loops import link_ids_in

FIELDS = {
    "name",
    "to_client",
    "to",
    "cc",
    "bcc",
    "subject",
    "html",
    "attachments",
    "attachment_links",
    "user_id",
    "is_public",
    "shared_with",  # Kommo user ids who see and use it besides the owner (docs/letters.md)
    "disable_signature",
    "track_downloads",  # attachments as tracked download links (tracking.downloads); null: the user's choice
    "track_opens",
    "locale",
    "timezone",
    "triggers",  # trigger ids per event: sent, opened, not_opened, failed (mailer_core.triggers.api)
    "not_opened_after",  # seconds "not opened" waits, 60 or more
    "repeat_max",  # marks an intentional loop: the most automatic emails its chain may send
}
TO_CLIENT = ("main", "all", "none")
MAX_NAME_CHARS = 200
MAX_SUBJECT_CHARS = 998
MAX_ADDRESSES = 50
MAX_SHARED_WITH = 500


def address_list(payload: dict[str, Any], name: str) -> list[str]:
    """Addresses, each an email address or text with variables filled in at compose time."""
    value = payload.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of email addresses or variables", field=name)
    if len(value) > MAX_ADDRESSES:
        raise InvalidInput(f"has more than {MAX_ADDRESSES} addresses", field=name)
    out: list[str] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput("must be an email address or a variable", field=where)
        item = item.strip()
        if len(item) > MAX_ADDRESS_CHARS:
            raise InvalidInput(f"is longer than {MAX_ADDRESS_CHARS} characters", field=where)
        if has_variables(item):
            out.append(validate_source(item, field=where, html=False))
        else:
            out.append(validation.email_address(item, where))
    return out


def _can_see(who: Acting, template: TemplateModel) -> bool:
    if who.account_wide or int(template.user_id) == who.user_id or bool(template.is_public):
        return True
    return who.user_id in {int(str(u)) for u in template.shared_with or []}


def _shared_with(data: dict[str, Any]) -> list[int] | None:
    """Kommo user ids, each once, in the order given; none: None (the attribute removed)."""
    value = data.get("shared_with")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SHARED_WITH:
        raise InvalidInput(f"must be a list of at most {MAX_SHARED_WITH} Kommo user ids", field="shared_with")
    users: dict[int, None] = {}
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise InvalidInput("must be a Kommo user id (a positive integer)", field=f"shared_with[{index}]")
        users[item] = None
    return list(users) or None


def _can_edit(caller: Caller, template: TemplateModel) -> bool:
    return caller.is_admin or int(template.user_id) == caller.user_id


def _load(who: Acting, template_id: str, *, field: str = "template_id") -> TemplateModel:
    try:
        template = TemplateModel.get(who.account_id, template_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such template", field=field) from None
    if not _can_see(who, template):
        raise NotFound("no such template", field=field)
    return template


def _editable(caller: Caller, template_id: str) -> TemplateModel:
    template = _load(caller, template_id)
    if not _can_edit(caller, template):
        raise Forbidden(
            "a public or shared template is changed by its owner or an administrator",
            field="template_id",
            reason="not_owner",
        )
    return template


def html_of(template: TemplateModel) -> str:
    if template.html is not None:
        return str(template.html)
    return s3.get_html(template.html_s3_key) if template.html_s3_key else ""


def _attached(template: TemplateModel) -> list[AttachedFile]:
    return [AttachedFile.from_attribute(a) for a in template.attachments or []]


def public_view(template: TemplateModel, caller: Caller, *, with_body: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": template.template_id,
        "name": template.name,
        "user_id": int(template.user_id),
        "is_public": bool(template.is_public),
        "shared_with": [int(str(u)) for u in template.shared_with or []],
        "disable_signature": bool(template.disable_signature),
        "track_opens": template.track_opens is not False,
        "track_downloads": template.track_downloads,
        "to_client": template.to_client or "main",
        "to": list(template.to or []),
        "cc": list(template.cc or []),
        "bcc": list(template.bcc or []),
        "subject": template.subject or "",
        "locale": template.locale,
        "timezone": template.timezone,
        "attachments": [f.view() for f in _attached(template)],
        "attachment_links": list(template.attachment_links or []),
        "triggers": event_triggers(template.triggers),
        "not_opened_after": int(template.not_opened_after) if template.not_opened_after else None,
        "repeat_max": int(template.repeat_max) if template.repeat_max else None,
        "trigger_links": [int(str(n)) for n in template.link_ids or []],
        "can_edit": _can_edit(caller, template),
        "created_at": template.created_at.isoformat(),
        "updated_at": template.updated_at.isoformat(),
    }
    if with_body:
        view["html"] = html_of(template)
    return view


# Many branches on purpose: one check per field of the request.
def _validated(caller: Caller, payload: Any, *, current: TemplateModel | None) -> dict[str, Any]:  # noqa: C901
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    creating = current is None
    out: dict[str, Any] = {}
    if creating or "name" in data:
        name = validation.text(data, "name", required=True, max_length=MAX_NAME_CHARS, allow_empty=False)
        out["name"] = name.strip()
    if creating or "subject" in data:
        subject = validation.text(data, "subject", max_length=MAX_SUBJECT_CHARS)
        if "\r" in subject or "\n" in subject:
            raise InvalidInput("must be one line", field="subject")
        out["subject"] = refuse_unknown_placeholders(
            validate_source(subject, field="subject", html=False), field="subject"
        )
    if creating or "html" in data:
        html = validation.text(data, "html", max_length=limits.BODY_BYTES * 2)
        if len(html.encode("utf-8")) > limits.BODY_BYTES:
            raise PayloadTooLarge(
                f"the template body is larger than {limits.megabytes(limits.BODY_BYTES)}",
                field="html",
                limit_bytes=limits.BODY_BYTES,
            )
        out["html"] = refuse_unknown_placeholders(
            validate_source(html, field="html", html=True), field="html"
        )
    if creating or "to_client" in data:
        to_client = validation.text(data, "to_client", default="main")
        if to_client not in TO_CLIENT:
            raise InvalidInput(f"must be one of {', '.join(TO_CLIENT)}", field="to_client")
        out["to_client"] = to_client
    for name in ("to", "cc", "bcc"):
        if creating or name in data:
            out[name] = address_list(data, name)
    for flag in ("is_public", "disable_signature"):
        if creating or flag in data:
            out[flag] = validation.boolean(data, flag)
    if "track_downloads" in data:
        value = data.get("track_downloads")
        out["track_downloads"] = None if value is None else validation.boolean(data, "track_downloads")
    if creating or "shared_with" in data:
        out["shared_with"] = _shared_with(data)
    if creating or "track_opens" in data:  # the open pixel (mailer_core.tracking); unset: account default
        default = access.settings_of(caller.account_id).track_opens
        out["track_opens"] = validation.boolean(data, "track_opens", default=default)
    if creating or "locale" in data:
        out["locale"] = validate_locale(data.get("locale"))
    if creating or "timezone" in data:
        out["timezone"] = validate_timezone(data.get("timezone"))
    if "user_id" in data:
        owner = validation.integer(data, "user_id", required=True, minimum=1)
        current_owner = int(current.user_id) if current is not None else caller.user_id
        if owner != current_owner and not caller.is_admin:
            raise Forbidden(
                "only an administrator changes a template's owner", field="user_id", reason="admin_only"
            )
        out["user_id"] = owner
    if creating or "attachments" in data:
        out["attachments"] = attachments.validate_attachments(
            caller.account_id,
            data.get("attachments"),
            limit_bytes=limits.TEMPLATE_ATTACHMENTS_BYTES,
            what="the attachments of a template",
        )
    if creating or "attachment_links" in data:
        out["attachment_links"] = attachments.validate_links(data.get("attachment_links"))
    if creating or "triggers" in data:
        out["triggers"] = triggers.validate_event_triggers(caller.account_id, data.get("triggers"))
    if creating or "not_opened_after" in data:
        out["not_opened_after"] = triggers.validate_not_opened_after(data)
    if creating or "repeat_max" in data:
        out["repeat_max"] = validation.integer(data, "repeat_max", minimum=1, maximum=100)
    return out


def _check_loops(caller: Caller, template: TemplateModel, fields: dict[str, Any]) -> None:
    """Refuse a save that closes an automation loop (mailer_core.triggers.loops)."""

    for name, value in fields.items():
        if name not in ("html", "attachments"):
            setattr(template, name, value)
    automation_loops.check_template(caller.account_id, template)


def _store_html(account_id: int, template_id: str, html: str, clock: Clock) -> tuple[str | None, str | None]:
    """(inline html, S3 key): a body above s3.INLINE_LIMIT goes to the bucket."""
    if len(html.encode("utf-8")) <= s3.INLINE_LIMIT:
        return html, None
    return None, s3.put_html(account_id, f"templates/{template_id}/{clock.new_id()}", html)


def _claim_files(caller: Caller, files: list[AttachedFile], clock: Clock) -> None:
    if files:
        attachments.claim(caller.account_id, files, keep="template", now=clock.now())


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    fields = _validated(caller, payload, current=None)
    template_id = clock.new_id()
    now = clock.now()

    fields["link_ids"] = link_ids_in(fields["subject"], fields["html"]) or None
    probe = TemplateModel(caller.account_id, template_id, name=fields["name"], user_id=caller.user_id)
    _check_loops(caller, probe, fields)
    html, key = _store_html(caller.account_id, template_id, fields.pop("html"), clock)
    files: list[AttachedFile] = fields.pop("attachments")
    _claim_files(caller, files, clock)
    template = TemplateModel(
        caller.account_id,
        template_id,
        user_id=fields.pop("user_id", caller.user_id),
        html=html,
        html_s3_key=key,
        attachments=[f.to_attribute() for f in files],
        created_at=now,
        updated_at=now,
        **{k: v for k, v in fields.items() if v is not None},
    )
    try:
        template.save(condition=TemplateModel.template_id.does_not_exist())
    except PutError as exc:
        raise Conflict("a template with this id exists") from exc
    return public_view(template, caller)


def list_for(caller: Caller) -> list[dict[str, Any]]:
    """The caller's own, the public and the shared templates (every one for an administrator),
    by name. An account's templates are a few pages at most: the rule is applied here, the same
    `_can_see` that reading and using one applies."""
    found = [
        public_view(t, caller, with_body=False)
        for t in TemplateModel.query(caller.account_id)
        if _can_see(caller, t)
    ]
    return sorted(found, key=lambda v: (v["name"].lower(), v["id"]))


def get(caller: Caller, template_id: str) -> dict[str, Any]:
    return public_view(_load(caller, template_id), caller)


def update(caller: Caller, template_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    template = _editable(caller, template_id)
    fields = _validated(caller, payload, current=template)
    if "html" in fields or "subject" in fields:
        subject = fields.get("subject", template.subject)
        body = fields["html"] if "html" in fields else html_of(template)
        fields["link_ids"] = link_ids_in(subject, body) or None
    if {"triggers", "link_ids", "repeat_max"} & set(fields):
        _check_loops(caller, TemplateModel(caller.account_id, template_id, **_plain(template)), fields)
    actions: list[Any] = []
    if "html" in fields:
        html, key = _store_html(caller.account_id, template_id, fields.pop("html"), clock)
        actions += [
            TemplateModel.html.set(html) if html is not None else TemplateModel.html.remove(),
            TemplateModel.html_s3_key.set(key) if key is not None else TemplateModel.html_s3_key.remove(),
        ]
    if "attachments" in fields:
        files: list[AttachedFile] = fields.pop("attachments")
        _claim_files(caller, files, clock)
        actions.append(TemplateModel.attachments.set([f.to_attribute() for f in files]))
    for name, value in fields.items():
        attribute = getattr(TemplateModel, name)
        actions.append(attribute.set(value) if value is not None else attribute.remove())
    actions.append(TemplateModel.updated_at.set(clock.now()))
    try:
        # The owner must still be the one the rights were checked against.
        template.update(
            actions=actions,
            condition=TemplateModel.template_id.exists() & (TemplateModel.user_id == int(template.user_id)),
        )
    except UpdateError as exc:
        raise Conflict("the template changed or was deleted meanwhile; load it again") from exc
    return public_view(template, caller)


def _plain(template: TemplateModel) -> dict[str, Any]:
    """The attributes the loop check reads, copied so the check's edits stay off the loaded item."""
    return {
        "name": template.name,
        "user_id": template.user_id,
        "triggers": template.triggers,
        "link_ids": template.link_ids,
        "repeat_max": template.repeat_max,
    }


def delete(caller: Caller, template_id: str) -> None:
    template = _editable(caller, template_id)
    try:
        template.delete(condition=TemplateModel.template_id.exists())
    except DeleteError as exc:
        raise NotFound("no such template", field="template_id") from exc


def for_use(who: Acting, template_id: Any) -> TemplateModel:
    """A template `who` may send (their own, a public one, any when account-wide)."""
    if not isinstance(template_id, str) or not template_id or len(template_id) > 64:
        raise InvalidInput("must be a template id", field="template_id")
    return _load(who, template_id)


def attached_files(template: TemplateModel) -> list[AttachedFile]:
    return _attached(template)

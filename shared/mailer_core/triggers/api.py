"""Triggers: the CRM actions users wire to email events and trigger links (/v1/triggers).

A trigger is a named action with its settings and an optional delay. Templates, composed
emails and trigger links name triggers by id; `automation` runs them. The types and their
settings (`params`):

- `task`: `text` (variables allowed), `task_type_id` (1 Follow-up by default), `deadline_seconds`
  after the run (a day by default), `responsible` ("entity": the entity's responsible user,
  or a user id), `entity` (lead, contact or company: where the task hangs; lead by default);
- `note`: `text`, `entity`;
- `stage`: `status_id` and, to change pipelines, `pipeline_id` (acts on a lead);
- `field`: `entity`, `field_id`, `value` (typed by the field: see `kommo_fields`; `{reset}`
  clears, `{date}` is the day the trigger runs);
- `email`: `template_id`: send that template to the same entity;
- `lead`: create a lead for the contact the email went to: `name`, `pipeline_id`, `status_id`,
  `responsible`;
- `tags`: `entity`, `add` and/or `remove` (tag names).

Only administrators create, change or delete triggers; every user of the account reads them,
because templates of every user choose among them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer_core.rendering.source_checks import validate_source
from mailer_core.store.models import TemplateModel, TriggerModel, plain_map
from mailer_core.triggers import loops as automation_loops

TYPES = ("task", "note", "stage", "field", "email", "lead", "tags")
ENTITIES = ("lead", "contact", "company")
FIELDS = {"name", "type", "params", "delay_seconds"}
MAX_DELAY_SECONDS = 10 * 366 * 86400  # "to infinity", within what a one-time schedule can hold
MAX_TEXT = 4000
MAX_TAGS = 20
MAX_ID = 2**53


def public_view(trigger: TriggerModel) -> dict[str, Any]:
    return {
        "id": trigger.trigger_id,
        "name": trigger.name,
        "type": trigger.type,
        "params": params_of(trigger),
        "delay_seconds": int(trigger.delay_seconds or 0),
        "user_id": int(trigger.user_id),
        "created_at": trigger.created_at.isoformat(),
        "updated_at": trigger.updated_at.isoformat(),
    }


def params_of(trigger: TriggerModel) -> dict[str, Any]:
    return plain_map(trigger.params)


# -- validation of each type's settings ----------------------------------------------------


def _field(name: str) -> str:
    return f"params.{name}"


def _text(params: Mapping[str, Any], name: str, *, required: bool, default: str = "") -> str:
    value = params.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise InvalidInput("must be text", field=_field(name))
    value = value.strip()
    if required and not value:
        raise InvalidInput("is required", field=_field(name))
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"is longer than {MAX_TEXT} characters", field=_field(name))
    return _compiles(value, name)


def _compiles(value: str, name: str) -> str:
    """A text with template variables ({{ lead.name }}) must compile, as a template's must."""
    if "{{" not in value and "{%" not in value:
        return value
    return validate_source(value, field=_field(name), html=False)


def _int(
    params: Mapping[str, Any], name: str, *, required: bool, default: int | None = None, minimum: int = 1
) -> int | None:
    value = params.get(name, default)
    if value is None:
        if required:
            raise InvalidInput("is required", field=_field(name))
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < MAX_ID:
        raise InvalidInput(f"must be a whole number of at least {minimum}", field=_field(name))
    return value


def _entity(params: Mapping[str, Any], default: str = "lead") -> str:
    value = params.get("entity", default) or default
    if value not in ENTITIES:
        raise InvalidInput(f"must be one of {', '.join(ENTITIES)}", field=_field("entity"))
    return str(value)


def _responsible(params: Mapping[str, Any]) -> str | int:
    value = params.get("responsible", "entity")
    if value in (None, "", "entity"):
        return "entity"
    checked = _int({"responsible": value}, "responsible", required=True)
    assert checked is not None
    return checked


def _tags(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name) or []
    if isinstance(value, str):
        value = [t for t in value.split(",")]
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise InvalidInput(f"must be a list of at most {MAX_TAGS} tag names", field=_field(name))
    tags: list[str] = []
    for n, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip() or len(tag.strip()) > 255:
            raise InvalidInput("must be a tag name of 1 to 255 characters", field=f"{_field(name)}.{n}")
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags


def _task(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    return {
        "text": _text(p, "text", required=True),
        "task_type_id": _int(p, "task_type_id", required=False, default=1),
        "deadline_seconds": _int(p, "deadline_seconds", required=False, default=86400, minimum=0),
        "responsible": _responsible(p),
        "entity": _entity(p),
    }


def _note(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    return {"text": _text(p, "text", required=True), "entity": _entity(p)}


def _stage(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"status_id": _int(p, "status_id", required=True)}
    pipeline = _int(p, "pipeline_id", required=False)
    if pipeline is not None:
        out["pipeline_id"] = pipeline
    return out


def _field_change(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    value = p.get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(
            "must be the field's new value as text ({reset} clears the field)", field=_field("value")
        )
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"is longer than {MAX_TEXT} characters", field=_field("value"))
    value = _compiles(value, "value")
    return {"entity": _entity(p), "field_id": _int(p, "field_id", required=True), "value": value}


def _email(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    template_id = p.get("template_id")
    if not isinstance(template_id, str) or not template_id or len(template_id) > 64:
        raise InvalidInput("must be a template id", field=_field("template_id"))
    try:
        TemplateModel.get(account_id, template_id)
    except DoesNotExist as exc:
        raise InvalidInput("no such template", field=_field("template_id")) from exc
    return {"template_id": template_id}


def _lead(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": _text(p, "name", required=False, default="{subject}") or "{subject}",
        "responsible": _responsible(p),
    }
    for key in ("pipeline_id", "status_id"):
        value = _int(p, key, required=False)
        if value is not None:
            out[key] = value
    return out


def _tag_change(p: Mapping[str, Any], account_id: int) -> dict[str, Any]:
    add, remove = _tags(p, "add"), _tags(p, "remove")
    if not add and not remove:
        raise InvalidInput("name tags to add or to remove", field=_field("add"))
    return {"entity": _entity(p), "add": add, "remove": remove}


_VALIDATORS: dict[str, Callable[[Mapping[str, Any], int], dict[str, Any]]] = {
    "task": _task,
    "note": _note,
    "stage": _stage,
    "field": _field_change,
    "email": _email,
    "lead": _lead,
    "tags": _tag_change,
}
_ALLOWED_PARAMS = {
    "task": {"text", "task_type_id", "deadline_seconds", "responsible", "entity"},
    "note": {"text", "entity"},
    "stage": {"status_id", "pipeline_id"},
    "field": {"entity", "field_id", "value"},
    "email": {"template_id"},
    "lead": {"name", "pipeline_id", "status_id", "responsible"},
    "tags": {"entity", "add", "remove"},
}


def _validated(account_id: int, payload: Any, *, current: TriggerModel | None) -> dict[str, Any]:
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    out: dict[str, Any] = {}
    if current is None or "name" in data:
        out["name"] = validation.text(data, "name", required=True, max_length=255)
    kind = data.get("type", current.type if current else None)
    if kind not in TYPES:
        raise InvalidInput(f"must be one of {', '.join(TYPES)}", field="type")
    if current is not None and "type" in data and "params" not in data and kind != current.type:
        raise InvalidInput("a new type needs its params", field="params")
    if current is None or "params" in data or "type" in data:
        params = data.get("params", params_of(current) if current else {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidInput("must be an object", field="params")
        unknown = sorted(set(params) - _ALLOWED_PARAMS[kind])
        if unknown:
            raise InvalidInput(f"{kind} triggers take no {unknown[0]!r}", field=f"params.{unknown[0]}")
        out["type"] = kind
        out["params"] = _VALIDATORS[kind](params, account_id)
    if current is None or "delay_seconds" in data:
        out["delay_seconds"] = validation.integer(
            data, "delay_seconds", default=0, minimum=0, maximum=MAX_DELAY_SECONDS
        )
    return out


def _require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise Forbidden("only Mailer administrators set up triggers", reason="admin_only")


def _load(caller: Caller, trigger_id: str) -> TriggerModel:
    if not isinstance(trigger_id, str) or not 0 < len(trigger_id) <= 64:
        raise NotFound("no such trigger", field="trigger_id")
    try:
        return TriggerModel.get(caller.account_id, trigger_id)
    except DoesNotExist as exc:
        raise NotFound("no such trigger", field="trigger_id") from exc


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    _require_admin(caller)
    fields = _validated(caller.account_id, payload, current=None)
    now = clock.now()
    trigger = TriggerModel(
        caller.account_id,
        clock.new_id(),
        user_id=caller.user_id,
        created_at=now,
        updated_at=now,
        **fields,
    )
    automation_loops.check_trigger(caller.account_id, trigger)
    try:
        trigger.save(condition=TriggerModel.trigger_id.does_not_exist())
    except PutError as exc:
        raise Conflict("a trigger with this id exists") from exc
    return public_view(trigger)


def list_for(caller: Caller) -> list[dict[str, Any]]:
    found = [public_view(t) for t in TriggerModel.query(caller.account_id)]
    return sorted(found, key=lambda v: (v["name"].lower(), v["id"]))


def get(caller: Caller, trigger_id: str) -> dict[str, Any]:
    return public_view(_load(caller, trigger_id))


def update(caller: Caller, trigger_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    _require_admin(caller)
    trigger = _load(caller, trigger_id)
    fields = _validated(caller.account_id, payload, current=trigger)
    for name, value in fields.items():
        setattr(trigger, name, value)
    automation_loops.check_trigger(caller.account_id, trigger)
    actions = [getattr(TriggerModel, name).set(value) for name, value in fields.items()]
    actions.append(TriggerModel.updated_at.set(clock.now()))
    try:
        trigger.update(actions=actions, condition=TriggerModel.trigger_id.exists())
    except UpdateError as exc:
        raise NotFound("no such trigger", field="trigger_id") from exc
    return public_view(trigger)


def delete(caller: Caller, trigger_id: str) -> None:
    """Delete a trigger. Messages that chose it keep its id; their run records "trigger deleted"."""
    _require_admin(caller)
    trigger = _load(caller, trigger_id)
    try:
        trigger.delete(condition=TriggerModel.trigger_id.exists())
    except DeleteError as exc:
        raise NotFound("no such trigger", field="trigger_id") from exc


def find_many(account_id: int, trigger_ids: list[str]) -> dict[str, TriggerModel]:
    """The account's triggers with these ids (one BatchGet); missing ones are left out."""
    keys = [(account_id, t) for t in dict.fromkeys(trigger_ids)]
    return {t.trigger_id: t for t in TriggerModel.batch_get(keys)} if keys else {}


def validate_ids(account_id: int, value: Any, field: str) -> list[str]:
    """A list of existing trigger ids (for templates, composes and links), without repeats."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 50:
        raise InvalidInput("must be a list of at most 50 trigger ids", field=field)
    ids: list[str] = []
    for n, item in enumerate(value):
        if not isinstance(item, str) or not 0 < len(item) <= 64:
            raise InvalidInput("must be a trigger id", field=f"{field}.{n}")
        if item not in ids:
            ids.append(item)
    found = find_many(account_id, ids)
    for n, item in enumerate(ids):
        if item not in found:
            raise InvalidInput(f"no such trigger: {item}", field=f"{field}.{n}")
    return ids


EVENTS = ("sent", "opened", "not_opened", "failed", "replied", "downloaded")
MIN_NOT_OPENED_SECONDS = 60
MAX_NOT_OPENED_SECONDS = 366 * 86400


def validate_event_triggers(
    account_id: int, value: Any, field: str = "triggers"
) -> dict[str, list[str]] | None:
    """`{"sent": [...], "opened": [...], "not_opened": [...], "failed": [...], "replied": [...]}`:
    the triggers an email runs on each event (unknown events and trigger ids are refused, naming them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"must be an object with {', '.join(EVENTS)}", field=field)
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise InvalidInput(
            f"unknown event {unknown[0]!r}; events are {', '.join(EVENTS)}", field=f"{field}.{unknown[0]}"
        )
    chosen = {event: validate_ids(account_id, value.get(event), f"{field}.{event}") for event in EVENTS}
    return {event: ids for event, ids in chosen.items() if ids}


def validate_not_opened_after(payload: Mapping[str, Any], field: str = "not_opened_after") -> int | None:
    """Seconds "not opened" waits: 1 minute or more (None: the email has no not-opened timer)."""
    if payload.get(field) is None:
        return None
    return validation.integer(
        payload, field, default=0, minimum=MIN_NOT_OPENED_SECONDS, maximum=MAX_NOT_OPENED_SECONDS
    )

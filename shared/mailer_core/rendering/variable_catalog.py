"""The variables an account's templates can use (`GET /v1/variables`, docs/letters.md#variables).

The editor's picker shows this list instead of guessing: every standard variable of a lead,
contact, company, the sending manager (`user`), the message and the moment of sending, as
`rendering.variables` builds them; then every custom field the account really has, read from
Kommo's custom-fields API (`GET /api/v4/{leads|contacts|companies}/custom_fields`, through
the account's rate-limited client), each by name (`{{ lead.cf["Delivery"] }}`) and by id
(`{{ lead.cf[560003] }}`) and by code where it has one; the modifiers (Jinja2 filters) with
the field types they suit; and the widget's own placeholders (`{subject}`, `{triggerlink:N}` …).

The fields are cached per account for `CACHE_SECONDS` in the container, so opening the editor
again does not cost three Kommo requests each time; a field added in Kommo shows within a
minute. An account not connected to Kommo gets the standard variables and no custom fields,
with `custom_fields_error` saying why.
"""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.base.errors import Conflict
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo.errors import KommoError
from mailer_core.rendering import legacy_placeholders, modifiers
from mailer_core.store.models import AccountModel

CACHE_SECONDS = 60.0
_FIELDS: TtlCache[int, dict[str, list[dict[str, Any]]]] = TtlCache(CACHE_SECONDS)
ENTITIES = (("leads", "lead"), ("contacts", "contact"), ("companies", "company"))

_PERSON = [("name", "Name"), ("email", "Email"), ("phone", "Phone")]
STANDARD: dict[str, list[tuple[str, str]]] = {
    "lead": [
        ("id", "ID"),
        ("name", "Name"),
        ("price", "Budget"),
        ("stage", "Stage"),
        ("pipeline", "Pipeline"),
        ("responsible.name", "Responsible user"),
        ("responsible.email", "Responsible user's email"),
        ("tags", "Tags"),
        ("created_at", "Created"),
        ("updated_at", "Updated"),
        ("closed_at", "Closed"),
        ("url", "Link in Kommo"),
    ],
    "contact": [
        ("id", "ID"),
        ("name", "Name"),
        ("first_name", "First name"),
        ("last_name", "Last name"),
        ("middle_name", "Middle name"),
        ("email", "Email"),
        ("phone", "Phone"),
        ("position", "Position"),
        ("responsible.name", "Responsible user"),
    ],
    "company": [("id", "ID"), *_PERSON, ("web", "Web site"), ("responsible.name", "Responsible user")],
    "user": [("id", "ID"), *_PERSON, ("signature", "Signature")],
    "message": [("id", "Message id"), ("subject", "Subject"), ("sent_at", "Sent at")],
    "account": [
        ("id", "Account id"),
        ("subdomain", "Subdomain"),
        ("name", "Account name"),
        ("currency", "Currency"),
    ],
}
OTHER = [("today", "Today's date"), ("now", "Date and time of sending")]

# Which modifiers suit a field's type (Kommo's `type` of a custom field).
MODIFIERS_BY_TYPE = {
    "numeric": ["number", "money", "amount", "in_words", "plural"],
    "price": ["number", "money", "amount", "in_words"],
    "monetary": ["number", "money", "amount", "in_words"],
    "date": ["date"],
    "date_time": ["datetime", "date"],
    "birthday": ["date"],
    "multiselect": ["join_values"],
    "multitext": ["join_values"],
    "text": ["inflect", "first_name", "last_name", "middle_name"],
}


def _standard() -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for group, items in STANDARD.items():
        base = "manager" if group == "user" else group
        groups[group] = [{"label": label, "variable": f"{{{{ {base}.{path} }}}}"} for path, label in items]
    groups["other"] = [{"label": label, "variable": f"{{{{ {name} }}}}"} for name, label in OTHER]
    return groups


def _field_variables(prefix: str, field: dict[str, Any]) -> dict[str, Any]:
    name = str(field.get("name") or "")
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    kind = str(field.get("type") or "")
    item: dict[str, Any] = {
        "id": field.get("id"),
        "name": name,
        "type": kind,
        "code": field.get("code"),
        "by_name": f'{{{{ {prefix}.cf["{quoted}"] }}}}',
        "by_id": f"{{{{ {prefix}.cf[{int(field.get('id') or 0)}] }}}}",
        "modifiers": MODIFIERS_BY_TYPE.get(kind, []),
    }
    if field.get("code"):
        item["by_code"] = f'{{{{ {prefix}.cf["{field["code"]}"] }}}}'
    if field.get("enums"):
        item["values"] = [str(e.get("value")) for e in field["enums"] if isinstance(e, dict)]
    return item


def _read_fields(account_id: int) -> dict[str, list[dict[str, Any]]]:
    try:
        account = AccountModel.get(account_id)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field=None) from None
    client = kommo_accounts.client_for_account(account)
    return {kind: client.custom_fields(kind) for kind, _ in ENTITIES}  # type: ignore[arg-type]


def forget(account_id: int | None = None) -> None:
    """Drop the cached fields (tests; an account's fields changed)."""
    _FIELDS.clear()


def for_account(account_id: int) -> dict[str, Any]:
    """The whole picker: standard variables, custom fields by entity, modifiers, placeholders."""
    error = None
    try:
        fields = _FIELDS.get_or_load(account_id, time.monotonic(), lambda: _read_fields(account_id))
    except (Conflict, KommoError) as exc:
        fields, error = {}, str(exc)
    return {
        "standard": _standard(),
        "custom_fields": {
            prefix: [_field_variables(prefix, f) for f in fields.get(kind, [])] for kind, prefix in ENTITIES
        },
        "custom_fields_error": error,
        "modifiers": sorted(modifiers.FILTERS),
        "placeholders": [f"{{{name}}}" for name in legacy_placeholders.LEGACY_NAMES] + ["{template}"],
    }

"""Custom field values: a user's value and a field definition → the API v4 `custom_fields_values` element.

The "Change field" trigger writes what the user typed (after variables are filled in) to a
lead, contact or company field. `field_value(definition, value)` turns it into the element
`{"field_id": id, "values": [...]}` that `PATCH /api/v4/{entity}/{id}` takes, by the field's
type (`GET /api/v4/{entity}/custom_fields` gives the definitions):

- text, textarea, streetaddress: any text, which replaces the value → `[{"value": "text"}]`;
- numeric, price, monetary: a number and nothing else (`12`, `-3.5`, `1 000,50`) →
  `[{"value": "12"}]`;
- checkbox: `1` or `0` (also true/false, yes/no, on/off) → `[{"value": true}]`;
- select, radiobutton, category: an option's exact text → `[{"enum_id": 17}]`;
- multiselect: an option's exact text (several, comma-separated), **added** to the chosen
  ones → `[{"enum_id": 17}, {"enum_id": 19}]`;
- date, birthday: `YYYY-MM-DD` (or an ISO date-time, a date, epoch seconds) → the unix time
  of that day's midnight, `[{"value": 1795392000}]`;
- date_time: `YYYY-MM-DD HH:MM[:SS]`, ISO 8601 or epoch seconds → `[{"value": <unix s>}]`;
- url: an http(s) URL → `[{"value": "https://…"}]`;
- multitext (PHONE, EMAIL): a number or an address, **added** to the entity's values, of
  the kind `enum_code` (WORK by default) → `[{"value": "a@b.c", "enum_code": "WORK"}, …]`.

Days and times without a zone are read in the given `tz` (the account's time zone; UTC by
default), so a date lands on the same day in Kommo's interface.

Clearing: the value `{reset}` clears any field. Kommo documents no way to clear a field;
what integrations do, and what this sends, is `{"field_id": id, "values": null}` (Kommo then
drops the field's values; the stand-in does the same). A checkbox is switched off instead:
`[{"value": false}]`, so "the switch becomes OFF" as the product promises.

Adding (multiselect, multitext) needs the entity's current values (`current`, the
`custom_fields_values` element a GET returned for this field), because a PATCH replaces all
of a field's values; without them the value replaces the others.

Anything that does not fit the type raises `InvalidInput` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from mailer_core.base.errors import InvalidInput

RESET = "{reset}"
TEXT_TYPES = {"text", "textarea", "streetaddress"}
NUMBER_TYPES = {"numeric", "price", "monetary"}
ENUM_TYPES = {"select", "radiobutton", "category"}
DATE_TYPES = {"date", "birthday"}
SUPPORTED_TYPES = (
    TEXT_TYPES
    | NUMBER_TYPES
    | ENUM_TYPES
    | DATE_TYPES
    | {
        "checkbox",
        "multiselect",
        "date_time",
        "url",
        "multitext",
    }
)
MULTITEXT_CODES = {
    "EMAIL": ("WORK", "PRIV", "OTHER"),
    "PHONE": ("WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"),
}
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")


def _field_name(definition: Mapping[str, Any]) -> str:
    return f"custom_fields.{definition.get('id')}"


def _bad(definition: Mapping[str, Any], message: str) -> InvalidInput:
    name = definition.get("name") or definition.get("id")
    return InvalidInput(f"{name!s}: {message}", field=_field_name(definition))


def field_value(
    definition: Mapping[str, Any],
    value: Any,
    *,
    current: Mapping[str, Any] | None = None,
    enum_code: str | None = None,
    tz: tzinfo = UTC,
) -> dict[str, Any]:
    """The `custom_fields_values` element that writes `value` to the field `definition` describes."""
    field_id = definition.get("id")
    type_ = str(definition.get("type") or "")
    if not isinstance(field_id, int) or isinstance(field_id, bool):
        raise InvalidInput("the field definition has no id", field="field_id")
    if type_ not in SUPPORTED_TYPES:
        raise _bad(definition, f"fields of type {type_!r} cannot be changed")
    if isinstance(value, str) and value.strip().lower() == RESET:
        if type_ == "checkbox":
            return {"field_id": field_id, "values": [{"value": False}]}
        return {"field_id": field_id, "values": None}
    return {"field_id": field_id, "values": _values(definition, type_, value, current, enum_code, tz)}


# Many branches on purpose: one branch per Kommo field type.
def _values(  # noqa: C901
    definition: Mapping[str, Any],
    type_: str,
    value: Any,
    current: Mapping[str, Any] | None,
    enum_code: str | None,
    tz: tzinfo,
) -> list[dict[str, Any]]:
    if type_ in TEXT_TYPES:
        text = "" if value is None else str(value)
        if not text.strip():
            raise _bad(definition, f"an empty value does not change the field; write {RESET} to clear it")
        return [{"value": text}]
    if type_ in NUMBER_TYPES:
        return [{"value": _number(definition, value)}]
    if type_ == "checkbox":
        return [{"value": _flag(definition, value)}]
    if type_ in ENUM_TYPES:
        return [{"enum_id": _enum_id(definition, value)}]
    if type_ == "multiselect":
        wanted = value if isinstance(value, list | tuple) else [p for p in str(value).split(",") if p.strip()]
        chosen = [int(v["enum_id"]) for v in _current_values(current) if isinstance(v.get("enum_id"), int)]
        for option in wanted:
            enum_id = _enum_id(definition, option)
            if enum_id not in chosen:
                chosen.append(enum_id)
        return [{"enum_id": e} for e in chosen]
    if type_ in DATE_TYPES:
        return [{"value": _timestamp(definition, value, tz, day_only=True)}]
    if type_ == "date_time":
        return [{"value": _timestamp(definition, value, tz, day_only=False)}]
    if type_ == "url":
        url = str(value or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _bad(definition, "must be an http(s) URL")
        return [{"value": url}]
    return _multitext(definition, value, current, enum_code)


def _current_values(current: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not current:
        return []
    return [v for v in current.get("values") or [] if isinstance(v, Mapping)]


def _number(definition: Mapping[str, Any], value: Any) -> str:
    if isinstance(value, bool):
        raise _bad(definition, "must be a number")
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
    else:
        text = re.sub(r"[\s\u00a0]", "", str(value or ""))
        if not _NUMBER.fullmatch(text):
            raise _bad(definition, "must be a number without other characters")
        try:
            number = Decimal(text.replace(",", "."))
        except InvalidOperation as exc:  # pragma: no cover - the pattern already checked it
            raise _bad(definition, "must be a number") from exc
    if not number.is_finite():
        raise _bad(definition, "must be a number")
    text = format(number.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def _flag(definition: Mapping[str, Any], value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(definition, "write 1 to switch it on and 0 to switch it off")


def _enum_id(definition: Mapping[str, Any], value: Any) -> int:
    """The option whose text is exactly `value` (surrounding spaces aside); an option id is accepted too."""
    enums = [e for e in definition.get("enums") or [] if isinstance(e, Mapping)]
    if isinstance(value, int) and not isinstance(value, bool) and any(e.get("id") == value for e in enums):
        return value
    text = str(value if value is not None else "").strip()
    for enum in enums:
        if str(enum.get("value", "")).strip() == text:
            return int(enum["id"])
    options = ", ".join(repr(str(e.get("value"))) for e in enums[:20])
    raise _bad(definition, f"{text!r} is not one of its options ({options})")


def _timestamp(definition: Mapping[str, Any], value: Any, tz: tzinfo, *, day_only: bool) -> int:
    moment: datetime
    if isinstance(value, bool):
        raise _bad(definition, "must be a date")
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, tz)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=tz)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), tz)
    else:
        text = str(value or "").strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                moment = datetime.combine(date.fromisoformat(text), time(), tz)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
        except ValueError as exc:
            example = "YYYY-MM-DD" if day_only else "YYYY-MM-DD HH:MM"
            raise _bad(definition, f"must be a date like {example}") from exc
    if day_only:
        local = moment.astimezone(tz)
        moment = datetime.combine(local.date(), time(), tz)
    return int(moment.timestamp())


def _multitext(
    definition: Mapping[str, Any], value: Any, current: Mapping[str, Any] | None, enum_code: str | None
) -> list[dict[str, Any]]:
    text = str(value or "").strip()
    if not text:
        raise _bad(definition, f"an empty value does not change the field; write {RESET} to clear it")
    code = str(definition.get("code") or "")
    allowed = MULTITEXT_CODES.get(code) or tuple(
        str(e.get("value")) for e in definition.get("enums") or [] if isinstance(e, Mapping)
    )
    kind = (enum_code or "WORK").upper()
    if allowed and kind not in allowed:
        raise _bad(definition, f"the kind must be one of {', '.join(allowed)}")
    if code == "EMAIL" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise _bad(definition, "must be an email address")
    kept: list[dict[str, Any]] = []
    for existing in _current_values(current):
        entry = {"value": str(existing.get("value") or "")}
        if existing.get("enum_code"):
            entry["enum_code"] = str(existing["enum_code"])
        elif isinstance(existing.get("enum_id"), int):
            entry["enum_id"] = existing["enum_id"]  # type: ignore[assignment]
        if entry["value"]:
            kept.append(entry)
    if any(e["value"].lower() == text.lower() for e in kept):
        return kept
    return [*kept, {"value": text, "enum_code": kind}]


def current_value(entity: Mapping[str, Any], field_id: int) -> Mapping[str, Any] | None:
    """The entity's `custom_fields_values` element for a field (what `current` takes), or None."""
    for item in entity.get("custom_fields_values") or []:
        if isinstance(item, Mapping) and item.get("field_id") == field_id:
            return item
    return None


def by_id(definitions: Sequence[Mapping[str, Any]], field_id: int) -> Mapping[str, Any]:
    """The definition of a field among `KommoClient.custom_fields(...)`; InvalidInput when absent."""
    for definition in definitions:
        if definition.get("id") == field_id:
            return definition
    raise InvalidInput(f"the account has no custom field {field_id}", field="field_id")

"""Custom field values by type: what the "Change field" trigger sends for what the user wrote."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from mailer_core.base.errors import InvalidInput
from mailer_core.kommo.fields import field_value

SELECT = {
    "id": 1,
    "name": "Delivery",
    "type": "select",
    "enums": [{"id": 11, "value": "Pickup"}, {"id": 12, "value": "Post"}],
}
MULTI = {
    "id": 2,
    "name": "Interests",
    "type": "multiselect",
    "enums": [{"id": 21, "value": "A"}, {"id": 22, "value": "B"}],
}
EMAIL = {"id": 3, "name": "Email", "type": "multitext", "code": "EMAIL", "enums": None}


def field(type_: str, **extra: Any) -> dict[str, Any]:
    return {"id": 9, "name": "Field", "type": type_, **extra}


@pytest.mark.parametrize(
    ("definition", "value", "values"),
    [
        (field("text"), "Hello", [{"value": "Hello"}]),
        (field("textarea"), "a\nb", [{"value": "a\nb"}]),
        (field("numeric"), " 1 000,50 ", [{"value": "1000.5"}]),
        (field("numeric"), 12, [{"value": "12"}]),
        (field("price"), "-3.25", [{"value": "-3.25"}]),
        (field("checkbox"), "1", [{"value": True}]),
        (field("checkbox"), "0", [{"value": False}]),
        (SELECT, "Post", [{"enum_id": 12}]),
        (SELECT, " Post ", [{"enum_id": 12}]),
        (field("radiobutton", enums=[{"id": 5, "value": "Yes"}]), "Yes", [{"enum_id": 5}]),
        (MULTI, "B", [{"enum_id": 22}]),
        (MULTI, "A, B", [{"enum_id": 21}, {"enum_id": 22}]),
        (field("date"), "2026-12-31", [{"value": 1798675200}]),
        (
            field("birthday"),
            date(1990, 5, 17),
            [{"value": int(datetime(1990, 5, 17, tzinfo=UTC).timestamp())}],
        ),
        (
            field("date_time"),
            "2026-12-01 15:30",
            [{"value": int(datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp())}],
        ),
        (
            field("date_time"),
            "2026-12-01T15:30:00+03:00",
            [{"value": int(datetime(2026, 12, 1, 12, 30, tzinfo=UTC).timestamp())}],
        ),
        (field("url"), "https://example.com/a?b=1", [{"value": "https://example.com/a?b=1"}]),
        (EMAIL, "a@b.example", [{"value": "a@b.example", "enum_code": "WORK"}]),
    ],
)
def test_each_type_gets_its_v4_shape(
    definition: dict[str, Any], value: Any, values: list[dict[str, Any]]
) -> None:
    assert field_value(definition, value) == {"field_id": definition["id"], "values": values}


def test_reset_clears_with_null_and_switches_a_checkbox_off() -> None:
    for definition in (field("text"), SELECT, MULTI, EMAIL, field("date"), field("numeric")):
        assert field_value(definition, "{reset}") == {"field_id": definition["id"], "values": None}
    assert field_value(field("checkbox"), " {RESET} ") == {"field_id": 9, "values": [{"value": False}]}


def test_adding_keeps_the_current_values() -> None:
    current_multi = {"field_id": 2, "values": [{"value": "A", "enum_id": 21}]}
    assert field_value(MULTI, "B", current=current_multi)["values"] == [{"enum_id": 21}, {"enum_id": 22}]
    assert field_value(MULTI, "A", current=current_multi)["values"] == [{"enum_id": 21}]
    current_email = {"field_id": 3, "values": [{"value": "old@b.example", "enum_id": 7, "enum_code": "WORK"}]}
    assert field_value(EMAIL, "new@b.example", enum_code="priv", current=current_email)["values"] == [
        {"value": "old@b.example", "enum_code": "WORK"},
        {"value": "new@b.example", "enum_code": "PRIV"},
    ]
    assert field_value(EMAIL, "OLD@b.example", current=current_email)["values"] == [
        {"value": "old@b.example", "enum_code": "WORK"}
    ]


def test_a_day_is_midnight_in_the_accounts_time_zone() -> None:
    moscow = timezone(timedelta(hours=3))
    assert field_value(field("date"), "2026-12-31", tz=moscow)["values"] == [
        {"value": int(datetime(2026, 12, 31, tzinfo=moscow).timestamp())}
    ]
    # a date-time given for a date field keeps its day only
    assert field_value(field("date"), "2026-12-31T18:45:00")["values"] == [{"value": 1798675200}]


@pytest.mark.parametrize(
    ("definition", "value", "words"),
    [
        (field("numeric"), "12 pcs", "number without other characters"),
        (field("numeric"), True, "number"),
        (field("checkbox"), "maybe", "write 1"),
        (SELECT, "Courier", "not one of its options"),
        (MULTI, "C", "not one of its options"),
        (field("date"), "31.12.2026", "YYYY-MM-DD"),
        (field("url"), "javascript:alert(1)", "http(s) URL"),
        (EMAIL, "not an address", "email address"),
        (field("multitext", code="PHONE"), "+1", "kind must be"),
        (field("text"), "  ", "{reset}"),
        (field("file"), "x", "cannot be changed"),
        (field("smart_address"), "x", "cannot be changed"),
    ],
)
def test_a_value_that_does_not_fit_names_the_field(
    definition: dict[str, Any], value: Any, words: str
) -> None:
    kwargs = {"enum_code": "PAGER"} if definition.get("code") == "PHONE" else {}
    with pytest.raises(InvalidInput) as caught:
        field_value(definition, value, **kwargs)
    assert words in caught.value.message
    assert caught.value.field == f"custom_fields.{definition['id']}"

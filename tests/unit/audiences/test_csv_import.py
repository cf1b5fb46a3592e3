"""A target list's CSV file read: the good rows kept, each refused row reported with why."""

from __future__ import annotations

import pytest
from mailer_core.audiences import lists_api
from mailer_core.audiences.lists_api import read_csv
from mailer_core.base.errors import InvalidInput, PayloadTooLarge


def test_good_rows_are_kept_and_bad_rows_reported_by_row_and_reason() -> None:
    text = (
        "\ufeffName;E-mail;City\n"
        "Анна;anna@example.com;Москва\n"
        "Bob;not-an-address;Kazan\n"
        ";;\n"
        "Anna again;ANNA@example.com;Tver\n"
        '"Smith, John";john@example.com;"Perm"\n'
        "\n"
        "Olga;olga@пример.рф;\n"
    )
    parsed = read_csv(text)
    assert [(row, m.address, m.name) for row, m in parsed.good] == [
        (2, "anna@example.com", "Анна"),
        (6, "john@example.com", "Smith, John"),
        (8, "olga@пример.рф", "Olga"),
    ]
    assert [r.to_json() for r in parsed.refused] == [
        {"row": 3, "reason": "bad_address", "value": "not-an-address"},
        {"row": 4, "reason": "empty", "value": ""},
        {"row": 5, "reason": "duplicate", "value": "ANNA@example.com"},
        {"row": 7, "reason": "empty", "value": ""},
    ]
    assert parsed.rows == 7


def test_commas_and_an_email_column_alone() -> None:
    parsed = read_csv("email\r\na@example.com\r\nb@example.com\r\n")
    assert [m.address for _, m in parsed.good] == ["a@example.com", "b@example.com"]
    assert [m.name for _, m in parsed.good] == [None, None] and parsed.refused == []


@pytest.mark.parametrize("text", ["", "\n\n", "name,phone\nAnna,123\n"])
def test_a_file_without_an_email_column_is_refused_naming_csv(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        read_csv(text)
    assert caught.value.field == "csv"


def test_too_big_or_too_many_rows_is_a_413(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        read_csv("email\n" + "a@example.com\n" * (lists_api.IMPORT_BYTES // 14 + 1))
    assert caught.value.field == "csv" and caught.value.details["limit_bytes"] == lists_api.IMPORT_BYTES
    monkeypatch.setattr(lists_api, "IMPORT_ROWS", 3)
    with pytest.raises(PayloadTooLarge) as rows:
        read_csv("email\n" + "".join(f"u{n}@example.com\n" for n in range(4)))
    assert rows.value.details["limit_rows"] == 3

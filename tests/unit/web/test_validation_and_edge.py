"""Pure rules: field checks and which origins may call the API."""

from __future__ import annotations

from datetime import UTC

import pytest
from mailer_core.base import validation
from mailer_core.base.config import Settings, from_environment
from mailer_core.base.errors import InvalidInput
from mailer_core.web.edge import origin_allowed


@pytest.mark.parametrize(
    "address",
    ["ivan.petrov@example.com", "a+tag@sub.example.co.uk", "иван@пример.рф", "o'brien@example.ie"],
)
def test_valid_addresses(address: str) -> None:
    assert validation.email_address(f"  {address} ", "to") == address


@pytest.mark.parametrize("address", ["", "plain", "a@b", "a@@b.com", "a b@c.com", "<a@b.com>", "a@b.c", 7])
def test_invalid_addresses_name_the_field(address: object) -> None:
    with pytest.raises(InvalidInput) as err:
        validation.email_address(address, "cc[2]")
    assert err.value.field == "cc[2]"


def test_timestamps_need_a_zone_and_are_normalised_to_utc() -> None:
    parsed = validation.timestamp({"send_at": "2026-11-24T15:00:00+03:00"}, "send_at")
    assert parsed is not None and parsed.tzinfo == UTC and parsed.hour == 12
    with pytest.raises(InvalidInput, match="time zone"):
        validation.timestamp({"send_at": "2026-11-24T15:00:00"}, "send_at")


def test_integers_refuse_booleans_and_ranges() -> None:
    with pytest.raises(InvalidInput, match="integer"):
        validation.integer({"n": True}, "n")
    with pytest.raises(InvalidInput, match="at least 1"):
        validation.integer({"n": 0}, "n", minimum=1)
    assert validation.integer({}, "n", default=3) == 3


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://mailerdemo.kommo.com", True),
        ("https://my-company.amocrm.ru", True),
        ("https://shop.amocrm.com", True),
        ("http://mailerdemo.kommo.com", False),
        ("https://kommo.com", False),
        ("https://mailerdemo.kommo.com.evil.example", False),
        ("https://evil.example/https://a.kommo.com", False),
        (None, False),
    ],
)
def test_kommo_origins(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin) is allowed


def test_settings_read_the_environment_with_defaults() -> None:
    settings = from_environment(
        {
            "MAILER_MESSAGES_TABLE": "t",
            "KOMMO_REDIRECT_URI": "https://m.example/cb?x=1",
            "MAILER_ALLOW_PLAINTEXT_SMTP": "true",
            "MAILER_EXTRA_CORS_ORIGINS": "a, b",
        }
    )
    assert settings.messages_table == "t"
    assert settings.accounts_table == Settings().accounts_table
    assert settings.token_audience == "https://m.example"
    assert settings.allow_plaintext_smtp is True
    assert settings.extra_cors_origins == ("a", "b")
    assert from_environment({}).allow_plaintext_smtp is False


@pytest.mark.parametrize("value", ["", "ж" * 600, "x" * 65, 7, None, ["01J"]])
def test_an_id_dynamodb_would_refuse_as_a_key_is_a_422_naming_the_field(value: object) -> None:
    # DynamoDB refuses an empty key and one over 1024 bytes with a ValidationException (a 500)
    with pytest.raises(InvalidInput) as err:
        validation.identifier(value, "mailbox_id")
    assert err.value.field == "mailbox_id"
    assert validation.identifier("01JABCDEFGHJKMNPQRSTVWXYZ0", "mailbox_id") == "01JABCDEFGHJKMNPQRSTVWXYZ0"
    assert validation.optional_identifier({"mailbox_id": ""}, "mailbox_id") is None

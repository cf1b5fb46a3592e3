"""Pure rules of the pipeline hooks: Kommo's bracket forms, action settings, ids, return URLs."""

from __future__ import annotations

import pytest
from mailer_core.base.errors import InvalidInput, MalformedRequest
from mailer_core.kommo import client as kommo
from mailer_core.kommo_hooks import bracket_form, jobs
from mailer_core.messages import compose as messages


def test_a_bracket_form_becomes_nested_objects_with_string_values_and_decoded_text() -> None:
    text = (
        "event%5Btype%5D=14&event[data][id]=24000001&subdomain=mailerdemo"
        "&action[settings][widget][settings][comment]=%D0%9A%D0%BE%D0%BC%D0%BC%D0%B5%D1%80%D1%87%D0%B5%D1%81%D0%BA%D0%BE%D0%B5+%D0%BF%D1%80%D0%B5%D0%B4%D0%BB%D0%BE%D0%B6%D0%B5%D0%BD%D0%B8%D0%B5"
        "&action[settings][widget][settings][to]=%7B%7B+contact.email+%7D%7D&tags[]=a&tags[]=b+c"
    )

    parsed = bracket_form.parse_form(text)

    assert parsed["event"] == {"type": "14", "data": {"id": "24000001"}}
    assert parsed["action"]["settings"]["widget"]["settings"] == {
        "comment": "Коммерческое предложение",
        "to": "{{ contact.email }}",
    }
    assert parsed["tags"] == ["a", "b c"]


@pytest.mark.parametrize(
    "text",
    ["a=1&a=2", "a=1&a[b]=2", "a[b]=1&a=2", "a[b=1", "[a]=1", "a[][b]=1", "a=%FF", "a", "a[]=1&a=2"],
)
def test_a_malformed_form_is_refused_rather_than_guessed(text: str) -> None:
    with pytest.raises(MalformedRequest) as refused:
        bracket_form.parse_form(text)
    assert refused.value.field == "body"


def test_the_content_type_decides_and_json_is_the_default_for_an_object() -> None:
    assert bracket_form.parse_body(b'{"a": {"b": 1}}', None) == {"a": {"b": 1}}
    assert bracket_form.parse_body(b"a[b]=1", "application/x-www-form-urlencoded; charset=UTF-8") == {
        "a": {"b": "1"}
    }
    assert bracket_form.parse_body(b"a[b]=1", "") == {"a": {"b": "1"}}
    with pytest.raises(MalformedRequest):
        bracket_form.parse_body(b"[1, 2]", "application/json")
    with pytest.raises(MalformedRequest):
        bracket_form.parse_body(b"x" * (bracket_form.MAX_BODY_BYTES + 1), "text/plain")


def test_action_settings_take_strings_from_forms_and_numbers_from_json() -> None:
    from_form = jobs.parse_settings(
        {"template_id": "01KAXYZ00000000000000000AB", "delay": "3600", "mailbox_id": "", "to": " "},
        prefix="s",
    )
    from_json = jobs.parse_settings({"template_id": "01KAXYZ00000000000000000AB", "delay": 3600}, prefix="s")

    assert from_form == from_json
    assert from_form.mailbox_id is None and from_form.to is None and from_form.delay == 3600


def test_the_longest_delay_is_as_far_as_compose_schedules() -> None:
    assert messages.MAX_SCHEDULE_AHEAD.total_seconds() == jobs.MAX_DELAY_SECONDS


def test_a_derived_message_id_is_a_ulid_of_the_event_time_and_the_same_for_the_same_event() -> None:
    from ulid import ULID

    key = jobs.event_fact_key("dp", [31000001, 24000001, 1764000000])
    first = jobs.derived_message_id(key, 1764000000000)

    assert first == jobs.derived_message_id(key, 1764000000000)
    assert first != jobs.derived_message_id(key + "x", 1764000000000)
    assert ULID.from_str(first).milliseconds == 1764000000000


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://mailerdemo.kommo.com/api/v4/salesbot/321/continue/abc-1_2", True),
        ("https://MAILERDEMO.kommo.com/api/v4/salesbot/321/continue/abc", True),
        ("https://other.kommo.com/api/v4/salesbot/321/continue/abc", False),
        ("https://mailerdemo.kommo.com.evil.example/api/v4/salesbot/321/continue/abc", False),
        ("https://user@mailerdemo.kommo.com/api/v4/salesbot/321/continue/abc", False),
        ("https://mailerdemo.kommo.com:8443/api/v4/salesbot/321/continue/abc", False),
        ("http://mailerdemo.kommo.com/api/v4/salesbot/321/continue/abc", False),
        ("https://mailerdemo.kommo.com/api/v4/salesbot/321/continue/../../leads", False),
        ("https://mailerdemo.kommo.com/api/v4/salesbot/321/continue/abc#x", False),
        ("https://mailerdemo.kommo.com:99999/x", False),
    ],
)
def test_a_salesbot_return_url_must_be_the_continue_method_on_the_accounts_own_host(
    url: str, accepted: bool
) -> None:
    base = "https://mailerdemo.kommo.com"
    if accepted:
        assert kommo.salesbot_continue_path(base, url).startswith("/api/v4/salesbot/321/continue/")
    else:
        with pytest.raises(InvalidInput) as refused:
            kommo.salesbot_continue_path(base, url)
        assert refused.value.field == "return_url"
